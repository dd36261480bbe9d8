import Foundation
import ManifoldHTTP
import Testing

@testable import ManifoldRegistry

@Suite struct RegistryClientPoolTests {
    /// Callers racing for a registry the pool has not reached yet get one client, and the pool starts one HTTP client
    /// (one transfer thread) for it, not one per caller that then stops again.
    @Test func callersRacingForANewRegistryShareOneClientAndOneTransferThread() async throws {
        for round in 0..<20 {
            let pool = RegistryClientPool(configuration: RegistryConfiguration(certsDirectories: []))
            defer { pool.shutdown() }
            let registries = try await withThrowingTaskGroup(of: ObjectIdentifier.self) { group in
                for _ in 0..<16 {
                    group.addTask { ObjectIdentifier(try pool.client(for: "registry.invalid:5000")) }
                }
                var seen = Set<ObjectIdentifier>()
                for try await client in group { seen.insert(client) }
                return seen
            }
            #expect(registries.count == 1, "round \(round)")
            #expect(pool.httpClientsStarted == 1, "round \(round)")
        }
        let pool = RegistryClientPool(configuration: RegistryConfiguration(certsDirectories: []))
        defer { pool.shutdown() }
        _ = try pool.client(for: "one.invalid")
        _ = try pool.client(for: "two.invalid")
        _ = try pool.client(for: "one.invalid")
        #expect(pool.httpClientsStarted == 2)
    }

    /// A pool that was shut down makes no client (and starts no transfer thread) afterwards, even for a caller that
    /// was already on its way when the shutdown came.
    @Test func aPoolShutDownMakesNoMoreClients() async throws {
        let pool = RegistryClientPool(configuration: RegistryConfiguration(certsDirectories: []))
        _ = try pool.client(for: "before.invalid")
        pool.shutdown()
        #expect(throws: HTTPClientError.self) { try pool.client(for: "before.invalid") }
        #expect(throws: HTTPClientError.self) { try pool.client(for: "after.invalid") }
        #expect(pool.httpClientsStarted == 1)
    }
}
