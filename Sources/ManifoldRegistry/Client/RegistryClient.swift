import Foundation
import Logging
import ManifoldCore
import ManifoldHTTP

/// A client for one registry host speaking the OCI Distribution API.
///
/// It authenticates on demand (Basic or bearer tokens, learnt from the registry's challenges),
/// retries transient failures, and never re-encodes a manifest: bytes go out exactly as given
/// and come back exactly as stored.
///
/// ```swift
/// let registries = RegistryClientPool(configuration: RegistryConfiguration())
/// let registry = try registries.client(for: "ghcr.io")
/// let manifest = try await registry.fetchManifest(repository: "acme/app", reference: "latest")
/// ```
public final class RegistryClient: Sendable {
    /// The registry as written in image references, e.g. `localhost:5000` or `docker.io`.
    public let registry: String
    /// Where requests go, e.g. `https://registry-1.docker.io`.
    public let baseURL: URL
    let http: HTTPClient
    let configuration: RegistryConfiguration
    let authenticator: Authenticator
    /// Checks every URL this client contacts other than the registry itself (see `DestinationPolicy`).
    let destinations: DestinationPolicy
    let logger: Logger

    init(
        registry: String, http: HTTPClient, configuration: RegistryConfiguration, logger: Logger,
        tokenClient: @escaping @Sendable (URL) throws -> HTTPClient
    ) throws {
        self.registry = registry
        let apiHost = DockerConfig.normalizedKey(registry) == "docker.io" ? "registry-1.docker.io" : registry
        guard let url = URL(string: "\(configuration.scheme(for: registry))://\(apiHost)") else {
            throw RegistryConfigurationError("\"\(registry)\" is not a valid registry host")
        }
        self.baseURL = url
        self.http = http
        self.configuration = configuration
        self.logger = logger
        let destinations = configuration.destinations.policy(
            origin: url, plainHTTP: configuration.scheme(for: registry) == "http")
        self.destinations = destinations
        // Looked up on the first challenge that needs it, not here: a registry that never asks never reads it.
        let credentials = configuration.credentials
        self.authenticator = Authenticator(
            registry: registry, credential: { try await credentials.credential(for: registry) },
            retry: configuration.retry, logger: logger, destinations: destinations, tokenClient: tokenClient)
    }

    /// Checks that the registry speaks the Distribution API and accepts our credentials (`GET /v2/`).
    public func ping() async throws {
        let response = try await send(RegistryRequest(method: "GET", path: "/v2/"), operation: "checking \(registry)")
        guard response.status == 200 else {
            throw unexpected(response, operation: "checking \(registry)")
        }
    }

    /// Verifies credentials the way `docker login` does: `/v2/` first, then a token for `repository` when given.
    public func checkLogin(repository: String? = nil) async throws {
        try await ping()
        if let repository {
            _ = try await headManifest(repository: repository, reference: "latest")
        }
    }

    // MARK: - Request machinery

    struct RegistryRequest {
        var method: String
        var path: String = ""
        /// An absolute URL (an upload `Location`) instead of `path`.
        var url: URL?
        var query: [URLQueryItem] = []
        var headers: HTTPHeaders = [:]
        var body: HTTPRequest.Body = .none
        var scopes: [RepositoryScope] = []
        /// Whether repeating the request is harmless (false for a PATCH that moves an upload forward).
        var idempotent = true
        /// The total time allowed; nil for the client's default (small documents), `HTTPRequest.unlimited`
        /// for blob transfers, which only fail when they stall.
        var timeout: Duration?
    }

    func url(for request: RegistryRequest) throws -> URL {
        var components: URLComponents
        if let url = request.url {
            guard let resolved = URLComponents(url: url, resolvingAgainstBaseURL: true) else {
                throw RegistryError.protocolViolation(url: url.absoluteString, message: "not a usable URL")
            }
            components = resolved
        } else {
            guard let base = URLComponents(url: baseURL, resolvingAgainstBaseURL: false) else {
                throw RegistryError.protocolViolation(url: baseURL.absoluteString, message: "not a usable URL")
            }
            components = base
            components.percentEncodedPath = request.path
        }
        if !request.query.isEmpty {
            // Append to the query as it is: an upload Location's opaque state must reach the registry
            // byte for byte, so it is never decoded and encoded again.
            var added = URLComponents()
            added.queryItems = request.query
            let encoded = (added.percentEncodedQuery ?? "").replacingOccurrences(of: "+", with: "%2B")
            if let existing = components.percentEncodedQuery, !existing.isEmpty {
                components.percentEncodedQuery = existing + "&" + encoded
            } else {
                components.percentEncodedQuery = encoded
            }
        }
        guard let url = components.url else {
            throw RegistryError.protocolViolation(url: request.path, message: "the request URL cannot be formed")
        }
        return url
    }

    /// Sends a request with authentication and retries; returns whatever final status the registry gave,
    /// except authentication failures, which become `RegistryError.unauthorized` / `.denied`.
    func send(
        _ request: RegistryRequest, operation: String,
        perform: (@Sendable (HTTPClient, HTTPRequest) async throws -> HTTPResponse)? = nil
    ) async throws -> HTTPResponse {
        let url = try url(for: request)
        var httpRequest = HTTPRequest(
            method: request.method, url: url, headers: request.headers, body: request.body, timeout: request.timeout,
            destinationPolicy: destinations)
        httpRequest.headers.replaceOrAdd("User-Agent", configuration.userAgent)
        // Credentials go to the registry's own origin only, never to an upload Location or Link elsewhere.
        let ownOrigin = HTTPClient.origin(of: url) == HTTPClient.origin(of: baseURL)
        var authorization = ownOrigin ? try await authenticator.authorization(for: request.scopes) : nil
        var answeredChallenge = false
        var attempt = 1
        let retry = configuration.retry
        while true {
            try Task.checkCancellation()
            httpRequest.headers.remove("Authorization")
            if let authorization { httpRequest.headers.add("Authorization", authorization) }
            let response: HTTPResponse
            do {
                if let perform {
                    response = try await perform(http, httpRequest)
                } else {
                    response = try await http.execute(httpRequest)
                }
            } catch let error as HTTPClientError {
                if error.isRetryable, request.idempotent, attempt < retry.maxAttempts {
                    logger.info(
                        "retrying after transport error",
                        metadata: ["operation": "\(operation)", "attempt": "\(attempt)", "error": "\(error)"])
                    try await retry.sleep(retry.delay(afterAttempt: attempt, retryAfter: nil))
                    attempt += 1
                    continue
                }
                if case .tls(_, let message) = error, Self.looksLikePlainHTTP(message) {
                    throw RegistryError.plainHTTPRegistry(host: registry, url: url.absoluteString, message: message)
                }
                throw RegistryError.transport(error, attempts: attempt)
            }

            if response.status == 401 || response.status == 403 {
                let challenges = AuthChallenge.parse(response.headers.values("WWW-Authenticate"))
                if ownOrigin, !answeredChallenge, !challenges.isEmpty,
                    let retryAuthorization = try await authenticator.respond(
                        toChallenges: challenges, status: response.status, scopes: request.scopes, rejected: authorization)
                {
                    answeredChallenge = true
                    authorization = retryAuthorization
                    continue
                }
                let errors = RegistryError.details(from: response.body)
                let hadCredentials = await authenticator.hasCredential
                // A bearer 401 after a fresh token, or one naming insufficient_scope, is about rights, not
                // about the credentials: the token server accepted those and issued what the account may have.
                let bearer = challenges.first { $0.scheme == "bearer" }
                let lacksScope = bearer != nil && (answeredChallenge || bearer?.parameters["error"] == "insufficient_scope")
                if response.status == 401 && !lacksScope {
                    throw RegistryError.unauthorized(
                        host: registry, url: url.absoluteString, hadCredentials: hadCredentials, errors: errors)
                }
                let needed = RepositoryScope.normalize(
                    request.scopes + (bearer?.scopes.compactMap(RepositoryScope.init(parsing:)) ?? []))
                throw RegistryError.denied(
                    host: registry, url: url.absoluteString, scopes: needed.map(\.description),
                    hadCredentials: hadCredentials, errors: errors)
            }

            if RetryPolicy.isRetryable(status: response.status), request.idempotent, attempt < retry.maxAttempts {
                let delay = retry.delay(afterAttempt: attempt, retryAfter: response.headers["Retry-After"])
                logger.info(
                    "retrying after HTTP \(response.status)",
                    metadata: ["operation": "\(operation)", "attempt": "\(attempt)", "delay": "\(delay)"])
                try await retry.sleep(delay)
                attempt += 1
                continue
            }
            return response
        }
    }

    /// OpenSSL's words for a TLS handshake answered in plain HTTP.
    static func looksLikePlainHTTP(_ message: String) -> Bool {
        let text = message.lowercased()
        return ["wrong version number", "record layer failure", "http request", "packet length too long"].contains {
            text.contains($0)
        }
    }

    func unexpected(_ response: HTTPResponse, operation: String) -> RegistryError {
        .unexpectedStatus(
            operation: operation, url: response.url.absoluteString, status: response.status,
            errors: RegistryError.details(from: response.body),
            bodySummary: RegistryError.summary(ofBody: response.body, contentType: response.headers["Content-Type"]))
    }

    /// Percent-encodes a repository path for use in a URL path (its components are already URL-safe by grammar).
    static func path(_ repository: String, _ rest: String) -> String {
        "/v2/\(repository)/\(rest)"
    }
}
