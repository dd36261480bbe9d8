import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldHTTP
import ManifoldRegistry
import ManifoldTestSupport
import Testing

@testable import ManifoldCoordinator

/// The coordinator against the real registry: agents report digests, the coordinator verifies them and
/// publishes (and re-publishes) the list itself.
@Suite struct PublishingTests {
    /// Pushes a test image for the lease's platform under the lease's tag, as a builder would.
    static func pushImage(
        for lease: Lease, platform: Platform? = nil, text: String
    ) async throws -> (String, Digest) {
        let reference = try ImageReference(parsing: "\(lease.spec.image):\(lease.spec.tag)")
        let digest = try await PublishingRecoveryTests.push(platform ?? lease.spec.platform, to: reference, text: text)
        return (reference.description, digest)
    }

    static func complete(
        _ fixture: CoordinatorFixture, agent: String, lease: Lease, reference: String, digest: Digest
    ) async throws -> Int {
        try await fixture.call(
            "POST", "/api/v1/agent/complete", token: agent,
            json: CompleteRequest(
                jobId: lease.jobId, epoch: lease.epoch, outcome: .succeeded, imageReference: reference, digest: digest)
        ).status
    }

    @Test func verifiedPlatformsArePublishedAndARetryRepublishes() async throws {
        let registry = try TestRegistry.start(.http)
        defer { registry.stop() }
        let fixture = try await CoordinatorFixture.start(registry: registry)
        let submitter = try await fixture.token(.submitter)
        let linux = try await fixture.joinAgent("linux", platforms: ["linux/amd64"])
        let windows = try await fixture.joinAgent("windows", platforms: ["windows/amd64:10.0.20348.2227"])
        let build = try await fixture.submit(
            submitter, image: "\(registry.host)/team/app", platforms: ["linux/amd64", "windows/amd64:10.0.20348"],
            tags: ["1.0", "latest"])

        let linuxLease = try #require(
            try await fixture.poll(linux.secret, platforms: ["linux/amd64"]).decode(PollResponse.self).lease)
        let windowsLease = try #require(
            try await fixture.poll(windows.secret, platforms: ["windows/amd64:10.0.20348.2227"]).decode(PollResponse.self).lease)
        // Agents push to tags only their attempt owns; the stable child tags are the coordinator's.
        #expect(linuxLease.spec.tag == "1.0-linux-amd64-attempt-\(linuxLease.epoch)")
        #expect(windowsLease.spec.tag == "1.0-windows-amd64-10.0.20348-attempt-\(windowsLease.epoch)")

        let (linuxRef, linuxDigest) = try await Self.pushImage(for: linuxLease, text: "linux 1")
        #expect(
            try await Self.complete(fixture, agent: linux.secret, lease: linuxLease, reference: linuxRef, digest: linuxDigest)
                == 200)
        // Reporting twice is idempotent.
        #expect(
            try await Self.complete(fixture, agent: linux.secret, lease: linuxLease, reference: linuxRef, digest: linuxDigest)
                == 200)
        let (windowsRef, windowsDigest) = try await Self.pushImage(
            for: windowsLease, platform: try Platform(parsing: "windows/amd64:10.0.20348.2227"), text: "win 1"
        )
        #expect(
            try await Self.complete(
                fixture, agent: windows.secret, lease: windowsLease, reference: windowsRef, digest: windowsDigest) == 200)

        let published = try await fixture.waitForBuild(build.id, token: submitter) { $0.state == .published }
        let listDigest = try #require(published.listDigest)
        let raw = try await runChecked(
            "skopeo", ["inspect", "--raw", "--tls-verify=false", "docker://\(registry.host)/team/app:latest"])
        #expect(Digest.compute(of: Data(raw.utf8)) == listDigest)
        #expect(raw.contains("10.0.20348.2227"))

        // Rebuild Linux: a new digest is verified and the list re-published.
        let retried = try await fixture.call(
            "POST", "/api/v1/builds/\(build.id)/retry", token: submitter, json: RetryRequest(platform: "linux/amd64"))
        #expect(retried.status == 200)
        let again = try #require(try await fixture.poll(linux.secret, platforms: ["linux/amd64"]).decode(PollResponse.self).lease)
        #expect(again.attempt == 2)
        let (_, newDigest) = try await Self.pushImage(for: again, text: "linux 2")
        #expect(
            try await Self.complete(fixture, agent: linux.secret, lease: again, reference: linuxRef, digest: newDigest) == 200)
        let republished = try await fixture.waitForBuild(build.id, token: submitter) {
            $0.state == .published && $0.listDigest != listDigest
        }
        let rawAgain = try await runChecked(
            "skopeo", ["inspect", "--raw", "--tls-verify=false", "docker://\(registry.host)/team/app:1.0"])
        #expect(Digest.compute(of: Data(rawAgain.utf8)) == republished.listDigest)
        #expect(rawAgain.contains(newDigest.description))
        #expect(!rawAgain.contains(linuxDigest.description))
        // The old attempt is fenced off.
        #expect(
            try await Self.complete(fixture, agent: linux.secret, lease: linuxLease, reference: linuxRef, digest: newDigest)
                == 409)
        // Metrics count what happened.
        let metrics = String(decoding: try await fixture.call("GET", "/metrics", token: submitter).body, as: UTF8.self)
        #expect(metrics.contains("manifold_lists_published_total 2"))
        #expect(metrics.contains("manifold_builds_submitted_total 1"))
        #expect(metrics.contains("manifold_builds{state=\"published\"} 1"))
        #expect(metrics.contains("manifold_jobs{state=\"succeeded\"} 2"))
        #expect(metrics.contains("manifold_assembly_duration_seconds_count 2"))
        await fixture.stop()
    }

    @Test func aDigestOfTheWrongPlatformIsRejectedAndRetried() async throws {
        let registry = try TestRegistry.start(.http)
        defer { registry.stop() }
        let fixture = try await CoordinatorFixture.start(registry: registry)
        let submitter = try await fixture.token(.submitter)
        let agent = try await fixture.joinAgent("liar", platforms: ["linux/arm64"])
        let build = try await fixture.submit(submitter, image: "\(registry.host)/wrong/app", platforms: ["linux/arm64"])
        let lease = try #require(try await fixture.poll(agent.secret, platforms: ["linux/arm64"]).decode(PollResponse.self).lease)
        let (reference, digest) = try await Self.pushImage(
            for: lease, platform: Platform(os: "linux", architecture: "amd64"), text: "wrong arch")
        #expect(try await Self.complete(fixture, agent: agent.secret, lease: lease, reference: reference, digest: digest) == 200)
        let view = try await fixture.waitForBuild(build.id, token: submitter) {
            $0.jobs[0].state == .queued && $0.jobs[0].reason != nil
        }
        #expect(view.jobs[0].reason?.contains("linux/amd64") == true)
        #expect(view.listDigest == nil)
        await fixture.stop()
    }

    @Test func aWaitingPollIsWokenBySubmission() async throws {
        let fixture = try await CoordinatorFixture.start { $0.pollTimeoutSeconds = 90 }
        let submitter = try await fixture.token(.submitter)
        let agent = try await fixture.joinAgent("waiter", platforms: ["linux/amd64"])
        async let poll = fixture.poll(agent.secret, platforms: ["linux/amd64"], timeout: .seconds(120))
        try await Task.sleep(for: .milliseconds(500))
        _ = try await fixture.submit(submitter, image: "127.0.0.1:1/woken/app", platforms: ["linux/amd64"])
        let submitted = ContinuousClock.now
        let reply = try await poll
        // Nothing was queued when the poll started, so only the submission's notification can answer it
        // long before the 90 s poll timeout.
        #expect(try reply.decode(PollResponse.self).lease != nil)
        #expect(ContinuousClock.now - submitted < .seconds(45))
        await fixture.stop()
    }

    /// Work for another platform wakes a held poll, which reads that nothing is there for it and waits again without
    /// writing: the agent's row (its last-seen time) keeps the value the poll's arrival wrote.
    @Test func workForOthersWakesAHeldPollWithoutAWrite() async throws {
        let fixture = try await CoordinatorFixture.start { $0.pollTimeoutSeconds = 90 }
        let submitter = try await fixture.token(.submitter)
        let viewer = try await fixture.token(.viewer)
        let agent = try await fixture.joinAgent("arm-waiter", platforms: ["linux/arm64"])
        func lastSeen() async throws -> Date? {
            let agents = try await fixture.call("GET", "/api/v1/agents", token: viewer).decode([AgentView].self)
            return agents.first { $0.id == agent.id }?.lastSeenAt
        }
        // The API shows times to the second: each step below starts in a later second than the last write.
        let joined = try await lastSeen()
        try await Task.sleep(for: .milliseconds(1100))
        async let poll = fixture.poll(agent.secret, platforms: ["linux/arm64"], timeout: .seconds(120))
        var arrival = joined
        let waitedFrom = ContinuousClock.now
        while arrival == joined, ContinuousClock.now - waitedFrom < .seconds(60) {
            try await Task.sleep(for: .milliseconds(50))
            arrival = try await lastSeen()
        }
        #expect(arrival != joined, "the poll's arrival was never recorded")
        try await Task.sleep(for: .milliseconds(1100))
        for index in 0..<5 {
            _ = try await fixture.submit(submitter, image: "127.0.0.1:1/others/app\(index)", platforms: ["linux/amd64"])
        }
        try await Task.sleep(for: .milliseconds(500))
        #expect(try await lastSeen() == arrival)
        // Still held, and still woken by work it can take.
        _ = try await fixture.submit(submitter, image: "127.0.0.1:1/mine/app", platforms: ["linux/arm64"])
        #expect(try await poll.decode(PollResponse.self).lease != nil)
        await fixture.stop()
    }

    /// A build with one job wakes one of the held polls that could take it, not all of them: the others are not
    /// woken at all, so they neither write nor read, and their rows keep the time their arrival wrote.
    @Test func oneJobWakesOneOfManyHeldPolls() async throws {
        let fixture = try await CoordinatorFixture.start { $0.pollTimeoutSeconds = 30 }
        let submitter = try await fixture.token(.submitter)
        let viewer = try await fixture.token(.viewer)
        var agents: [(id: String, secret: String)] = []
        for index in 0..<4 { agents.append(try await fixture.joinAgent("held-\(index)", platforms: ["linux/amd64"])) }
        func lastSeen() async throws -> [String: Date] {
            let views = try await fixture.call("GET", "/api/v1/agents", token: viewer).decode([AgentView].self)
            return Dictionary(uniqueKeysWithValues: views.compactMap { view in view.lastSeenAt.map { (view.id, $0) } })
        }
        let joined = try await lastSeen()
        try await Task.sleep(for: .milliseconds(1100))
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for agent in agents {
                group.addTask {
                    let reply = try await fixture.poll(agent.secret, platforms: ["linux/amd64"], timeout: .seconds(60))
                    return reply.status == 200 && (try? reply.decode(PollResponse.self).lease) != nil
                }
            }
            var arrived = try await lastSeen()
            let waitedFrom = ContinuousClock.now
            while agents.contains(where: { arrived[$0.id] == joined[$0.id] }), ContinuousClock.now - waitedFrom < .seconds(20) {
                try await Task.sleep(for: .milliseconds(50))
                arrived = try await lastSeen()
            }
            try await Task.sleep(for: .milliseconds(1100))
            let build = try await fixture.submit(submitter, image: "127.0.0.1:1/one/app", platforms: ["linux/amd64"])
            var leases = 0
            for try await leased in group where leased { leases += 1 }
            #expect(leases == 1)
            let after = try await lastSeen()
            let holder = try await fixture.build(build.id, token: viewer).jobs.first?.agent
            let untouched = agents.filter { after[$0.id] == arrived[$0.id] }.count
            // The agent that took the job is seen again (its confirmation); the three others were never woken.
            #expect(untouched == 3, "holder \(holder ?? "none"); arrived \(arrived); after \(after)")
        }
        await fixture.stop()
    }

    /// A report that ends its job wakes no held poll; one that queues the job again for a retry wakes them, and the
    /// retry reaches a held poll without waiting for its poll timeout.
    @Test func onlyAReportThatQueuesItsJobAgainWakesHeldPolls() async throws {
        let fixture = try await CoordinatorFixture.start { $0.pollTimeoutSeconds = 90 }
        let submitter = try await fixture.token(.submitter)
        let worker = try await fixture.joinAgent("worker", platforms: ["linux/amd64"])
        let waiter = try await fixture.joinAgent("waiter", platforms: ["linux/amd64"])
        func rechecks() async throws -> Int {
            let text = String(decoding: try await fixture.call("GET", "/metrics", token: submitter).body, as: UTF8.self)
            let line = text.split(separator: "\n").first { $0.hasPrefix("manifold_held_poll_rechecks_total ") }
            return line.flatMap { Int(Double($0.split(separator: " ").last ?? "") ?? 0) } ?? 0
        }
        func fail(_ lease: Lease, as agent: (id: String, secret: String)) async throws {
            let reply = try await fixture.call(
                "POST", "/api/v1/agent/complete", token: agent.secret,
                json: CompleteRequest(jobId: lease.jobId, epoch: lease.epoch, outcome: .failed, exitCode: 1))
            #expect(reply.status == 200)
        }

        // One attempt only: the failure ends the job.
        _ = try await fixture.submit(submitter, image: "127.0.0.1:1/final/app", platforms: ["linux/amd64"], maxAttempts: 1)
        let first = try #require(
            try await fixture.poll(worker.secret, platforms: ["linux/amd64"]).decode(PollResponse.self).lease)
        async let held = fixture.poll(waiter.secret, platforms: ["linux/amd64"], timeout: .seconds(120))
        try await Task.sleep(for: .milliseconds(500))
        let before = try await rechecks()
        try await fail(first, as: worker)
        try await Task.sleep(for: .milliseconds(500))
        #expect(try await rechecks() == before)

        // Two attempts: the failure queues a retry, which the held poll gets after the backoff.
        _ = try await fixture.submit(submitter, image: "127.0.0.1:1/retried/app", platforms: ["linux/amd64"], maxAttempts: 2)
        // The held poll takes its first attempt (a new job wakes it); the worker then holds a poll for the retry.
        let taken = try #require(try await held.decode(PollResponse.self).lease)
        async let retry = fixture.poll(worker.secret, platforms: ["linux/amd64"], timeout: .seconds(120))
        try await Task.sleep(for: .milliseconds(500))
        let beforeRetry = try await rechecks()
        try await fail(taken, as: waiter)
        #expect(try await retry.decode(PollResponse.self).lease?.attempt == 2)
        #expect(try await rechecks() > beforeRetry)
        await fixture.stop()
    }

    @Test func eventsStreamAsServerSentEventsAndResume() async throws {
        let fixture = try await CoordinatorFixture.start()
        let submitter = try await fixture.token(.submitter)
        let build = try await fixture.submit(submitter, image: "127.0.0.1:1/sse/app", platforms: ["linux/amd64", "linux/arm64"])
        _ = try await fixture.call("POST", "/api/v1/builds/\(build.id)/cancel", token: submitter)
        let all = try await fixture.call("GET", "/api/v1/builds/\(build.id)/events", token: submitter)
        let text = String(decoding: all.body, as: UTF8.self)
        #expect(all.headers["Content-Type"] == "text/event-stream")
        #expect(text.contains("event: build.submitted"))
        #expect(text.contains("event: build.cancelled"))
        let firstID = try #require(text.split(separator: "\n").first { $0.hasPrefix("id: ") }.map { String($0.dropFirst(4)) })
        let resumed = try await fixture.call(
            "GET", "/api/v1/builds/\(build.id)/events", token: submitter, headers: ["Last-Event-ID": firstID])
        let resumedText = String(decoding: resumed.body, as: UTF8.self)
        #expect(!resumedText.contains("event: build.submitted"))
        #expect(resumedText.contains("event: build.cancelled"))
        await fixture.stop()
    }

    @Test func logsAreAppendedByOffsetAndGapsAnswered() async throws {
        let fixture = try await CoordinatorFixture.start()
        let submitter = try await fixture.token(.submitter)
        let agent = try await fixture.joinAgent("logger", platforms: ["linux/amd64"])
        let build = try await fixture.submit(submitter, image: "127.0.0.1:1/logs/app", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent.secret, platforms: ["linux/amd64"]).decode(PollResponse.self).lease)
        let path = "/api/v1/agent/jobs/\(lease.jobId)/logs?epoch=\(lease.epoch)"
        #expect(
            try await fixture.call("PUT", path + "&offset=0", token: agent.secret, body: Data("hello\n".utf8)).decode(
                LogAppendResponse.self
            ).size == 6)
        #expect(
            try await fixture.call("PUT", path + "&offset=0", token: agent.secret, body: Data("hello\n".utf8)).decode(
                LogAppendResponse.self
            ).size == 6)
        let gap = try await fixture.call("PUT", path + "&offset=100", token: agent.secret, body: Data("later".utf8))
        #expect(gap.status == 416)
        #expect(try gap.decode(LogAppendResponse.self).size == 6)
        let log = try await fixture.call("GET", "/api/v1/builds/\(build.id)/logs?platform=linux/amd64", token: submitter)
        #expect(String(decoding: log.body, as: UTF8.self) == "hello\n")
        let ranged = try await fixture.call(
            "GET", "/api/v1/builds/\(build.id)/logs?platform=linux/amd64&offset=2", token: submitter)
        #expect(String(decoding: ranged.body, as: UTF8.self) == "llo\n")
        // Following streams what arrives until the attempt ends.
        async let followed = fixture.call(
            "GET", "/api/v1/builds/\(build.id)/logs?platform=linux/amd64&follow=true", token: submitter, timeout: .seconds(60))
        try await Task.sleep(for: .milliseconds(300))
        _ = try await fixture.call("PUT", path + "&offset=6", token: agent.secret, body: Data("world\n".utf8))
        _ = try await fixture.call(
            "POST", "/api/v1/agent/complete", token: agent.secret,
            json: CompleteRequest(jobId: lease.jobId, epoch: lease.epoch, outcome: .failed, exitCode: 1, reason: "test"))
        #expect(String(decoding: try await followed.body, as: UTF8.self) == "hello\nworld\n")
        // Oversized bodies are refused.
        let huge = Data(repeating: 0x41, count: (1 << 20) + 10)
        let refused = try await fixture.call(
            "POST", "/api/v1/builds", token: submitter, body: huge, headers: ["Content-Type": "application/json"])
        #expect(refused.status == 413)
        await fixture.stop()
    }
}
