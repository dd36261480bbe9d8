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
        self.authenticator = Authenticator(
            registry: registry, credential: try configuration.credentials.credential(for: registry), logger: logger,
            tokenClient: tokenClient)
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
            components.queryItems = (components.queryItems ?? []) + request.query
            components.percentEncodedQuery = components.percentEncodedQuery?.replacingOccurrences(of: "+", with: "%2B")
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
        var httpRequest = HTTPRequest(method: request.method, url: url, headers: request.headers, body: request.body)
        httpRequest.headers.replaceOrAdd("User-Agent", configuration.userAgent)
        var authorization = try await authenticator.authorization(for: request.scopes)
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
                throw RegistryError.transport(error, attempts: attempt)
            }

            if response.status == 401 || response.status == 403 {
                let challenges = AuthChallenge.parse(response.headers.values("WWW-Authenticate"))
                if !answeredChallenge, !challenges.isEmpty,
                    let retryAuthorization = try await authenticator.respond(
                        toChallenges: challenges, status: response.status, scopes: request.scopes)
                {
                    answeredChallenge = true
                    authorization = retryAuthorization
                    continue
                }
                let errors = RegistryError.details(from: response.body)
                if response.status == 401 {
                    throw RegistryError.unauthorized(
                        host: registry, url: url.absoluteString, hadCredentials: await authenticator.hasCredential, errors: errors
                    )
                }
                throw RegistryError.denied(
                    host: registry, url: url.absoluteString, scopes: request.scopes.map(\.description), errors: errors)
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

    func unexpected(_ response: HTTPResponse, operation: String) -> RegistryError {
        .unexpectedStatus(
            operation: operation, url: response.url.absoluteString, status: response.status,
            errors: RegistryError.details(from: response.body), body: String(decoding: response.body.prefix(500), as: UTF8.self))
    }

    /// Percent-encodes a repository path for use in a URL path (its components are already URL-safe by grammar).
    static func path(_ repository: String, _ rest: String) -> String {
        "/v2/\(repository)/\(rest)"
    }
}
