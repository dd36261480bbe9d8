import Foundation
import Logging
import ManifoldAPI
import ManifoldCore
import ManifoldRegistry
import ManifoldStore
import ManifoldTestSupport
import ServiceLifecycle
import Synchronization
import Testing

@testable import ManifoldCoordinator

/// Builds on a real SQLite store whose single platform an agent built, pushed to a real registry and reported, for
/// the verifier and publisher services to work on.
final class ReportedBuilds: Sendable {
    struct Reported: Sendable {
        var buildId: String
        var jobId: String
        var epoch: Int64
    }

    let scratch: ScratchDirectory
    let store: Store
    let registries: RegistryClientPool
    let builds: [Reported]

    /// One build per repository in `repositories` (under `registry`), each reported by its own agent; with
    /// `verified`, each report is also recorded as verified, which queues the build's list for publishing.
    init(
        registry: String, repositories: [String], verified: Bool, settings: StoreSettings = StoreSettings(leaseTTL: 60)
    )
        async throws
    {
        scratch = try ScratchDirectory(prefix: "reported-builds")
        store = try Store(path: scratch.file("manifold.db").path, settings: settings)
        // One try per registry call: a registry that does not answer fails the publisher's run at once.
        var configuration = RegistryConfiguration(
            plainHTTPHosts: [registry], certsDirectories: [], credentials: StaticCredentials())
        configuration.retry = RetryPolicy(maxAttempts: 1)
        registries = RegistryClientPool(configuration: configuration)
        let platform = Platform(os: "linux", architecture: "amd64")
        var builds: [Reported] = []
        for (index, repository) in repositories.enumerated() {
            let context = Digest.compute(of: Data("context \(repository)".utf8))
            try await store.recordContext(digest: context, size: 10)
            let agent = try await store.joinAgent(
                JoinRequest(name: "builder-\(index)", platforms: [platform], labels: [:], builders: ["command"], version: "test"),
                secretHash: "hash-\(index)")
            let build = try await store.submitBuild(
                BuildSpec(
                    image: "\(registry)/\(repository)", tags: ["1.0"], platforms: [PlatformSpec(platform: platform)],
                    context: .upload(digest: context), maxAttempts: 1),
                submittedBy: "test")
            let lease = try #require(
                try await store.lease(
                    agentId: agent.id,
                    poll: PollRequest(platforms: [platform], labels: [:], builders: ["command"], version: "test")))
            let reference = "\(registry)/\(repository):\(lease.spec.tag)"
            // With `verified`, the registry may be down: the report is never checked there.
            let digest =
                verified
                ? Digest.compute(of: Data("image \(repository)".utf8))
                : try await PublishingRecoveryTests.push(platform, to: try ImageReference(parsing: reference), text: repository)
            try await store.complete(
                agentId: agent.id,
                CompleteRequest(
                    jobId: lease.jobId, epoch: lease.epoch, outcome: .succeeded, imageReference: reference, digest: digest))
            if verified {
                try await store.recordVerification(
                    jobId: lease.jobId, epoch: lease.epoch, outcome: .verified, canonicalReference: reference)
            }
            builds.append(Reported(buildId: build.id, jobId: lease.jobId, epoch: lease.epoch))
        }
        self.builds = builds
    }

    /// Runs `services` in a service group until `body` returns, then shuts them down gracefully.
    func running<T: Sendable>(_ services: [any Service], _ body: () async throws -> T) async throws -> T {
        var logger = Logger(label: "test.services")
        logger.logLevel = .critical
        let group = ServiceGroup(services: services, logger: logger)
        let task = Task { try await group.run() }
        do {
            let result = try await body()
            await group.triggerGracefulShutdown()
            try await task.value
            return result
        } catch {
            await group.triggerGracefulShutdown()
            try? await task.value
            throw error
        }
    }

    /// The attempt's state and reason.
    func attempt(_ build: Reported) async throws -> (state: String, reason: String?) {
        let epoch = build.epoch
        return try await store.backend.read { db in
            let row = try SQLRow.fetchOne(db, sql: "SELECT state, reason FROM attempt WHERE epoch = ?", arguments: [epoch])
            return (row?["state"] ?? "missing", row?["reason"])
        }
    }

    /// Polls `condition` until it holds or `timeout` of real time passed; returns whether it held.
    func eventually(_ timeout: Duration = .seconds(60), _ condition: () async throws -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return try await condition()
    }

    func stop() {
        registries.shutdown()
        scratch.remove()
    }
}

/// A row the verifier or the publisher cannot read fails on its own, with a reason that says so, and never stalls the
/// rows behind it: driven through the real services, on a real SQLite store and a real registry.
@Suite struct UnreadableRowTests {
    static func quietLogger() -> Logger {
        var logger = Logger(label: "test.unreadable")
        logger.logLevel = .critical
        return logger
    }

    @Test func anUnreadableReportFailsItsAttemptAndTheOthersAreVerified() async throws {
        let registry = try TestRegistry.start(.http)
        defer { registry.stop() }
        // The corrupt report comes first in the queue.
        let setup = try await ReportedBuilds(
            registry: registry.host, repositories: ["team/broken", "team/good"], verified: false)
        defer { setup.stop() }
        let (bad, good) = (setup.builds[0], setup.builds[1])
        try await setup.store.backend.write { db in
            try db.execute(sql: "UPDATE attempt SET digest = 'sha256:not-a-digest' WHERE epoch = ?", arguments: [bad.epoch])
        }
        let verifier = Verifier(
            store: setup.store, registries: setup.registries, notifier: WorkNotifier(), metrics: CoordinatorMetrics(),
            logger: Self.quietLogger())
        let settled = try await setup.running([verifier]) {
            try await setup.eventually {
                let (good, bad) = (try await setup.attempt(good), try await setup.attempt(bad))
                return good.state == "succeeded" && bad.state == "failed"
            }
        }
        let (goodAttempt, badAttempt) = (try await setup.attempt(good), try await setup.attempt(bad))
        #expect(settled, "good: \(goodAttempt), bad: \(badAttempt)")
        #expect(try await setup.store.build(id: good.buildId).jobs[0].state == .succeeded)
        let reason = badAttempt.reason ?? ""
        #expect(reason.contains("the coordinator cannot read this report"), "\(reason)")
        #expect(reason.contains("not-a-digest"), "the reason does not name the bad value: \(reason)")
        #expect(try await setup.store.build(id: bad.buildId).jobs[0].state == .failed)
    }

    @Test func anUnreadableOutboxRowFailsItsBuildAndTheOthersArePublished() async throws {
        let registry = try TestRegistry.start(.http)
        defer { registry.stop() }
        // The children the lists point at are in the registry under the references the agents reported.
        let setup = try await ReportedBuilds(
            registry: registry.host, repositories: ["team/broken", "team/good"], verified: false)
        defer { setup.stop() }
        let (bad, good) = (setup.builds[0], setup.builds[1])
        for build in setup.builds {
            let pending = try #require(try await setup.store.pendingVerifications().ready.first { $0.epoch == build.epoch })
            try await setup.store.recordVerification(
                jobId: build.jobId, epoch: build.epoch, outcome: .verified, canonicalReference: pending.imageReference)
        }
        try await setup.store.backend.write { db in
            try db.execute(sql: "UPDATE outbox SET children = 'not json' WHERE buildId = ?", arguments: [bad.buildId])
        }
        let publisher = Publisher(
            store: setup.store, registries: setup.registries, notifier: WorkNotifier(), metrics: CoordinatorMetrics(),
            logger: Self.quietLogger())
        let settled = try await setup.running([publisher]) {
            try await setup.eventually {
                let good = try await setup.store.build(id: good.buildId)
                let bad = try await setup.store.build(id: bad.buildId)
                return good.state == .published && bad.state == .failed
            }
        }
        let (goodBuild, badBuild) = (try await setup.store.build(id: good.buildId), try await setup.store.build(id: bad.buildId))
        #expect(settled, "good: \(goodBuild.state), bad: \(badBuild.state)")
        let reason = badBuild.reason ?? ""
        #expect(reason.contains("the coordinator cannot read this publishing record"), "\(reason)")
        // The good list is really in the registry, under its tag.
        let listed = try await setup.registries.client(for: registry.host).fetchManifest(
            repository: "team/good", reference: "1.0")
        #expect(
            listed.mediaType == MediaType.ociImageIndex || listed.mediaType == MediaType.dockerManifestList, "\(listed.mediaType)"
        )
    }
}
