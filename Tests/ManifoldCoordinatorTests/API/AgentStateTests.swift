import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldTestSupport
import Testing

@testable import ManifoldCoordinator

/// What draining and disabling an agent does to its work, over HTTP.
@Suite struct AgentStateTests {
    @Test func disablingAnAgentHandsItsJobToAnotherAndTellsItWhy() async throws {
        let fixture = try await CoordinatorFixture.start { $0.pollTimeoutSeconds = 1 }
        let submitter = try await fixture.token(.submitter)
        let admin = fixture.initialisation.adminToken
        let first = try await fixture.joinAgent("first", platforms: ["linux/amd64"])
        let second = try await fixture.joinAgent("second", platforms: ["linux/amd64"])
        let build = try await fixture.submit(submitter, image: "127.0.0.1:1/team/app", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(first.secret, platforms: ["linux/amd64"]).decode(PollResponse.self).lease)

        let changed = try await fixture.call(
            "POST", "/api/v1/agents/first/state", token: admin, json: AgentStateRequest(state: .disabled))
        #expect(changed.status == 200)
        // The disabled agent's next heartbeat says its lease is gone (409), so it stops the build.
        let heartbeat = try await fixture.call(
            "POST", "/api/v1/agent/heartbeat", token: first.secret, json: HeartbeatRequest(jobId: lease.jobId, epoch: lease.epoch)
        )
        #expect(heartbeat.status == 409)
        // Its polls come back empty with the reason, and the job goes to the other agent at once.
        let poll = try await fixture.poll(first.secret, platforms: ["linux/amd64"]).decode(PollResponse.self)
        #expect(poll.lease == nil)
        #expect(poll.notice?.contains("disabled") == true)
        let taken = try #require(
            try await fixture.poll(second.secret, platforms: ["linux/amd64"]).decode(PollResponse.self).lease)
        #expect(taken.jobId == lease.jobId)
        let view = try await fixture.build(build.id, token: submitter)
        #expect(view.jobs[0].agent == "second")

        // A draining agent is told so as well; `left` is not something an admin can set.
        _ = try await fixture.call("POST", "/api/v1/agents/second/state", token: admin, json: AgentStateRequest(state: .draining))
        let drained = try await fixture.poll(second.secret, platforms: ["linux/amd64"]).decode(PollResponse.self)
        #expect(drained.notice?.contains("draining") == true)
        let left = try await fixture.call(
            "POST", "/api/v1/agents/second/state", token: admin, json: AgentStateRequest(state: .left))
        #expect(left.status == 400)
        #expect(left.error?.field == "state")
        await fixture.stop()
    }
}
