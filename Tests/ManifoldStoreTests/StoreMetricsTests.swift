import CoreMetrics
import MetricsTestKit
import Testing

@testable import ManifoldStore

/// What the coordinator's `/metrics` reads from the store, on the selected engine: queued jobs by platform, and the
/// time of every transaction, recorded with swift-metrics' own test backend.
@Suite struct StoreMetricsTests {
    @Test func queuedJobsAreCountedByNormalizedPlatformAndLeaveTheCountWhenLeased() async throws {
        let fixture = try await StoreFixture()
        #expect(try await fixture.store.queuedJobsByPlatform() == [:])
        _ = try await fixture.submit(platforms: ["linux/amd64", "linux/arm64/v8"])
        _ = try await fixture.submit(platforms: ["linux/amd64"])
        #expect(try await fixture.store.queuedJobsByPlatform() == ["linux/amd64": 2, "linux/arm64": 1])

        let agent = try await fixture.join("arm", platforms: ["linux/arm64"])
        #expect(try await fixture.poll(agent) != nil)
        #expect(try await fixture.store.queuedJobsByPlatform() == ["linux/amd64": 2])
    }

    @Test func everyTransactionIsTimedByKindWithTheFactoryGiven() async throws {
        let fixture = try await StoreFixture()
        let metrics = TestMetrics()
        fixture.store.recordTransactionDurations(with: metrics)
        _ = try await fixture.submit(platforms: ["linux/amd64"])
        _ = try await fixture.store.stateCounts()
        _ = try await fixture.store.queuedJobsByPlatform()

        let label = "manifold_store_transaction_duration_seconds"
        let reads = try metrics.expectTimer(label, [("kind", "read")])
        let writes = try metrics.expectTimer(label, [("kind", "write")])
        #expect(reads.values.count >= 2)
        #expect(writes.values.count >= 2)
        #expect((reads.values + writes.values).allSatisfy { $0 >= 0 })
    }
}
