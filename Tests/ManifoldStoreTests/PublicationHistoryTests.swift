import Foundation
import ManifoldAPI
import ManifoldCore
import Testing

@testable import ManifoldStore

/// The outbox's history rules: a list is pushed once per publishing run, and a run is queued whenever the tags do
/// not already point at exactly the verified set.
@Suite struct PublicationHistoryTests {
    /// Publishes the one pending run with a made-up list digest.
    func publish(_ fixture: StoreFixture, _ name: String) async throws -> (Publication, Digest) {
        let due = try await fixture.store.duePublications().ready
        try #require(due.count == 1)
        let digest = Digest.compute(of: Data(name.utf8))
        try await fixture.publish(id: due[0].id, listDigest: digest, mediaType: MediaType.ociImageIndex)
        return (due[0], digest)
    }

    func rebuild(_ fixture: StoreFixture, _ build: BuildView, agent: AgentView, digest: Digest) async throws {
        _ = try await fixture.store.retryJob(buildId: build.id, platform: "linux/amd64")
        let lease = try #require(try await fixture.poll(agent))
        _ = try await fixture.succeed(lease, agent: agent, digest: digest)
        try await fixture.verifyAll()
    }

    @Test func aDigestSetPublishedEarlierIsPublishedAgainAfterANewerList() async throws {
        let fixture = try await StoreFixture()
        let build = try await fixture.submit(platforms: ["linux/amd64"])
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        let first = try #require(try await fixture.poll(agent))
        let digestA = Digest.compute(of: Data("image A".utf8))
        _ = try await fixture.succeed(first, agent: agent, digest: digestA)
        try await fixture.verifyAll()
        let (_, listA) = try await publish(fixture, "list A")

        let digestB = Digest.compute(of: Data("image B".utf8))
        try await rebuild(fixture, build, agent: agent, digest: digestB)
        let (_, listB) = try await publish(fixture, "list B")
        #expect(try await fixture.store.build(id: build.id).listDigest == listB)

        // A reproducible rebuild brings back set A: the tags point at list B, so A must be pushed again.
        try await rebuild(fixture, build, agent: agent, digest: digestA)
        let due = try await fixture.store.duePublications().ready
        #expect(due.count == 1)
        #expect(due.first?.children.map(\.digest) == [digestA])
        #expect(try await fixture.store.build(id: build.id).state == .publishing)
        let (_, listAAgain) = try await publish(fixture, "list A")
        #expect(listAAgain == listA)
        #expect(try await fixture.store.build(id: build.id).state == .published)
    }

    @Test func theSameDigestRightAfterItsListIsPublishedPushesNothing() async throws {
        let fixture = try await StoreFixture()
        let build = try await fixture.submit(platforms: ["linux/amd64"])
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent))
        let digest = Digest.compute(of: Data("image".utf8))
        _ = try await fixture.succeed(lease, agent: agent, digest: digest)
        try await fixture.verifyAll()
        let (_, list) = try await publish(fixture, "list")
        try await rebuild(fixture, build, agent: agent, digest: digest)
        #expect(try await fixture.store.duePublications().ready.isEmpty)
        let view = try await fixture.store.build(id: build.id)
        #expect(view.state == .published)
        #expect(view.listDigest == list)
        let published = try await fixture.store.events(buildId: build.id).filter { $0.type == "list.published" }
        #expect(published.count == 2)
        #expect(published.last?.data["unchanged"] == "true")
        #expect(published.last?.data["mediaType"] == MediaType.ociImageIndex)
    }

    @Test func aFailedPublicationIsRetriedWhenTheSameSetIsVerifiedAgain() async throws {
        let fixture = try await StoreFixture()
        let build = try await fixture.submit(platforms: ["linux/amd64"])
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent))
        let digest = Digest.compute(of: Data("image".utf8))
        _ = try await fixture.succeed(lease, agent: agent, digest: digest)
        try await fixture.verifyAll()
        let due = try await fixture.store.duePublications().ready
        try await fixture.store.publicationFailed(
            id: due[0].id, error: "denied: requested access to the resource is denied", retryable: false)
        var view = try await fixture.store.build(id: build.id)
        #expect(view.state == .failed)
        #expect(view.reason?.contains("denied") == true)

        // After fixing the registry's permissions the user retries: the same digest queues a new run.
        try await rebuild(fixture, build, agent: agent, digest: digest)
        #expect(try await fixture.store.build(id: build.id).state == .publishing)
        _ = try await publish(fixture, "list")
        view = try await fixture.store.build(id: build.id)
        #expect(view.state == .published)
    }

    @Test func registryOutagesAreRetriedWithCappedBackoffWithoutFailingTheBuild() async throws {
        let fixture = try await StoreFixture(
            settings: StoreSettings(leaseTTL: 60, defaultMaxAttempts: 3, retryBackoff: 5, maxRetryBackoff: 300))
        let build = try await fixture.submit(platforms: ["linux/amd64"])
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent))
        _ = try await fixture.succeed(lease, agent: agent)
        try await fixture.verifyAll()
        let id = try await fixture.store.duePublications().ready[0].id
        for _ in 0..<12 {
            let due = try await fixture.store.duePublications().ready
            #expect(due.map(\.id) == [id])
            try await fixture.store.publicationFailed(id: id, error: "HTTP 503 from the registry", retryable: true)
            #expect(try await fixture.store.duePublications().ready.isEmpty)
            let next = try #require(try await fixture.store.nextPublicationTime())
            #expect(next.timeIntervalSince(fixture.clock.now) <= 300)
            fixture.clock.advance(301)
        }
        #expect(try await fixture.store.build(id: build.id).state == .publishing)
        _ = try await publish(fixture, "list")
        #expect(try await fixture.store.build(id: build.id).state == .published)
        #expect(try await fixture.store.events(buildId: build.id).filter { $0.type == "list.retrying" }.count == 12)
    }

    @Test func aRunPublishesTheSetItWasQueuedFor() async throws {
        let fixture = try await StoreFixture()
        _ = try await fixture.submit(platforms: ["linux/amd64", "linux/arm64"], allowPartial: true)
        let amd = try await fixture.join("amd", platforms: ["linux/amd64"])
        let arm = try await fixture.join("arm", platforms: ["linux/arm64"])
        let amdLease = try #require(try await fixture.poll(amd))
        let armLease = try #require(try await fixture.poll(arm))
        let amdDigest = try await fixture.succeed(amdLease, agent: amd)
        try await fixture.verifyAll()
        _ = try await fixture.succeed(armLease, agent: arm)
        try await fixture.verifyAll()
        let due = try await fixture.store.duePublications().ready
        #expect(due.count == 1)
        #expect(due[0].children.count == 2)
        #expect(due[0].children[0].digest == amdDigest)
        #expect(due[0].children[0].imageReference == "registry.local:5000/team/app:\(amdLease.spec.tag)")
    }
}

/// Agents' access, timeouts, logs and platform names.
@Suite struct AgentGuardTests {
    @Test func disablingAnAgentTakesItsJobBackWithoutUsingAnAttempt() async throws {
        let fixture = try await StoreFixture()
        let build = try await fixture.submit(platforms: ["linux/amd64"], maxAttempts: 1)
        let first = try await fixture.join("first", platforms: ["linux/amd64"])
        let second = try await fixture.join("second", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(first))
        try await fixture.store.setAgentState("first", to: .disabled)
        // Every later call about the job by the disabled agent is refused as stale, saying why the attempt ended.
        await #expect {
            _ = try await fixture.store.heartbeat(agentId: first.id, HeartbeatRequest(jobId: lease.jobId, epoch: lease.epoch))
        } throws: { error in
            guard case StoreError.staleAttempt(_, _, let reason) = error else { return false }
            return reason == "the attempt is lost: the agent was disabled by an admin"
        }
        #expect(try await fixture.poll(first) == nil)
        let view = try await fixture.store.build(id: build.id)
        #expect(view.jobs[0].state == .queued)
        let again = try #require(try await fixture.poll(second))
        #expect(again.jobId == lease.jobId)
        #expect(again.epoch > lease.epoch)
    }

    @Test func anAgentReadsOnlyContextsOfItsLeasedJobs() async throws {
        let fixture = try await StoreFixture()
        _ = try await fixture.submit(platforms: ["linux/amd64"])
        let holder = try await fixture.join("holder", platforms: ["linux/amd64"])
        let other = try await fixture.join("other", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(holder))
        guard case .upload(let digest) = lease.spec.context else {
            Issue.record("expected an uploaded context")
            return
        }
        #expect(try await fixture.store.agentMayReadContext(agentId: holder.id, digest: digest))
        #expect(try await !fixture.store.agentMayReadContext(agentId: other.id, digest: digest))
        _ = try await fixture.succeed(lease, agent: holder)
        #expect(try await !fixture.store.agentMayReadContext(agentId: holder.id, digest: digest))
    }

    @Test func anAttemptPastItsTimeoutFailsTheJob() async throws {
        let fixture = try await StoreFixture()
        let digest = Digest.compute(of: Data("ctx".utf8))
        try await fixture.store.recordContext(digest: digest, size: 3)
        let spec = BuildSpec(
            image: "registry.local:5000/team/app", tags: ["1"],
            platforms: [PlatformSpec(platform: .init(os: "linux", architecture: "amd64"))],
            context: .upload(digest: digest), timeoutSeconds: 600)
        let build = try await fixture.store.submitBuild(spec, submittedBy: "t")
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent))
        fixture.clock.advance(600)
        _ = try await fixture.store.heartbeat(agentId: agent.id, HeartbeatRequest(jobId: lease.jobId, epoch: lease.epoch))
        #expect(try await fixture.store.enforceTimeouts() == 0)  // the agent gets one lease TTL to stop and report
        fixture.clock.advance(61)
        #expect(try await fixture.store.enforceTimeouts() == 1)
        let view = try await fixture.store.build(id: build.id)
        #expect(view.state == .failed)
        #expect(view.jobs[0].reason == "the build ran longer than its timeout of 600 s")
    }

    @Test func logsAreCappedAndSecretValuesMasked() async throws {
        let fixture = try await StoreFixture(settings: StoreSettings(maxLogBytesPerAttempt: 300))
        let digest = Digest.compute(of: Data("ctx".utf8))
        try await fixture.store.recordContext(digest: digest, size: 3)
        let spec = BuildSpec(
            image: "registry.local:5000/team/app", tags: ["1"],
            platforms: [PlatformSpec(platform: .init(os: "linux", architecture: "amd64"))],
            context: .upload(digest: digest), buildArgs: ["TOKEN": "hunter22", "MODE": "fast"], secretBuildArgs: ["TOKEN"])
        let build = try await fixture.store.submitBuild(spec, submittedBy: "t")
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent))
        let line = Data("using hunter22 in fast mode\n".utf8)
        #expect(
            try await fixture.store.appendLog(agentId: agent.id, jobId: lease.jobId, epoch: lease.epoch, offset: 0, data: line)
                == .stored(size: 28))
        let log = try await fixture.store.readLog(buildId: build.id, platform: "linux/amd64")
        #expect(String(decoding: log.data, as: UTF8.self) == "using ******** in fast mode\n")
        let events = try await fixture.store.events(buildId: build.id)
        #expect(!events.contains { $0.data.values.contains { $0.contains("hunter22") } })
        // Past the cap: what fits is stored, then one marker line, and the log never passes the cap.
        let truncated = try await fixture.store.appendLog(
            agentId: agent.id, jobId: lease.jobId, epoch: lease.epoch, offset: 28, data: Data(repeating: 65, count: 400))
        guard case .truncated(let size) = truncated else {
            Issue.record("expected a truncated append, got \(truncated)")
            return
        }
        #expect(size <= 300)
        let capped = try await fixture.store.readLog(buildId: build.id, platform: "linux/amd64")
        let text = String(decoding: capped.data, as: UTF8.self)
        #expect(capped.size == size && capped.data.count == Int(size))
        #expect(text.hasPrefix("using ******** in fast mode\nAAAA"))
        #expect(text.hasSuffix("limit of 300 bytes (max_log_bytes_per_attempt); later output was not stored\n"), "\(text)")
        await #expect {
            _ = try await fixture.store.appendLog(
                agentId: agent.id, jobId: lease.jobId, epoch: lease.epoch, offset: 428, data: Data(repeating: 66, count: 10))
        } throws: { error in
            guard case StoreError.limitExceeded(let message) = error else { return false }
            return message.contains("300 bytes")
        }
        // The marker line reached the event stream too.
        let later = try await fixture.store.events(buildId: build.id)
        #expect(later.last { $0.type == "job.log" }?.data["line"]?.contains("later output was not stored") == true)
    }

    @Test func usersNameAWindowsJobWithOrWithoutItsOSBuild() async throws {
        let fixture = try await StoreFixture()
        let build = try await fixture.submit(platforms: ["linux/amd64", "windows/amd64:10.0.20348"])
        _ = try await fixture.store.readLog(buildId: build.id, platform: "windows/amd64")
        _ = try await fixture.store.readLog(buildId: build.id, platform: "windows/amd64:10.0.20348.2227")
        await #expect {
            _ = try await fixture.store.readLog(buildId: build.id, platform: "linux/arm64")
        } throws: { error in
            guard case StoreError.invalid(let field, let message) = error else { return false }
            return field == "platform" && message.contains("linux/arm64") && message.contains("windows/amd64:10.0.20348")
        }
        await #expect {
            _ = try await fixture.store.readLog(buildId: "bld_missing", platform: "linux/amd64")
        } throws: { error in
            error as? StoreError == .notFound(kind: "build", id: "bld_missing")
        }
    }
}
