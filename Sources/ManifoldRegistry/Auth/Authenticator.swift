import Foundation
import Logging
import ManifoldHTTP

/// Holds what a registry told us about authentication and the bearer tokens it issued,
/// cached per scope set until they expire.
///
/// The credential is looked up only when a challenge needs it, so a registry that never asks for
/// authentication works even when the credential store is broken. Concurrent requests that need the
/// same token share one token request.
actor Authenticator {
    private enum Scheme {
        case unknown
        case basic
        case bearer(realm: String, service: String?)
    }

    private struct CachedToken {
        var token: String
        var expires: ContinuousClock.Instant
    }

    let registry: String
    private let credentialSource: @Sendable () async throws -> RegistryCredential?
    private var credentialLookup: Task<RegistryCredential?, any Error>?
    private let tokenClient: @Sendable (URL) throws -> HTTPClient
    private let retry: RetryPolicy
    /// Checks realms (and their redirects) before any connection: HTTPS, and no internal address the registry is not on.
    private let destinations: DestinationPolicy?
    /// The current time; injected so token expiry is tested without waiting.
    private let now: @Sendable () -> ContinuousClock.Instant
    private let logger: Logger
    private var scheme: Scheme = .unknown
    private var tokens: [String: CachedToken] = [:]
    /// Token requests under way, by scope key; later callers for the same scopes wait for these.
    private var inFlight: [String: Task<String, any Error>] = [:]

    init(
        registry: String, credential: @escaping @Sendable () async throws -> RegistryCredential?,
        retry: RetryPolicy = RetryPolicy(), logger: Logger, destinations: DestinationPolicy? = nil,
        now: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now },
        tokenClient: @escaping @Sendable (URL) throws -> HTTPClient
    ) {
        self.registry = registry
        self.now = now
        self.credentialSource = credential
        self.retry = retry
        self.destinations = destinations
        self.logger = logger
        self.tokenClient = tokenClient
    }

    /// The credential for this registry, looked up once, on first use.
    func credential() async throws -> RegistryCredential? {
        if let credentialLookup { return try await credentialLookup.value }
        let source = credentialSource
        let lookup = Task { try await source() }
        credentialLookup = lookup
        return try await lookup.value
    }

    /// Whether a credential exists for this registry (a failing lookup counts as none).
    var hasCredential: Bool {
        get async { ((try? await credential()) ?? nil) != nil }
    }

    /// The `Authorization` value to send for a request needing `scopes`, when the scheme is known.
    func authorization(for scopes: [RepositoryScope]) async throws -> String? {
        switch scheme {
        case .unknown:
            return nil
        case .basic:
            return try await credential()?.basicAuthorization
        case .bearer(let realm, let service):
            if case .registryToken(let token) = try await credential() { return "Bearer \(token)" }
            let token = try await token(realm: realm, service: service, scopes: RepositoryScope.normalize(scopes), rejected: nil)
            return "Bearer \(token)"
        }
    }

    /// Learns from a 401 (or a 403 under bearer auth) and returns the `Authorization` value to retry
    /// with, or nil when retrying cannot help. `rejected` is the `Authorization` value the refused request
    /// carried: that token is never handed out again, but a newer one fetched meanwhile is.
    func respond(
        toChallenges challenges: [AuthChallenge], status: Int, scopes: [RepositoryScope], rejected: String? = nil
    ) async throws -> String? {
        if let bearer = challenges.first(where: { $0.scheme == "bearer" }), let realm = bearer.realm {
            scheme = .bearer(realm: realm, service: bearer.service)
            if case .registryToken(let token) = try await credential() { return "Bearer \(token)" }
            // Merge what the registry asks for with what we need.
            let asked = bearer.scopes.compactMap(RepositoryScope.init(parsing:))
            let wanted = RepositoryScope.normalize(scopes + asked)
            let rejectedToken = rejected.flatMap { $0.hasPrefix("Bearer ") ? String($0.dropFirst(7)) : nil }
            return "Bearer " + (try await token(realm: realm, service: bearer.service, scopes: wanted, rejected: rejectedToken))
        }
        if challenges.contains(where: { $0.scheme == "basic" }) {
            scheme = .basic
            guard status == 401 else { return nil }
            return try await credential()?.basicAuthorization
        }
        return nil
    }

    /// A valid token for `scopes`: the cached one unless it is `rejected`, the one being fetched right
    /// now for the same scopes, or a new one.
    private func token(realm: String, service: String?, scopes: [RepositoryScope], rejected: String?) async throws -> String {
        let key = Self.key(scopes)
        if let cached = tokens[key], cached.expires > now(), cached.token != rejected { return cached.token }
        if let running = inFlight[key] { return try await running.value }
        let task = Task { try await self.fetchAndCache(realm: realm, service: service, scopes: scopes, key: key) }
        inFlight[key] = task
        return try await task.value
    }

    private func fetchAndCache(realm: String, service: String?, scopes: [RepositoryScope], key: String) async throws -> String {
        // Cache and forget the in-flight task in one actor turn, so no caller sees neither.
        defer { inFlight[key] = nil }
        let (token, lifetime) = try await fetchToken(realm: realm, service: service, scopes: scopes)
        tokens[key] = CachedToken(token: token, expires: now() + lifetime)
        return token
    }

    /// Asks the token server for a token; retried like registry requests (transport errors, 408/429/5xx
    /// with `Retry-After`). Returns the token and how long to use it.
    private func fetchToken(
        realm: String, service: String?, scopes: [RepositoryScope]
    ) async throws -> (String, Duration) {
        let credential = try await credential()
        var request = try Self.tokenRequest(realm: realm, service: service, scopes: scopes, credential: credential)
        request.destinationPolicy = destinations
        let shownRealm = URLRedaction.display(realm)
        var attempt = 1
        var response: HTTPResponse
        while true {
            try Task.checkCancellation()
            do {
                response = try await tokenClient(request.url).execute(request)
            } catch let error as HTTPClientError {
                if case .destinationRefused = error { throw RegistryError.transport(error, attempts: attempt) }
                guard error.isRetryable, attempt < retry.maxAttempts else {
                    throw RegistryError.tokenRequestFailed(realm: realm, status: nil, message: error.description)
                }
                logger.info(
                    "retrying token request after transport error",
                    metadata: ["realm": "\(shownRealm)", "attempt": "\(attempt)", "error": "\(error)"])
                try await retry.sleep(retry.delay(afterAttempt: attempt, retryAfter: nil))
                attempt += 1
                continue
            }
            guard RetryPolicy.isRetryable(status: response.status), attempt < retry.maxAttempts else { break }
            let delay = retry.delay(afterAttempt: attempt, retryAfter: response.headers["Retry-After"])
            logger.info(
                "retrying token request after HTTP \(response.status)",
                metadata: ["realm": "\(shownRealm)", "attempt": "\(attempt)", "delay": "\(delay)"])
            try await retry.sleep(delay)
            attempt += 1
        }
        guard response.status == 200 else {
            if response.status == 401 || response.status == 403 {
                throw RegistryError.unauthorized(
                    host: registry, url: realm, hadCredentials: credential != nil,
                    errors: RegistryError.details(from: response.body))
            }
            throw RegistryError.tokenRequestFailed(
                realm: realm, status: response.status, message: Self.explanation(of: response))
        }
        struct TokenAnswer: Decodable {
            var token: String?
            var accessToken: String?
            var expiresIn: Int?
            enum CodingKeys: String, CodingKey {
                case token
                case accessToken = "access_token"
                case expiresIn = "expires_in"
            }
        }
        guard let answer = try? JSONDecoder().decode(TokenAnswer.self, from: response.body),
            let token = answer.token ?? answer.accessToken, !token.isEmpty
        else {
            throw RegistryError.tokenRequestFailed(
                realm: realm, status: 200, message: "the answer has neither \"token\" nor \"access_token\"")
        }
        // The spec's minimum lifetime is 60 s; renew a little early so a token never expires mid-request.
        let lifetime = max(answer.expiresIn ?? 60, 60)
        let margin = min(10, lifetime / 6)
        logger.debug("obtained registry token", metadata: ["registry": "\(registry)", "scopes": "\(Self.key(scopes))"])
        return (token, .seconds(lifetime - margin))
    }

    /// GET realm?service=…&scope=… (Basic credentials when we have them), or the OAuth2 refresh-token
    /// POST for identity tokens.
    private static func tokenRequest(
        realm: String, service: String?, scopes: [RepositoryScope], credential: RegistryCredential?
    ) throws -> HTTPRequest {
        guard var components = URLComponents(string: realm), components.scheme != nil else {
            throw RegistryError.tokenRequestFailed(realm: realm, status: nil, message: "the realm is not an absolute URL")
        }
        var query = components.queryItems ?? []
        if let service { query.append(URLQueryItem(name: "service", value: service)) }
        for scope in scopes { query.append(URLQueryItem(name: "scope", value: scope.description)) }
        var request: HTTPRequest
        switch credential {
        case .identityToken(let refreshToken):
            // OAuth2 refresh-token grant, as the docker CLI does for identity tokens.
            var form = URLComponents()
            form.queryItems =
                [
                    URLQueryItem(name: "grant_type", value: "refresh_token"),
                    URLQueryItem(name: "refresh_token", value: refreshToken),
                    URLQueryItem(name: "client_id", value: "manifold"),
                    URLQueryItem(name: "access_type", value: "offline"),
                ] + query
            guard let url = components.url else {
                throw RegistryError.tokenRequestFailed(realm: realm, status: nil, message: "the realm is not a valid URL")
            }
            let body = (form.percentEncodedQuery ?? "").replacingOccurrences(of: "+", with: "%2B")
            request = HTTPRequest(
                method: "POST", url: url, headers: ["Content-Type": "application/x-www-form-urlencoded"],
                body: .bytes(Data(body.utf8)))
        default:
            components.queryItems = query
            // URLComponents leaves '+' alone; a token server reads it as a space.
            components.percentEncodedQuery = components.percentEncodedQuery?.replacingOccurrences(of: "+", with: "%2B")
            guard let url = components.url else {
                throw RegistryError.tokenRequestFailed(realm: realm, status: nil, message: "the realm is not a valid URL")
            }
            request = HTTPRequest(url: url)
            if let basic = credential?.basicAuthorization { request.headers.add("Authorization", basic) }
        }
        request.headers.add("Accept", "application/json")
        return request
    }

    /// What a token server said about a failure: its `errors` (registry style) or `error`/`error_description`
    /// (OAuth2 style), made safe to show; else only the body's type and size.
    static func explanation(of response: HTTPResponse) -> String {
        let errors = RegistryError.details(from: response.body)
        if !errors.isEmpty { return RegistryError.render(errors) }
        struct OAuthError: Decodable {
            var error: String
            var errorDescription: String?
            enum CodingKeys: String, CodingKey {
                case error
                case errorDescription = "error_description"
            }
        }
        if let oauth = try? JSONDecoder().decode(OAuthError.self, from: response.body) {
            return RegistryError.render([RegistryErrorDetail(code: oauth.error, message: oauth.errorDescription)])
        }
        let summary = RegistryError.summary(ofBody: response.body, contentType: response.headers["Content-Type"])
        return summary.isEmpty ? "the answer has no body" : summary
    }

    private static func key(_ scopes: [RepositoryScope]) -> String {
        scopes.map(\.description).joined(separator: " ")
    }
}
