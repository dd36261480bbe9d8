import Foundation
import Logging
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
    }

    public init(
        configuration: RegistryConfiguration = RegistryConfiguration(), logger: Logger = Logger(label: "manifold.registry")
    ) {
        self.configuration = configuration
        self.logger = logger
    }

    deinit { shutdown() }

    /// The client for `registry` (`HOST[:PORT]` as in an image reference).
    public func client(for registry: String) throws -> RegistryClient {
        if let existing = state.withLock({ $0.registries[registry] }) { return existing }
        let http = try httpClient(for: registry)
        let client = try RegistryClient(
            registry: registry, http: http, configuration: configuration, logger: logger,
            tokenClient: { [weak self] url in
                guard let self else { throw HTTPClientError.shutDown }
                return try self.httpClient(for: url)
            })
        return state.withLock { state in
            if let raced = state.registries[registry] { return raced }
            state.registries[registry] = client
            return client
        }
    }

    /// A client for a token server's URL: the registry's own TLS settings when the host is a registry we know.
    func httpClient(for url: URL) throws -> HTTPClient {
        var host = url.host ?? ""
        if host.contains(":") { host = "[\(host)]" }
        if let port = url.port { host += ":\(port)" }
        return try httpClient(for: host)
    }

    private func httpClient(for host: String) throws -> HTTPClient {
        if let existing = state.withLock({ $0.httpClients[host] }) { return existing }
        var settings = configuration.http
        settings.tls = try configuration.tls(for: host)
        settings.userAgent = configuration.userAgent
        let client = HTTPClient(configuration: settings, logger: logger)
        let (chosen, discard) = state.withLock { state -> (HTTPClient, HTTPClient?) in
            if let raced = state.httpClients[host] { return (raced, client) }
            state.httpClients[host] = client
            return (client, nil)
        }
        discard?.shutdown()
        return chosen
    }

    /// Stops every HTTP client's transfer thread.
    public func shutdown() {
        let clients = state.withLock { state -> [HTTPClient] in
            let clients = Array(state.httpClients.values)
            state.httpClients = [:]
            state.registries = [:]
            return clients
        }
        for client in clients { client.shutdown() }
    }
}
