import Foundation
import ManifoldCore
import ManifoldHTTP

/// One entry of the `errors` array a registry returns (OCI distribution-spec, "Error Codes").
///
/// Both fields come from a foreign server and end up in job reasons, logs and terminals, so decoding makes
/// them safe to show: control characters (terminal escapes included) are dropped and the lengths are capped.
public struct RegistryErrorDetail: Sendable, Hashable, Decodable {
    /// The longest `code` kept (registry codes are short identifiers such as `MANIFEST_BLOB_UNKNOWN`).
    public static let maxCodeLength = 64
    /// The longest `message` kept; a longer one is cut and ends with "…".
    public static let maxMessageLength = 200

    public var code: String
    public var message: String?

    enum CodingKeys: String, CodingKey { case code, message }

    public init(code: String, message: String? = nil) {
        self.code = Self.printable(code, limit: Self.maxCodeLength)
        self.message = message.map { Self.printable($0, limit: Self.maxMessageLength) }
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let code = (try? container.decode(String.self, forKey: .code)) ?? "UNKNOWN"
        self.init(code: code, message: try? container.decodeIfPresent(String.self, forKey: .message))
    }

    /// `text` without control or bidirectional-override characters, whitespace runs collapsed, at most `limit`
    /// characters.
    public static func printable(_ text: String, limit: Int) -> String {
        var kept = ""
        var lastWasSpace = false
        for scalar in text.unicodeScalars {
            let isSpace = scalar.properties.isWhitespace
            if isSpace {
                if !lastWasSpace && !kept.isEmpty { kept.unicodeScalars.append(" ") }
                lastWasSpace = true
                continue
            }
            let category = scalar.properties.generalCategory
            if category == .control || category == .format || category == .unassigned || category == .surrogate
                || category == .privateUse
            {
                continue
            }
            lastWasSpace = false
            kept.unicodeScalars.append(scalar)
            if kept.count > limit { break }
        }
        kept = kept.trimmingCharacters(in: .whitespaces)
        return kept.count > limit ? String(kept.prefix(limit - 1)) + "…" : kept
    }
}

/// A failure talking to a registry, with enough context to act on.
public enum RegistryError: Error, CustomStringConvertible, Sendable {
    /// The registry answered with an unexpected status; `errors` holds its own codes and messages, `bodySummary`
    /// what the body was when it held none (its type and size, never its content).
    case unexpectedStatus(operation: String, url: String, status: Int, errors: [RegistryErrorDetail], bodySummary: String)
    /// The registry rejected the credentials, or none were found for it.
    case unauthorized(host: String, url: String, hadCredentials: Bool, errors: [RegistryErrorDetail])
    /// Access to a repository was refused even with a fresh token (or the token lacks a scope):
    /// the account, or anonymous access, does not have the rights `scopes` name.
    case denied(host: String, url: String, scopes: [String], hadCredentials: Bool, errors: [RegistryErrorDetail])
    /// A manifest or blob does not exist; `errors` holds the registry's codes, e.g. `MANIFEST_UNKNOWN`.
    case notFound(kind: String, reference: String, errors: [RegistryErrorDetail])
    /// HTTPS was spoken to a registry that answers in plain HTTP.
    case plainHTTPRegistry(host: String, url: String, message: String)
    /// The token server could not be reached or returned no usable token.
    case tokenRequestFailed(realm: String, status: Int?, message: String)
    /// Content did not match the digest it was fetched or pushed under.
    case digestMismatch(what: String, expected: Digest, actual: Digest)
    /// The registry answered with something that is not what the protocol says.
    case protocolViolation(url: String, message: String)
    /// The transport failed (after retries, where retrying made sense).
    case transport(HTTPClientError, attempts: Int)
    /// A document was larger than Manifold is willing to hold in memory.
    case tooLarge(what: String, size: Int64, limit: Int64)
    /// The registry is not among those the configuration allows; nothing was sent to it.
    case registryNotAllowed(host: String, allowed: [String], setting: String)
    /// An index has more entries than Manifold flattens.
    case tooManyIndexEntries(reference: String, count: Int, limit: Int)
    /// Copying from another registry would move more bytes than one assembly may.
    case copyLimitExceeded(source: String, target: String, bytes: Int64, limit: Int64)

    public var description: String {
        let shown: (String) -> String = URLRedaction.display
        switch self {
        case .unexpectedStatus(let operation, let url, let status, let errors, let bodySummary):
            if errors.isEmpty {
                return
                    "\(operation) failed: \(shown(url)) answered HTTP \(status)\(bodySummary.isEmpty ? "" : " (\(bodySummary))")"
            }
            return "\(operation) failed: \(shown(url)) answered HTTP \(status) \(Self.render(errors))\(Self.advice(for: errors))"
        case .unauthorized(let host, let url, let hadCredentials, let errors):
            let reason = errors.isEmpty ? "" : " \(Self.render(errors))"
            if hadCredentials {
                return "\(host) rejected the credentials Manifold sent for \(shown(url))\(reason). "
                    + "Check the username and password (manifold registry login \(host))."
            }
            return "\(host) requires authentication for \(shown(url))\(reason) and no credentials were found for it. "
                + "Run `manifold registry login \(host) --username USER --password-stdin` "
                + "or add it to your docker config.json."
        case .denied(let host, let url, let scopes, let hadCredentials, let errors):
            let needed = Self.describe(scopes: scopes)
            let reason = errors.isEmpty ? "" : " (\(Self.render(errors)))"
            if hadCredentials {
                return "\(host) denied \(needed) at \(shown(url))\(reason): the account Manifold logged in with lacks it. "
                    + "Ask the registry's administrator for \(needed), or log in as another user "
                    + "(manifold registry login \(host))."
            }
            return "\(host) denied \(needed) at \(shown(url))\(reason): anonymous access does not include it and no "
                + "credentials were found for \(host). Run `manifold registry login \(host) --username USER "
                + "--password-stdin` or add it to your docker config.json."
        case .notFound(let kind, let reference, let errors):
            let reason = errors.isEmpty ? "" : " (\(Self.render(errors)))"
            return "\(kind) \(reference) does not exist in the registry\(reason). Check the name, tag or digest, "
                + "and that the image was pushed."
        case .plainHTTPRegistry(let host, let url, let message):
            return "\(host) does not speak HTTPS (\(shown(url)): \(message)); it looks like a plain-HTTP registry. "
                + "If that is intended, pass --insecure-registry \(host) to talk plain HTTP to it."
        case .tokenRequestFailed(let realm, let status, let message):
            let statusText = status.map { " (HTTP \($0))" } ?? ""
            return "getting a registry token from \(shown(realm)) failed\(statusText): \(message)"
        case .digestMismatch(let what, let expected, let actual):
            return "\(what) has digest \(actual), not the expected \(expected); the registry returned different "
                + "content than asked for. Nothing was pushed."
        case .protocolViolation(let url, let message):
            return "unexpected answer from \(shown(url)): \(message)"
        case .transport(let error, let attempts):
            return attempts > 1 ? "\(error) (gave up after \(attempts) attempts)" : error.description
        case .tooLarge(let what, let size, let limit):
            return "\(what) is \(size) bytes, over the \(limit)-byte limit for documents Manifold reads into memory"
        case .registryNotAllowed(let host, let allowed, let setting):
            let list = allowed.isEmpty ? "none (the list is empty)" : allowed.joined(separator: ", ")
            return "registry \(host) is not in \(setting), so Manifold does not contact it; allowed: \(list). "
                + "An administrator can add it (e.g. manifold init --allow-registry \(host), or edit \(setting))."
        case .tooManyIndexEntries(let reference, let count, let limit):
            return "\(reference) is an index of \(count) entries; Manifold flattens at most \(limit). "
                + "Name the images it should use instead of the whole index."
        case .copyLimitExceeded(let source, let target, let bytes, let limit):
            return "copying \(source) into \(target) would move \(bytes) bytes across registries, over the \(limit)-byte "
                + "limit for one build; push the images to \(target)'s registry directly."
        }
    }

    /// The registry's own errors, for callers that branch on their codes.
    public var details: [RegistryErrorDetail] {
        switch self {
        case .unexpectedStatus(_, _, _, let errors, _), .unauthorized(_, _, _, let errors), .denied(_, _, _, _, let errors),
            .notFound(_, _, let errors):
            return errors
        default: return []
        }
    }

    /// The registry's error codes, e.g. `MANIFEST_BLOB_UNKNOWN`.
    public var registryCodes: [String] { details.map(\.code) }

    /// At most this many of a registry's errors are quoted.
    static let maxRenderedErrors = 5

    static func render(_ errors: [RegistryErrorDetail]) -> String {
        let shown = errors.prefix(maxRenderedErrors).map { detail in
            if let message = detail.message, !message.isEmpty { return "\(detail.code): \(message)" }
            return detail.code
        }.joined(separator: "; ")
        return errors.count > maxRenderedErrors ? shown + "; and \(errors.count - maxRenderedErrors) more" : shown
    }

    /// What a body without a usable error document was, for messages: its media type and size, never its content
    /// (a foreign server's body may be an internal page, a secret or terminal escapes).
    static func summary(ofBody body: Data, contentType: String?) -> String {
        guard !body.isEmpty else { return "" }
        let type = contentType.map { RegistryErrorDetail.printable($0, limit: 60) }.map { $0.isEmpty ? "" : "\($0), " } ?? ""
        return "\(type)\(body.count) bytes, not a registry error document"
    }

    /// "push access to repository a and pull access to repository b" for the scopes a request needed.
    static func describe(scopes: [String]) -> String {
        let order = ["push": 0, "delete": 1, "pull": 2]
        let parts = scopes.compactMap(RepositoryScope.init(parsing:)).map { scope -> String in
            var actions = scope.actions
            // Push and delete imply reading; name only the right that is really missing.
            if actions.count > 1 { actions.remove("pull") }
            let words = actions.sorted { (order[$0] ?? 3, $0) < (order[$1] ?? 3, $1) }.joined(separator: " and ")
            return "\(words) access to repository \(scope.repository)"
        }
        return parts.isEmpty ? "access" : parts.joined(separator: " and ")
    }

    static func advice(for errors: [RegistryErrorDetail]) -> String {
        let codes = Set(errors.map(\.code))
        if codes.contains("MANIFEST_BLOB_UNKNOWN") || codes.contains("BLOB_UNKNOWN") {
            return ". A manifest refers to content the repository does not have: push or copy the child image "
                + "into this repository first."
        }
        if codes.contains("MANIFEST_INVALID") { return ". The registry refused the manifest document as invalid." }
        if codes.contains("NAME_INVALID") { return ". Repository names are lowercase path components." }
        if codes.contains("TAG_INVALID") { return ". Tags are up to 128 characters of letters, digits, '_', '.', '-'." }
        if codes.contains("UNSUPPORTED") { return ". The registry does not support this operation or media type." }
        if codes.contains("TOOMANYREQUESTS") { return ". The registry is rate limiting; try again later." }
        return ""
    }

    /// Decodes the `{"errors": [...]}` body registries send with failures.
    static func details(from body: Data) -> [RegistryErrorDetail] {
        struct Envelope: Decodable { var errors: [RegistryErrorDetail]? }
        return (try? JSONDecoder().decode(Envelope.self, from: body))?.errors ?? []
    }
}
