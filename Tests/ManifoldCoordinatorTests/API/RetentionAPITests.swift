import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldStore
import Testing

@testable import ManifoldCoordinator

/// What users see of a build whose logs retention removed: the result, when it happened, and a clear 410 for the
/// log itself. The old build is written through a second store on the same database file with a clock 40 days
/// back, then retention runs, as the service would.
@Suite struct RetentionAPITests {
    @Test func aPrunedBuildKeepsItsResultAndItsLogAnswers410() async throws {
        // The coordinator's own retention service keeps logs forever here, so on a slow run (its first pass comes a
        // minute after start) it cannot prune the old build before the test's own run, which must be the one that does.
        let fixture = try await CoordinatorFixture.start { $0.retentionDays = 0 }
        let viewer = try await fixture.token(.viewer)

        let past = try Store(path: fixture.state.database.path, now: { Date().addingTimeInterval(-40 * 86_400) })
        let platform = Platform(os: "linux", architecture: "amd64")
        let digest = Digest.compute(of: Data("old context".utf8))
        try await past.recordContext(digest: digest, size: 11)
        let agent = try await past.joinAgent(
            JoinRequest(name: "old-builder", platforms: [platform], labels: [:], builders: ["command"], version: "test"),
            secretHash: "old-builder-hash")
        let build = try await past.submitBuild(
            BuildSpec(
                image: "registry.local/app", tags: ["1.0"], platforms: [PlatformSpec(platform: platform)],
                context: .upload(digest: digest), maxAttempts: 1),
            submittedBy: "test")
        let lease = try #require(
            try await past.lease(
                agentId: agent.id, poll: PollRequest(platforms: [platform], labels: [:], builders: ["command"], version: "test")))
        _ = try await past.appendLog(
            agentId: agent.id, jobId: lease.jobId, epoch: lease.epoch, offset: 0, data: Data("compiling\n".utf8))
        try await past.complete(
            agentId: agent.id, CompleteRequest(jobId: lease.jobId, epoch: lease.epoch, outcome: .failed, exitCode: 2))

        let before = try await fixture.call("GET", "/api/v1/builds/\(build.id)/logs?platform=linux/amd64", token: viewer)
        #expect(before.status == 200)
        #expect(String(decoding: before.body, as: UTF8.self) == "compiling\n")

        let present = try Store(path: fixture.state.database.path)
        let report = try await present.applyRetention(CoordinatorSettings.defaults.retentionPolicy, contexts: nil)
        #expect(report.buildsPruned == 1)

        let view = try await fixture.call("GET", "/api/v1/builds/\(build.id)", token: viewer).decode(BuildView.self)
        #expect(view.state == .failed)
        #expect(view.logsRemovedAt != nil)
        for query in ["", "&follow=true"] {
            let log = try await fixture.call(
                "GET", "/api/v1/builds/\(build.id)/logs?platform=linux/amd64\(query)", token: viewer)
            #expect(log.status == 410)
            #expect(log.error?.code == "LOG_REMOVED")
            #expect(log.error?.message.contains("removed by retention") == true, "\(String(describing: log.error))")
        }
        let events = try await fixture.call("GET", "/api/v1/builds/\(build.id)/events", token: viewer)
        let text = String(decoding: events.body, as: UTF8.self)
        #expect(text.contains("event: build.pruned"), "\(text)")
        #expect(!text.contains("event: job.log"), "\(text)")
        await fixture.stop()
    }
}
