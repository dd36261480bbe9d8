import Foundation
import Logging
import ManifoldCore
import ManifoldHTTP
import Synchronization

/// One `RegistryClient` per registry host, each with the TLS settings that host needs,
/// shared so tokens and connections are reused.
public final class RegistryClientPool: Sendable {
    public let configuration: RegistryConfiguration
    private let logger: Logger
    private let state = Mutex<State>(State())

    private struct State {
        var registries: [String: RegistryClient] = [:]
        var httpClients: [String: HTTPClient] = [:]
        var httpClientsStarted = 0
        /// Set by ``RegistryClientPool/shutdown()``: no client is made after it, so none outlives the pool's shutdown.
        var isShutDown = false
    }

    /// How many HTTP clients this pool has started, one per host it reached.
    var httpClientsStarted: Int { state.withLock { $0.httpClientsStarted } }

    public init(
        configuration: RegistryConfiguration = RegistryConfiguration(), logger: Logger = Logger(label: "manifold.registry")
    ) {
        self.configuration = configuration
        self.logger = logger
    }

    deinit { shutdown() }

    /// The client for `registry` (`HOST[:PORT]` as in an image reference).
    ///
    /// Throws `RegistryError.registryNotAllowed` when `configuration.allowedRegistries` does not cover it.
    public func client(for registry: String) throws -> RegistryClient {
        if let allowed = configuration.allowedRegistries, !RegistryPattern.allows(allowed, registry: registry) {
            throw RegistryError.registryNotAllowed(
                host: registry, allowed: allowed.map(\.description), setting: configuration.allowedRegistriesSetting)
        }
        if let existing = state.withLock({ $0.registries[registry] }) { return existing }
        let http = try httpClient(for: registry)
        // Made under the lock: callers racing for a new registry share one client (and its tokens) from the start.
        return try state.withLock { state in
            guard !state.isShutDown else { throw HTTPClientError.shutDown }
            if let existing = state.registries[registry] { return existing }
            let client = try RegistryClient(
                registry: registry, http: http, configuration: configuration, logger: logger,
                tokenClient: { [weak self] url in
                    guard let self else { throw HTTPClientError.shutDown }
                    return try self.tokenClient(for: url, registry: registry)
                })
            state.registries[registry] = client
            return client
        }
    }

    /// A client for a token server's URL: the realm host's own TLS settings when it has any (a CA or client
    /// certificate configured for it), else the registry's, as Docker uses the registry's transport for its tokens.
    func tokenClient(for url: URL, registry: String) throws -> HTTPClient {
        var host = url.host ?? ""
        if host.contains(":") { host = "[\(host)]" }
        if let port = url.port { host += ":\(port)" }
        return try configuration.tls(for: host) == TLSConfiguration() ? httpClient(for: registry) : httpClient(for: host)
    }

    private func httpClient(for host: String) throws -> HTTPClient {
        if let existing = state.withLock({ $0.httpClients[host] }) { return existing }
        var settings = configuration.http
        settings.tls = try configuration.clientTLS(for: host)
        settings.userAgent = configuration.userAgent
        // Everything read into memory is a manifest, a config, a token or an error document: cap it at the document
        // limit while it arrives rather than after (blobs stream to files and have their own cap).
        settings.maxResponseBodySize = min(settings.maxResponseBodySize, Int(clamping: configuration.maxDocumentSize))
        // Started under the lock: a client made for a caller that lost the race would start its transfer thread only
        // to stop it again, on the path of the request that waits for it.
        return try state.withLock { state in
            guard !state.isShutDown else { throw HTTPClientError.shutDown }
            if let existing = state.httpClients[host] { return existing }
            let client = HTTPClient(configuration: settings, logger: logger)
            state.httpClients[host] = client
            state.httpClientsStarted += 1
            return client
        }
    }

    /// Stops every HTTP client's transfer thread; asking for a client afterwards throws `HTTPClientError.shutDown`.
    public func shutdown() {
        let clients = state.withLock { state -> [HTTPClient] in
            state.isShutDown = true
            let clients = Array(state.httpClients.values)
            state.httpClients = [:]
            state.registries = [:]
            return clients
        }
        for client in clients { client.shutdown() }
    }
}
