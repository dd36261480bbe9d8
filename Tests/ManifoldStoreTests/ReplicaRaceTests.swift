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
