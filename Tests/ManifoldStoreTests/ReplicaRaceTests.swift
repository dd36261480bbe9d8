import Foundation
import ManifoldAPI
import ManifoldCore
import Testing

@testable import ManifoldStore

/// Two replicas (two stores on one database, each with its own replica id) racing for the same work: only one may
/// act. Run on both engines; on PostgreSQL the two stores' transactions really overlap.
@Suite struct ReplicaRaceTests {
    @Test func twoReplicasClaimingTheSameOutboxRowNeverBothPush() async throws {
        let fixture = try await StoreFixture()
        let first = try await fixture.another(replica: "replica-a")
        let second = try await fixture.another(replica: "replica-b")
        let (_, publication) = try await PublicationFencingTests.readyToPublish(fixture)
        let list = PublicationFencingTests.list
        for _ in 0..<5 {
            async let a = first.claimPublication(id: publication.id, listDigest: list, tags: publication.tags)
            async let b = second.claimPublication(id: publication.id, listDigest: list, tags: publication.tags)
            let claims = try await [a, b]
            let pushes = claims.filter { if case .push = $0 { return true } else { return false } }
            let elsewhere = claims.filter { if case .claimedElsewhere = $0 { return true } else { return false } }
            #expect(pushes.count <= 1, "both replicas were allowed to move the tags: \(claims)")
            // Whoever holds the claim may claim again (a retry of its own), the other one may not.
            #expect(pushes.count + elsewhere.count == 2, "\(claims)")
        }
        // The loser does not even see the row as due while the claim runs.
        let holder = try await first.duePublications().ready.contains { $0.id == publication.id } ? first : second
        let other = holder === first ? second : first
        #expect(try await other.duePublications().ready.contains { $0.id == publication.id } == false)
        #expect(try await other.nextPublicationTime() ?? .distantPast > fixture.clock.now)

        // The holder dies; once its claim ran out, the other replica takes the row over and finishes it.
        fixture.clock.advance(fixture.store.settings.publicationClaimTTL + 1)
        #expect(try await other.duePublications().ready.contains { $0.id == publication.id })
        guard
            case .push(let tags) = try await other.claimPublication(id: publication.id, listDigest: list, tags: publication.tags)
        else {
            Issue.record("the row of a dead replica was never taken over")
            return
        }
        guard case .claimedElsewhere = try await holder.claimPublication(id: publication.id, listDigest: list, tags: tags)
        else {
            Issue.record("the replica whose claim expired could still move the tags")
            return
        }
        try await other.publicationSucceeded(id: publication.id, listDigest: list, mediaType: MediaType.ociImageIndex, tags: tags)
        #expect(try await fixture.store.build(id: publication.buildId).state == .published)
    }

    @Test func twoReplicasLeasingForTheSameJobGiveItOnce() async throws {
        let fixture = try await StoreFixture()
        let first = try await fixture.another(replica: "replica-a")
        let second = try await fixture.another(replica: "replica-b")
        for round in 0..<5 {
            let build = try await fixture.submit(platforms: ["linux/amd64"])
            let a = try await fixture.join("a\(round)", platforms: ["linux/amd64"])
            let b = try await fixture.join("b\(round)", platforms: ["linux/amd64"])
            let pollA = PollRequest(platforms: a.platforms, labels: a.labels, builders: ["buildah"], version: "test")
            let pollB = PollRequest(platforms: b.platforms, labels: b.labels, builders: ["buildah"], version: "test")
            async let leaseA = first.lease(agentId: a.id, poll: pollA)
            async let leaseB = second.lease(agentId: b.id, poll: pollB)
            let leases = try await [leaseA, leaseB].compactMap { $0 }
            #expect(leases.count == 1, "one queued job was leased \(leases.count) times: \(leases)")
            // Leave nothing queued for the next round.
            _ = try await fixture.store.cancelBuild(id: build.id, by: "test")
        }
    }

    /// An agent whose poll reaches two replicas at once (a retry through a load balancer) is granted one job: the
    /// second poll hands out the first one's grant again, same epoch, instead of a second job. On PostgreSQL a lease
    /// runs beside other agents' leases, one at a time per agent.
    @Test func anAgentPollingTwoReplicasAtOnceIsGrantedOneJob() async throws {
        let fixture = try await StoreFixture()
        let first = try await fixture.another(replica: "replica-a")
        let second = try await fixture.another(replica: "replica-b")
        for _ in 0..<3 { _ = try await fixture.submit(platforms: ["linux/amd64"]) }
        for round in 0..<6 {
            let agent = try await fixture.join("agent\(round)", platforms: ["linux/amd64"])
            let poll = PollRequest(platforms: agent.platforms, labels: agent.labels, builders: ["buildah"], version: "test")
            async let a = first.lease(agentId: agent.id, poll: poll)
            async let b = second.lease(agentId: agent.id, poll: poll)
            let leases = try await [a, b]
            let epochs = Set(leases.compactMap { $0?.epoch })
            #expect(epochs.count == (round < 3 ? 1 : 0), "round \(round): one agent was granted \(leases)")
            #expect(leases.allSatisfy { (round < 3) == ($0 != nil) }, "round \(round): \(leases)")
        }
    }

    /// Agents of two platforms polling two replicas at once, each reporting what it got and polling again, take every
    /// queued job exactly once, and each agent takes its platform's jobs in the order their builds were submitted.
    @Test func manyAgentsLeasingAtOnceTakeEveryJobOnceInOrder() async throws {
        let fixture = try await StoreFixture()
        let replicas = [try await fixture.another(replica: "replica-a"), try await fixture.another(replica: "replica-b")]
        var builds: [String] = []
        for _ in 0..<12 { builds.append(try await fixture.submit(platforms: ["linux/amd64", "linux/arm64"]).id) }
        var agents: [AgentView] = []
        for index in 0..<8 {
            agents.append(try await fixture.join("agent\(index)", platforms: [index % 2 == 0 ? "linux/amd64" : "linux/arm64"]))
        }
        let taken = try await withThrowingTaskGroup(of: [Lease].self) { group in
            for (index, agent) in agents.enumerated() {
                let replica = replicas[index % 2]
                group.addTask {
                    let poll = PollRequest(
                        platforms: agent.platforms, labels: agent.labels, builders: ["buildah"], version: "test")
                    var leases: [Lease] = []
                    while let lease = try await replica.lease(agentId: agent.id, poll: poll) {
                        leases.append(lease)
                        try await replica.complete(
                            agentId: agent.id,
                            CompleteRequest(
                                jobId: lease.jobId, epoch: lease.epoch, outcome: .succeeded,
                                imageReference: "\(lease.spec.image):\(lease.spec.tag)",
                                digest: Digest.compute(of: Data("image \(lease.jobId)".utf8))))
                    }
                    return leases
                }
            }
            var all: [[Lease]] = []
            for try await leases in group { all.append(leases) }
            return all
        }
        let jobs = taken.flatMap { $0.map(\.jobId) }
        #expect(jobs.count == 24, "\(jobs.count) leases for 24 jobs")
        #expect(Set(jobs).count == jobs.count, "a job was leased twice")
        for leases in taken {
            let order = leases.map { builds.firstIndex(of: $0.spec.buildId) ?? -1 }
            #expect(order == order.sorted(), "an agent took builds out of submission order: \(order)")
        }
    }

    /// A token's cap on unfinished builds holds when its submissions reach two replicas at the same moment; another
    /// token's submissions meanwhile are not held back by it. On PostgreSQL submissions run beside each other, one at a
    /// time per capped token.
    @Test func submissionsOfOneTokenOnTwoReplicasAtOnceStayUnderItsCap() async throws {
        let fixture = try await StoreFixture()
        let replicas = [try await fixture.another(replica: "replica-a"), try await fixture.another(replica: "replica-b")]
        let digest = Digest.compute(of: Data("context of capped builds".utf8))
        try await fixture.store.recordContext(digest: digest, size: 10)
        let spec = BuildSpec(
            image: "registry.local:5000/team/app", tags: ["1.0"],
            platforms: [PlatformSpec(platform: try Platform(parsing: "linux/amd64"))], context: .upload(digest: digest))
        for round in 0..<4 {
            let (capped, free) = ("tok_capped\(round)", "tok_free\(round)")
            let accepted = try await withThrowingTaskGroup(of: (String, Bool).self) { group in
                for index in 0..<12 {
                    let token = index % 3 == 2 ? free : capped
                    group.addTask {
                        do {
                            _ = try await replicas[index % 2].submitBuild(
                                spec, submittedBy: "ci", token: token, maxUnfinished: token == capped ? 3 : 100)
                            return (token, true)
                        } catch StoreError.quotaExceeded(_) {
                            return (token, false)
                        }
                    }
                }
                var accepted: [String: Int] = [:]
                for try await (token, ok) in group where ok { accepted[token, default: 0] += 1 }
                return accepted
            }
            #expect(accepted[capped] == 3, "round \(round): \(accepted[capped] ?? 0) builds of a token capped at 3")
            #expect(accepted[free] == 4, "round \(round): \(accepted[free] ?? 0) of the other token's 4 builds")
        }
    }

    /// The verifications of a build's two platforms, recorded by two replicas at the same time (and beside other
    /// builds' verifications), queue its list exactly once: whichever commits second sees the first one's platform
    /// verified. On PostgreSQL these writes run beside other builds' writes, one at a time per build.
    @Test func twoReplicasVerifyingBothPlatformsOfABuildAtOnceQueueItsListOnce() async throws {
        let fixture = try await StoreFixture()
        let first = try await fixture.another(replica: "replica-a")
        let second = try await fixture.another(replica: "replica-b")
        let amd64 = try await fixture.join("amd64", platforms: ["linux/amd64"])
        let arm64 = try await fixture.join("arm64", platforms: ["linux/arm64"])
        var reports: [(build: String, verifications: [(jobId: String, epoch: Int64)])] = []
        for _ in 0..<16 {
            let build = try await fixture.submit(platforms: ["linux/amd64", "linux/arm64"])
            var verifications: [(jobId: String, epoch: Int64)] = []
            for agent in [amd64, arm64] {
                let lease = try #require(try await fixture.poll(agent))
                _ = try await fixture.succeed(lease, agent: agent)
                verifications.append((lease.jobId, lease.epoch))
            }
            reports.append((build.id, verifications))
        }
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for report in reports {
                for (replica, verification) in zip([first, second], report.verifications) {
                    group.addTask {
                        try await replica.recordVerification(
                            jobId: verification.jobId, epoch: verification.epoch, outcome: .verified)
                    }
                }
            }
            for try await recorded in group { #expect(recorded, "a verification was not recorded") }
        }
        let due = try await fixture.store.duePublications().ready
        for report in reports {
            let view = try await fixture.store.build(id: report.build)
            #expect(view.state == .publishing, "build \(report.build) is \(view.state) with both platforms verified")
            #expect(due.filter { $0.buildId == report.build }.count == 1, "outbox rows of \(report.build): \(due)")
            let queued = try await fixture.store.events(buildId: report.build).filter { $0.type == "list.publishing" }
            #expect(queued.count == 1, "\(queued)")
        }
    }

    /// An agent that sends a log chunk again (its first request timed out) through a load balancer can reach two
    /// replicas with the same bytes at the same time: both answer that the log holds them, and it holds them once.
    /// On PostgreSQL both appends read the log's size before writing; without the build's lock (taken by these
    /// writes instead of the writers' lock) both read the old size and the second insert fails on the first's row.
    @Test func twoReplicasReceivingTheSameLogChunkAtOnceStoreItOnce() async throws {
        let fixture = try await StoreFixture()
        let first = try await fixture.another(replica: "replica-a")
        let second = try await fixture.another(replica: "replica-b")
        let build = try await fixture.submit(platforms: ["linux/amd64"])
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent))
        var expected = Data()
        for round in 0..<20 {
            let chunk = Data("step \(round)\n".utf8)
            let offset = Int64(expected.count)
            expected.append(chunk)
            async let a = first.appendLog(agentId: agent.id, jobId: lease.jobId, epoch: lease.epoch, offset: offset, data: chunk)
            async let b = second.appendLog(agentId: agent.id, jobId: lease.jobId, epoch: lease.epoch, offset: offset, data: chunk)
            let answers = try await [a, b]
            #expect(answers == [.stored(size: Int64(expected.count)), .stored(size: Int64(expected.count))], "round \(round)")
        }
        let log = try await fixture.store.readLog(buildId: build.id, platform: "linux/amd64")
        #expect(String(decoding: log.data, as: UTF8.self) == String(decoding: expected, as: UTF8.self))
    }

    @Test func twoReplicasExpiringTheSameLeaseLoseItOnce() async throws {
        let fixture = try await StoreFixture(
            settings: StoreSettings(leaseTTL: 60, defaultMaxAttempts: 3, retryBackoff: 5))
        let first = try await fixture.another(replica: "replica-a")
        let second = try await fixture.another(replica: "replica-b")
        let build = try await fixture.submit(platforms: ["linux/amd64"])
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        _ = try #require(try await fixture.poll(agent))
        fixture.clock.advance(61)
        async let a = first.expireLeases()
        async let b = second.expireLeases()
        let expired = try await [a, b]
        #expect(expired.reduce(0, +) == 1, "the lease was expired \(expired) times")
        let view = try await fixture.store.build(id: build.id)
        #expect(view.jobs[0].attempts == 1, "\(view)")
        let lost = try await fixture.store.events(buildId: build.id).filter { $0.type == "job.lost" }
        #expect(lost.count == 1, "\(lost)")
    }
}
