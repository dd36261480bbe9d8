import Foundation
import ManifoldTestSupport

@testable import ManifoldCoordinator

/// What the tests of a misbehaving registry start from: a plain-HTTP registry, the fault proxy in front of it (both
/// hosts insecure for the coordinator), a coordinator, a submitter token and one joined linux/amd64 agent named "a".
/// Images pushed through `proxy.host` reach the coordinator through the proxy's rules; agents push to `registry.host`.
///
/// ```swift
/// let scenario = try await ProxiedRegistryScenario.start { $0.retryBackoffSeconds = 1 }
/// defer { scenario.stopRegistry() }
/// try scenario.proxy.setRules([FaultRule(method: "PUT", status: 503)])
/// // …
/// await scenario.fixture.stop()
/// ```
struct ProxiedRegistryScenario: Sendable {
    let registry: TestRegistry
    let proxy: FaultProxy
    let fixture: CoordinatorFixture
    let submitter: String
    let agent: (id: String, secret: String)

    static func start(configure: (inout CoordinatorSettings) -> Void = { _ in }) async throws -> ProxiedRegistryScenario {
        let registry = try TestRegistry.start(.http)
        do {
            let proxy = try registry.withFaultProxy()
            do {
                let fixture = try await CoordinatorFixture.start(registry: registry) { settings in
                    settings.insecureRegistries = [registry.host, proxy.host]
                    configure(&settings)
                }
                return ProxiedRegistryScenario(
                    registry: registry, proxy: proxy, fixture: fixture, submitter: try await fixture.token(.submitter),
                    agent: try await fixture.joinAgent("a", platforms: ["linux/amd64"]))
            } catch {
                proxy.stop()
                throw error
            }
        } catch {
            registry.stop()
            throw error
        }
    }

    /// Stops the proxy and the registry (the test stops the coordinator first, with `fixture.stop()`).
    func stopRegistry() {
        proxy.stop()
        registry.stop()
    }
}
