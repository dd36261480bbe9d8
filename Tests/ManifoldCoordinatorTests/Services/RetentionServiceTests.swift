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

/// The retention service in a real `ServiceGroup`: it runs soon after start, counts what it removed, and a
/// graceful shutdown ends it in the middle of its wait.
@Suite struct RetentionServiceTests {
    @Test func runsSoonAfterStartCountsWhatItRemovedAndStopsOnGracefulShutdown() async throws {
        let scratch = try ScratchDirectory(prefix: "retention-service")
        defer { scratch.remove() }
        let clock = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
        let store = try Store(path: scratch.file("manifold.db").path, now: { clock.withLock { $0 } })
        let contexts = ContextDirectory(scratch.file("contexts"))
        try FileManager.default.createDirectory(at: contexts.url, withIntermediateDirectories: true)

        // A build that failed after logging, with an uploaded context only it used.
        let bytes = Data("FROM scratch\n".utf8)
        let digest = Digest.compute(of: bytes)
        try await store.recordContext(digest: digest, size: Int64(bytes.count))
        try bytes.write(to: contexts.file(for: digest))
        let platform = Platform(os: "linux", architecture: "amd64")
        let agent = try await store.joinAgent(
            JoinRequest(name: "builder", platforms: [platform], labels: [:], builders: ["command"], version: "test"),
            secretHash: "hash")
        let build = try await store.submitBuild(
            BuildSpec(
                image: "registry.local/app", tags: ["1.0"], platforms: [PlatformSpec(platform: platform)],
                context: .upload(digest: digest), maxAttempts: 1),
            submittedBy: "test")
        let lease = try #require(
            try await store.lease(
                agentId: agent.id, poll: PollRequest(platforms: [platform], labels: [:], builders: ["command"], version: "test")))
        _ = try await store.appendLog(
            agentId: agent.id, jobId: lease.jobId, epoch: lease.epoch, offset: 0, data: Data("step 1\nstep 2\n".utf8))
        try await store.complete(
            agentId: agent.id, CompleteRequest(jobId: lease.jobId, epoch: lease.epoch, outcome: .failed, exitCode: 1))
        clock.withLock { $0 = $0.addingTimeInterval(31 * 86_400) }

        var logger = Logger(label: "test.retention")
        logger.logLevel = .critical
        let metrics = CoordinatorMetrics()
        let service = RetentionService(
            store: store, policy: CoordinatorSettings.defaults.retentionPolicy, contexts: contexts, metrics: metrics,
            interval: .seconds(3_600), startDelay: .milliseconds(100), logger: logger)
        let group = ServiceGroup(services: [service], logger: logger)
        let running = Task { try await group.run() }

        var text = ""
        for _ in 0..<200 {
            text = metrics.render(gauges: [])
            if text.contains("manifold_retention_runs_total 1") { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(text.contains("manifold_retention_runs_total 1"), "\(text)")
        #expect(text.contains("manifold_retention_builds_pruned_total 1"))
        #expect(text.contains("manifold_retention_log_bytes_deleted_total 14"))
        #expect(text.contains("manifold_retention_contexts_deleted_total 1"))
        #expect(text.contains("manifold_retention_context_bytes_deleted_total \(bytes.count)"))
        #expect(try await store.events(buildId: build.id).map(\.type) == ["build.pruned"])
        #expect(!FileManager.default.fileExists(atPath: contexts.file(for: digest).path))

        // The service is now waiting an hour for its next pass; a graceful shutdown ends it at once.
        let stopping = ContinuousClock.now
        await group.triggerGracefulShutdown()
        try await running.value
        // An hour's wait ended by the shutdown: a bound far below it, with room for a loaded machine.
        #expect(ContinuousClock.now - stopping < .seconds(60))
    }

    /// Two replicas on one database (two stores on one SQLite file, each with its own contexts directory): the pass
    /// over the database runs on one of them per interval; the other sweeps only its own contexts directory.
    @Test func replicasRunTheDatabasePassOncePerIntervalAndEachSweepsItsOwnContexts() async throws {
        let scratch = try ScratchDirectory(prefix: "retention-replicas")
        defer { scratch.remove() }
        let clock = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
        let path = scratch.file("manifold.db").path
        var logger = Logger(label: "test.retention")
        logger.logLevel = .critical
        func replica(_ name: String) throws -> (Store, ContextDirectory, CoordinatorMetrics, RetentionService) {
            let store = try Store(path: path, replica: name, now: { clock.withLock { $0 } })
            let contexts = ContextDirectory(scratch.file("contexts-\(name)"))
            try FileManager.default.createDirectory(at: contexts.url, withIntermediateDirectories: true)
            let metrics = CoordinatorMetrics()
            let service = RetentionService(
                store: store, policy: CoordinatorSettings.defaults.retentionPolicy, contexts: contexts, metrics: metrics,
                interval: .seconds(600), logger: logger)
            return (store, contexts, metrics, service)
        }
        let (first, _, firstMetrics, firstService) = try replica("replica-a")
        let (_, secondContexts, secondMetrics, secondService) = try replica("replica-b")
        // An interrupted upload on replica b's disk (older than an hour by the store's clock).
        let leftover = secondContexts.url.appendingPathComponent(".upload-interrupted")
        try Data("partial".utf8).write(to: leftover)

        await firstService.runOnce()
        #expect(firstMetrics.render(gauges: []).contains("manifold_retention_runs_total 1\n"))
        #expect(try await first.lastRun(of: .retention)?.replica == "replica-a")

        // Within the interval replica b leaves the database alone, but still cleans its own directory.
        clock.withLock { $0 = $0.addingTimeInterval(300) }
        await secondService.runOnce()
        #expect(secondMetrics.render(gauges: []).contains("manifold_retention_runs_total 0\n"))
        #expect(!FileManager.default.fileExists(atPath: leftover.path))
        #expect(try await first.lastRun(of: .retention)?.replica == "replica-a")

        // Once the interval is over, whichever replica comes first runs the pass.
        clock.withLock { $0 = $0.addingTimeInterval(300) }
        await secondService.runOnce()
        #expect(secondMetrics.render(gauges: []).contains("manifold_retention_runs_total 1\n"))
        await firstService.runOnce()
        #expect(firstMetrics.render(gauges: []).contains("manifold_retention_runs_total 1\n"))
        #expect(try await first.lastRun(of: .retention)?.replica == "replica-b")
    }
}
