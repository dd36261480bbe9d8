import Crypto
import Foundation

/// The dashboard's signed session cookie and the CSRF tokens derived from it.
///
/// The cookie holds the id of the API token the user signed in with, when the session was issued and when it ends,
/// and a random nonce, signed with HMAC-SHA256 under a key derived from the state directory's `pki/secrets.key`
/// (replicas share the state directory's keys, so a session works on every replica). Nothing else is stored on the
/// server: every request checks the signature and the expiry here, then looks the token up by id in the store, so a
/// revoked or expired token ends its sessions at once.
///
/// ```swift
/// let sessions = DashboardSessions(key: DashboardSessions.deriveKey(from: secretsKey.data))
/// let cookie = sessions.issue(tokenId: "tok_…", now: Date(), tokenExpiresAt: nil)
/// sessions.verify(cookie.value, now: Date())?.tokenId   // "tok_…"
/// ```
struct DashboardSessions: Sendable {
    /// The session cookie's name; `__Host-` makes browsers insist on Secure, Path=/ and no Domain.
    static let cookieName = "__Host-manifold_session"
    /// The sign-in form's cookie (its CSRF nonce), set by `GET /sign-in`.
    static let signInCookieName = "__Host-manifold_signin"

    struct Session: Sendable, Equatable {
        var tokenId: String
        var issuedAt: Date
        var expiresAt: Date
        var nonce: String
    }

    private let key: SymmetricKey
    /// How long a session lasts (never past its token's expiry).
    let lifetime: TimeInterval

    init(key: SymmetricKey, lifetime: TimeInterval = 12 * 3600) {
        self.key = key
        self.lifetime = lifetime
    }

    /// The session key: HKDF-SHA256 of the secrets key with a label of its own, so the cookie's key is never the key
    /// that encrypts build secrets.
    static func deriveKey(from secret: Data) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: secret), info: Data("manifold dashboard session v1".utf8), outputByteCount: 32)
    }

    /// A new session for `tokenId`: the cookie's value and the session it stands for.
    func issue(tokenId: String, now: Date, tokenExpiresAt: Date?) -> (value: String, session: Session) {
        var expiresAt = now.addingTimeInterval(lifetime)
        if let tokenExpiresAt { expiresAt = min(expiresAt, tokenExpiresAt) }
        let session = Session(
            tokenId: tokenId, issuedAt: Date(timeIntervalSince1970: now.timeIntervalSince1970.rounded(.down)),
            expiresAt: Date(timeIntervalSince1970: expiresAt.timeIntervalSince1970.rounded(.down)),
            nonce: Self.randomNonce())
        return (sign(session), session)
    }

    /// The cookie value of `session`: `v1.TOKEN.ISSUED.EXPIRES.NONCE.MAC`.
    func sign(_ session: Session) -> String {
        let payload =
            "v1.\(session.tokenId).\(Int64(session.issuedAt.timeIntervalSince1970))."
            + "\(Int64(session.expiresAt.timeIntervalSince1970)).\(session.nonce)"
        return payload + "." + Self.base64URL(Data(HMAC<SHA256>.authenticationCode(for: Data(payload.utf8), using: key)))
    }

    /// The session a cookie value stands for, when its signature holds and it has not expired; nil otherwise.
    func verify(_ value: String, now: Date) -> Session? {
        let parts = value.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 6, parts[0] == "v1", let mac = Self.data(base64URL: parts[5]) else { return nil }
        let payload = parts[0..<5].joined(separator: ".")
        guard HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: Data(payload.utf8), using: key) else { return nil }
        guard let issued = Int64(parts[2]), let expires = Int64(parts[3]), !parts[1].isEmpty, !parts[4].isEmpty else {
            return nil
        }
        let session = Session(
            tokenId: parts[1], issuedAt: Date(timeIntervalSince1970: TimeInterval(issued)),
            expiresAt: Date(timeIntervalSince1970: TimeInterval(expires)), nonce: parts[4])
        guard now < session.expiresAt else { return nil }
        return session
    }

    /// The CSRF token of a nonce (a session's, or the sign-in form's): the form carries it in a hidden field, and a POST
    /// whose field does not match its cookie's nonce is refused.
    func csrfToken(nonce: String) -> String {
        Self.base64URL(Data(HMAC<SHA256>.authenticationCode(for: Data("csrf.\(nonce)".utf8), using: key)))
    }

    /// Whether `presented` is the CSRF token of `nonce`, compared in constant time.
    func checkCSRF(_ presented: String?, nonce: String) -> Bool {
        guard let presented else { return false }
        return Secrets.constantTimeEquals(presented, csrfToken(nonce: nonce))
    }

    static func randomNonce() -> String {
        var generator = SystemRandomNumberGenerator()
        return base64URL(Data((0..<18).map { _ in UInt8.random(in: .min ... .max, using: &generator) }))
    }

    static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func data(base64URL text: String) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64)
    }

    /// The `Set-Cookie` value of a session cookie lasting until `expiresAt`.
    static func setCookie(name: String, value: String, maxAge: Int) -> String {
        "\(name)=\(value); Path=/; Max-Age=\(max(0, maxAge)); HttpOnly; Secure; SameSite=Strict"
    }

    /// The value of cookie `name` in a request's `Cookie` headers.
    static func cookie(_ name: String, in headers: [String]) -> String? {
        for header in headers {
            for pair in header.split(separator: ";") {
                let trimmed = pair.trimmingCharacters(in: .whitespaces)
                guard let equals = trimmed.firstIndex(of: "=") else { continue }
                if trimmed[..<equals] == name { return String(trimmed[trimmed.index(after: equals)...]) }
            }
        }
        return nil
    }
}
