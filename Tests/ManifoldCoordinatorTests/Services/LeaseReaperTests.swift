import Foundation
import Logging
import ManifoldAPI
import ManifoldCore
import ManifoldStore
import ManifoldTestSupport
import ServiceLifecycle
import Synchronization
import Testing

@testable import ManifoldCoordinator

/// The lease reaper in a real `ServiceGroup` on a real SQLite store, with both of its clocks moved by hand: the
/// store's wall clock (what leases expire by) and the monotonic clock the reaper sleeps on. A forward step of the
/// wall clock gives every running lease a full TTL instead of expiring them all at once; time that really passed
/// expires an overdue lease.
@Suite struct LeaseReaperTests {
    /// Two agents, each holding a confirmed lease on one platform of one build, and a reaper passing every 30 s of
    /// the manual clock (a pass less than the pause tolerance of 15 s late is no pause).
    /// The store's wall clock, moved by hand.
    final class WallClock: Sendable {
        private let current = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
        var now: Date { current.withLock { $0 } }
        func advance(_ seconds: TimeInterval) { current.withLock { $0 = $0.addingTimeInterval(seconds) } }
    }

    final class Setup: Sendable {
        static let ttl: TimeInterval = 60
        let scratch: ScratchDirectory
        let wall = WallClock()
        let clock = ManualMonotonicClock()
        let store: Store
        let metrics = CoordinatorMetrics()
        let agents: [AgentView]
        let leases: [Lease]
        let buildId: String
        let group: ServiceGroup
        let running: Task<Void, any Error>

        init() async throws {
            scratch = try ScratchDirectory(prefix: "lease-reaper")
            let wall = wall
            store = try Store(
                path: scratch.file("manifold.db").path, settings: StoreSettings(leaseTTL: Self.ttl),
                now: { wall.now })
            let platforms = [Platform(os: "linux", architecture: "amd64"), Platform(os: "linux", architecture: "arm64")]
            let context = Digest.compute(of: Data("context".utf8))
            try await store.recordContext(digest: context, size: 7)
            buildId = try await store.submitBuild(
                BuildSpec(
                    image: "127.0.0.1:1/team/app", tags: ["1.0"], platforms: platforms.map { PlatformSpec(platform: $0) },
                    context: .upload(digest: context)),
                submittedBy: "test"
            ).id
            var agents: [AgentView] = []
            var leases: [Lease] = []
            for platform in platforms {
                let agent = try await store.joinAgent(
                    JoinRequest(
                        name: "builder-\(platform.architecture)", platforms: [platform], labels: [:], builders: ["command"],
                        version: "test"),
                    secretHash: "hash-\(platform.architecture)")
                let lease = try #require(
                    try await store.lease(
                        agentId: agent.id,
                        poll: PollRequest(platforms: [platform], labels: [:], builders: ["command"], version: "test")))
                // The first heartbeat, as a real agent sends at once: the lease is the agent's for a full TTL.
                _ = try await store.heartbeat(agentId: agent.id, HeartbeatRequest(jobId: lease.jobId, epoch: lease.epoch))
                agents.append(agent)
                leases.append(lease)
            }
            self.agents = agents
            self.leases = leases

            var logger = Logger(label: "test.lease-reaper")
            logger.logLevel = .critical
            let reaper = LeaseReaper(
                store: store, notifier: WorkNotifier(), metrics: metrics, interval: .seconds(30), clock: clock, logger: logger)
            let group = ServiceGroup(services: [reaper], logger: logger)
            self.group = group
            running = Task { try await group.run() }
            // The first pass (nothing to expire) is done once the reaper sleeps.
            try await clock.waitForSleepers()
        }

        /// Moves the wall clock by `wall` seconds and the reaper's clock by its 30 s interval, and returns once the
        /// pass that woke is done.
        func pass(wall seconds: TimeInterval) async throws {
            wall.advance(seconds)
            clock.advance(by: .seconds(30))
            try await clock.waitForSleepers()
        }

        var now: Date { wall.now }

        /// Each attempt's state and lease expiry, in lease order.
        func attempts() async throws -> [(state: String, leaseExpiresAt: Date)] {
            let epochs = leases.map(\.epoch)
            return try await store.backend.read { db in
                try epochs.map { epoch in
                    let row = try #require(
                        try SQLRow.fetchOne(
                            db, sql: "SELECT state, leaseExpiresAt FROM attempt WHERE epoch = ?", arguments: [epoch]))
                    let state: String = row["state"]
                    let expiry: Double = row["leaseExpiresAt"]
                    return (state, Date(timeIntervalSince1970: expiry))
                }
            }
        }

        func lostEvents() async throws -> [BuildEvent] {
            try await store.events(buildId: buildId).filter { $0.type == "job.lost" }
        }

        func stop() async throws {
            await group.triggerGracefulShutdown()
            try await running.value
            scratch.remove()
        }
    }

    @Test func aForwardClockJumpGivesRunningLeasesAFullTTLInsteadOfExpiringThem() async throws {
        let setup = try await Setup()
        // The wall clock steps forward five TTLs while the reaper slept its 30 s: NTP, a resumed VM. No agent
        // missed a heartbeat for that.
        try await setup.pass(wall: 300)
        let afterJump = setup.now
        let extended = try await setup.attempts()
        #expect(extended.map(\.state) == ["running", "running"], "every lease expired at once: \(extended)")
        for attempt in extended {
            #expect(
                abs(attempt.leaseExpiresAt.timeIntervalSince(afterJump) - Setup.ttl) < 0.001,
                "the lease was not given a full TTL from the jump: \(attempt)")
        }
        #expect(try await setup.lostEvents().isEmpty)

        // The agents have that TTL to reach the coordinator: the first does, the second never heartbeats again.
        try await setup.pass(wall: 30)
        let first = setup.agents[0]
        _ = try await setup.store.heartbeat(
            agentId: first.id, HeartbeatRequest(jobId: setup.leases[0].jobId, epoch: setup.leases[0].epoch))
        try await setup.pass(wall: 30)
        #expect(try await setup.attempts().map(\.state) == ["running", "running"], "expired before the TTL was over")
        // A TTL and a pass after the jump, the silent agent's lease is lost like any other; the other's is kept.
        try await setup.pass(wall: 30)
        #expect(try await setup.attempts().map(\.state) == ["running", "lost"])
        let lost = try await setup.lostEvents()
        #expect(lost.count == 1 && lost[0].data["reason"]?.contains("builder-arm64") == true, "\(lost)")
        try await setup.stop()
    }

    @Test func withoutAJumpAnOverdueLeaseExpires() async throws {
        let setup = try await Setup()
        // Wall and monotonic time pass together: two passes reach the lease's expiry, which is not yet past.
        try await setup.pass(wall: 30)
        try await setup.pass(wall: 30)
        #expect(try await setup.attempts().map(\.state) == ["running", "running"])
        try await setup.pass(wall: 30)
        #expect(try await setup.attempts().map(\.state) == ["lost", "lost"])
        let lost = try await setup.lostEvents()
        #expect(lost.count == 2, "\(lost)")
        #expect(lost.allSatisfy { $0.data["reason"]?.contains("it stopped renewing it") == true }, "\(lost)")
        #expect(setup.metrics.render(gauges: []).contains("manifold_lease_expiries_total 2"))
        try await setup.stop()
    }
}
