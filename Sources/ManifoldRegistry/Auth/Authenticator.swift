import Foundation
import Logging
import ManifoldHTTP

/// Holds what a registry told us about authentication and the bearer tokens it issued,
/// cached per scope set until they expire.
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
    private let credential: RegistryCredential?
    private let tokenClient: @Sendable (URL) throws -> HTTPClient
    /// The current time; injected so token expiry is tested without waiting.
    private let now: @Sendable () -> ContinuousClock.Instant
    private let logger: Logger
    private var scheme: Scheme = .unknown
    private var tokens: [String: CachedToken] = [:]
    /// Scopes the registry asked for beyond ours (from a challenge), remembered for later requests.
    private var extraScopes: [RepositoryScope] = []

    init(
        registry: String, credential: RegistryCredential?, logger: Logger,
        now: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now },
        tokenClient: @escaping @Sendable (URL) throws -> HTTPClient
    ) {
        self.registry = registry
        self.now = now
        self.credential = credential
        self.logger = logger
        self.tokenClient = tokenClient
    }

    var hasCredential: Bool { credential != nil }

    /// The `Authorization` value to send for a request needing `scopes`, when the scheme is known.
    func authorization(for scopes: [RepositoryScope]) async throws -> String? {
        switch scheme {
        case .unknown:
            return nil
        case .basic:
            return credential?.basicAuthorization
        case .bearer(let realm, let service):
            if case .registryToken(let token) = credential { return "Bearer \(token)" }
            let wanted = RepositoryScope.normalize(scopes)
            if let cached = tokens[Self.key(wanted)], cached.expires > now() { return "Bearer \(cached.token)" }
            let token = try await fetchToken(realm: realm, service: service, scopes: wanted)
            return "Bearer \(token)"
        }
    }

    /// Learns from a 401 (or a 403 under bearer auth) and returns the `Authorization` value to retry
    /// with, or nil when retrying cannot help.
    func respond(toChallenges challenges: [AuthChallenge], status: Int, scopes: [RepositoryScope]) async throws -> String? {
        if let bearer = challenges.first(where: { $0.scheme == "bearer" }), let realm = bearer.realm {
            scheme = .bearer(realm: realm, service: bearer.service)
            if case .registryToken(let token) = credential { return "Bearer \(token)" }
            // Merge what the registry asks for with what we need, and ask again without the cache.
            let asked = bearer.scopes.compactMap(RepositoryScope.init(parsing:))
            let wanted = RepositoryScope.normalize(scopes + asked)
            tokens[Self.key(wanted)] = nil
            return "Bearer " + (try await fetchToken(realm: realm, service: bearer.service, scopes: wanted))
        }
        if challenges.contains(where: { $0.scheme == "basic" }) {
            scheme = .basic
            guard status == 401 else { return nil }
            return credential?.basicAuthorization
        }
        return nil
    }

    private func fetchToken(realm: String, service: String?, scopes: [RepositoryScope]) async throws -> String {
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
        let response: HTTPResponse
        do {
            response = try await tokenClient(request.url).execute(request)
        } catch let error as HTTPClientError {
            throw RegistryError.tokenRequestFailed(realm: realm, status: nil, message: error.description)
        }
        guard response.status == 200 else {
            if response.status == 401 || response.status == 403 {
                throw RegistryError.unauthorized(
                    host: registry, url: realm, hadCredentials: credential != nil,
                    errors: RegistryError.details(from: response.body))
            }
            throw RegistryError.tokenRequestFailed(
                realm: realm, status: response.status, message: String(decoding: response.body.prefix(300), as: UTF8.self))
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
        tokens[Self.key(scopes)] = CachedToken(token: token, expires: now() + .seconds(lifetime - margin))
        logger.debug("obtained registry token", metadata: ["registry": "\(registry)", "scopes": "\(Self.key(scopes))"])
        return token
    }

    private static func key(_ scopes: [RepositoryScope]) -> String {
        scopes.map(\.description).joined(separator: " ")
    }
}
