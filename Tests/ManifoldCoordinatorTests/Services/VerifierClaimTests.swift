import Foundation
import Logging
import ManifoldAPI
import ManifoldCore
import ManifoldRegistry
import ManifoldStore
import ManifoldTestSupport
import Synchronization
import Testing

@testable import ManifoldCoordinator

/// The verifier on one replica among several (two stores on one SQLite file, named `replica-a` and `replica-b`,
/// sharing a clock the test moves): a report another replica claimed is left to it, a long check keeps its claim,
/// and a check whose claim was taken over touches neither the child tag nor the outcome. The registry is real, seen
/// through a fault proxy that logs (and can slow) what the verifier asks of it.
@Suite struct VerifierClaimTests {
    /// A clock the test moves by hand, read by both stores.
    final class ManualClock: Sendable {
        private let current = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
        var now: Date { current.withLock { $0 } }
        func advance(_ seconds: TimeInterval) { current.withLock { $0 = $0.addingTimeInterval(seconds) } }
    }

    /// A report awaiting its check: the image is in the registry, and the agent reported it through the proxy's
    /// address (the build's repository), so every request of a check shows in the proxy's log.
    final class Setup: Sendable {
        let registry: TestRegistry
        let proxy: FaultProxy
        let scratch: ScratchDirectory
        let clock = ManualClock()
        /// The replica whose verifier runs.
        let replica: Store
        /// The other replica, driven by the test.
        let other: Store
        let registries: RegistryClientPool
        let pending: PendingVerification

        init() async throws {
            registry = try TestRegistry.start(.http)
            proxy = try registry.withFaultProxy()
            scratch = try ScratchDirectory(prefix: "verifier-claims")
            let path = scratch.file("manifold.db").path
            let clock = clock
            let settings = StoreSettings(leaseTTL: 60)
            replica = try Store(path: path, settings: settings, replica: "replica-a", now: { clock.now })
            other = try Store(path: path, settings: settings, replica: "replica-b", now: { clock.now })
            registries = RegistryClientPool(
                configuration: RegistryConfiguration(
                    plainHTTPHosts: [registry.host, proxy.host], certsDirectories: [], credentials: StaticCredentials()))

            let platform = Platform(os: "linux", architecture: "amd64")
            let context = Digest.compute(of: Data("context".utf8))
            try await replica.recordContext(digest: context, size: 7)
            let agent = try await replica.joinAgent(
                JoinRequest(name: "builder", platforms: [platform], labels: [:], builders: ["command"], version: "test"),
                secretHash: "hash")
            let build = try await replica.submitBuild(
                BuildSpec(
                    image: "\(proxy.host)/team/app", tags: ["1.0"], platforms: [PlatformSpec(platform: platform)],
                    context: .upload(digest: context)),
                submittedBy: "test")
            let lease = try #require(
                try await replica.lease(
                    agentId: agent.id,
                    poll: PollRequest(platforms: [platform], labels: [:], builders: ["command"], version: "test")))
            let digest = try await PublishingRecoveryTests.push(
                platform, to: try ImageReference(parsing: "\(registry.host)/team/app:\(lease.spec.tag)"), text: "claims")
            try await replica.complete(
                agentId: agent.id,
                CompleteRequest(
                    jobId: lease.jobId, epoch: lease.epoch, outcome: .succeeded,
                    imageReference: "\(proxy.host)/team/app:\(lease.spec.tag)", digest: digest))
            pending = try #require(try await replica.pendingVerifications().ready.first { $0.buildId == build.id })
        }

        func verifier(claimRenewal: Duration? = nil) -> Verifier {
            var logger = Logger(label: "test.verifier")
            logger.logLevel = .critical
            return Verifier(
                store: replica, registries: registries, notifier: WorkNotifier(), metrics: CoordinatorMetrics(),
                logger: logger, claimRenewal: claimRenewal)
        }

        func advance(_ seconds: TimeInterval) { clock.advance(seconds) }

        var jobState: JobState {
            get async throws { try await replica.build(id: pending.buildId).jobs[0].state }
        }

        var childTagPUTs: [FaultProxy.Request] {
            proxy.requestLog().filter { $0.method == "PUT" && $0.path.hasSuffix("/manifests/\(pending.childTag)") }
        }

        func stop() {
            registries.shutdown()
            proxy.stop()
            registry.stop()
            scratch.remove()
        }
    }

    @Test func aReportAnotherReplicaClaimedIsNotCheckedUntilItsClaimRunsOut() async throws {
        let setup = try await Setup()
        defer { setup.stop() }
        let held = try #require(try await setup.other.claimVerification(jobId: setup.pending.jobId, epoch: setup.pending.epoch))
        let verifier = setup.verifier()

        // Not due on this replica, and a check started anyway (read before the claim) leaves it alone.
        #expect(try await !setup.replica.pendingVerifications().ready.contains { $0.epoch == setup.pending.epoch })
        await verifier.verify(setup.pending)
        #expect(setup.proxy.requestLog().isEmpty, "the verifier asked the registry: \(setup.proxy.requestLog())")
        #expect(try await setup.jobState == .verifying)

        // Replica b died with the claim: once it ran out, this replica checks the report and tags the image.
        setup.advance(held.until.timeIntervalSince(setup.clock.now) + 1)
        let due = try await setup.replica.pendingVerifications().ready
        let report = try #require(due.first { $0.epoch == setup.pending.epoch })
        await verifier.verify(report)
        #expect(try await setup.jobState == .succeeded)
        #expect(setup.childTagPUTs.count == 1, "\(setup.proxy.requestLog())")
        // The dead replica's claim counts for nothing now.
        #expect(try await setup.other.renewVerificationClaim(held) == nil)
    }

    @Test func aLongCheckRenewsItsClaimAndKeepsTheOtherReplicaOut() async throws {
        let setup = try await Setup()
        defer { setup.stop() }
        // The check waits 5 s for the reported manifest, while the clock moves 80 s: past one claim TTL.
        try setup.proxy.setRules([FaultRule(method: "GET", pathRegex: "/manifests/sha256:", delay: 5)])
        let verifier = setup.verifier(claimRenewal: .milliseconds(200))
        let checking = Task { await verifier.verify(setup.pending) }
        for _ in 0..<4 {
            try await Task.sleep(for: .seconds(1))
            setup.advance(20)
            #expect(
                try await setup.other.claimVerification(jobId: setup.pending.jobId, epoch: setup.pending.epoch) == nil,
                "the other replica took over a claim that was being renewed")
        }
        await checking.value
        #expect(try await setup.jobState == .succeeded)
        #expect(setup.childTagPUTs.count == 1, "\(setup.proxy.requestLog())")
    }

    @Test func aCheckWhoseClaimWasTakenOverMovesNoTagAndRecordsNothing() async throws {
        let setup = try await Setup()
        defer { setup.stop() }
        try setup.proxy.setRules([FaultRule(method: "GET", pathRegex: "/manifests/sha256:", delay: 4)])
        let verifier = setup.verifier(claimRenewal: .milliseconds(1_500))
        let checking = Task { await verifier.verify(setup.pending) }
        // Wait for this replica's claim, then let it run out (the replica stalled) and take it over on the other.
        var waited = 0
        while try await setup.other.pendingVerifications().ready.contains(where: { $0.epoch == setup.pending.epoch }) {
            waited += 1
            try #require(waited < 200, "the verifier never claimed the report")
            try await Task.sleep(for: .milliseconds(20))
        }
        var takeover: VerificationClaim?
        for _ in 0..<5 where takeover == nil {
            setup.advance(61)
            takeover = try await setup.other.claimVerification(jobId: setup.pending.jobId, epoch: setup.pending.epoch)
        }
        let current = try #require(takeover)
        await checking.value
        #expect(setup.childTagPUTs.isEmpty, "\(setup.proxy.requestLog())")
        #expect(try await setup.jobState == .verifying)
        // The claim is still the other replica's, and its verdict is the one recorded.
        let renewed = try #require(try await setup.other.renewVerificationClaim(current))
        #expect(
            try await setup.other.recordVerification(
                jobId: setup.pending.jobId, epoch: setup.pending.epoch, outcome: .verified, claim: renewed))
        #expect(try await setup.jobState == .succeeded)
    }
}
