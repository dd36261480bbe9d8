import Foundation
import ManifoldAPI
import ManifoldCore
import Testing

@testable import ManifoldStore

/// Replicas sharing the verifier's reports and the periodic tasks through claims (two stores on one database, each
/// with its own replica id): one replica acts, a dead one's claims run out, and a replica whose claim was taken over
/// is fenced. Run on both engines; on PostgreSQL the two stores' transactions really overlap.
@Suite struct ReplicaClaimTests {
    /// A build whose single job reported its image and waits for the registry check.
    static func reportAwaitingCheck(_ fixture: StoreFixture, name: String = "a") async throws -> PendingVerification {
        let build = try await fixture.submit(platforms: ["linux/amd64"])
        let agent = try await fixture.join(name, platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent))
        _ = try await fixture.succeed(lease, agent: agent)
        return try #require(try await fixture.store.pendingVerifications().ready.first { $0.buildId == build.id })
    }

    @Test func twoReplicasClaimingTheSameReportNeverBothGetIt() async throws {
        let fixture = try await StoreFixture()
        let first = try await fixture.another(replica: "replica-a")
        let second = try await fixture.another(replica: "replica-b")
        for round in 0..<5 {
            let report = try await Self.reportAwaitingCheck(fixture, name: "agent\(round)")
            async let a = first.claimVerification(jobId: report.jobId, epoch: report.epoch)
            async let b = second.claimVerification(jobId: report.jobId, epoch: report.epoch)
            let claims = try await [a, b]
            #expect(claims.compactMap { $0 }.count == 1, "round \(round): \(claims)")
            let holder = claims[0] != nil ? first : second
            let other = holder === first ? second : first
            let claim = try #require(claims.compactMap { $0 }.first)
            #expect(claim.until == fixture.clock.now.addingTimeInterval(fixture.store.settings.verificationClaimTTL))

            // The other replica does not even see the report while the claim runs, and knows when it runs out.
            let seen = try await other.pendingVerifications()
            #expect(!seen.ready.contains { $0.epoch == report.epoch })
            #expect(seen.nextClaimExpiry == claim.until)
            #expect(try await other.claimVerification(jobId: report.jobId, epoch: report.epoch) == nil)
            #expect(try await holder.pendingVerifications().ready.contains { $0.epoch == report.epoch })
            // Nor may it write the child tag or an outcome without a claim of its own.
            #expect(
                try await !other.claimChildTag(
                    jobId: report.jobId, epoch: report.epoch, childTag: report.childTag, digest: report.digest))
            #expect(try await !other.recordVerification(jobId: report.jobId, epoch: report.epoch, outcome: .verified))
            #expect(
                try await holder.recordVerification(jobId: report.jobId, epoch: report.epoch, outcome: .verified, claim: claim))
            #expect(try await fixture.store.build(id: report.buildId).jobs[0].state == .succeeded)
        }
    }

    @Test func aDeadReplicasClaimRunsOutAndTheReplicaThatLostItIsFenced() async throws {
        let fixture = try await StoreFixture()
        let dead = try await fixture.another(replica: "replica-a")
        let live = try await fixture.another(replica: "replica-b")
        let report = try await Self.reportAwaitingCheck(fixture)
        let stale = try #require(try await dead.claimVerification(jobId: report.jobId, epoch: report.epoch))
        #expect(try await live.claimVerification(jobId: report.jobId, epoch: report.epoch) == nil)

        // Replica a stops renewing (it died, or stalled); once its claim ran out, replica b checks the report.
        fixture.clock.advance(fixture.store.settings.verificationClaimTTL + 1)
        #expect(try await live.pendingVerifications().ready.contains { $0.epoch == report.epoch })
        let current = try #require(try await live.claimVerification(jobId: report.jobId, epoch: report.epoch))
        #expect(current.token > stale.token)

        // Replica a comes back: it cannot renew, tag or record with the claim it lost.
        #expect(try await dead.renewVerificationClaim(stale) == nil)
        #expect(
            try await !dead.claimChildTag(
                jobId: report.jobId, epoch: report.epoch, childTag: report.childTag, digest: report.digest, claim: stale))
        #expect(
            try await !dead.recordVerification(
                jobId: report.jobId, epoch: report.epoch, outcome: .rejected(reason: "late verdict"), claim: stale))
        #expect(try await !dead.recordVerification(jobId: report.jobId, epoch: report.epoch, outcome: .verified))
        // Releasing the lost claim leaves the current holder's alone.
        try await dead.releaseVerificationClaim(stale)
        #expect(try await dead.claimVerification(jobId: report.jobId, epoch: report.epoch) == nil)
        #expect(try await fixture.store.build(id: report.buildId).jobs[0].state == .verifying)

        // The current holder's outcome is the one that counts.
        #expect(
            try await live.claimChildTag(
                jobId: report.jobId, epoch: report.epoch, childTag: report.childTag, digest: report.digest, claim: current))
        #expect(try await live.recordVerification(jobId: report.jobId, epoch: report.epoch, outcome: .verified, claim: current))
        let view = try await fixture.store.build(id: report.buildId)
        #expect(view.jobs[0].state == .succeeded, "\(view)")
        let events = try await fixture.store.events(buildId: report.buildId).map(\.type)
        #expect(!events.contains("job.failed") && !events.contains("job.retrying"), "\(events)")
        // Nothing comes back to verify.
        #expect(try await dead.pendingVerifications().ready.isEmpty)
        #expect(try await dead.claimVerification(jobId: report.jobId, epoch: report.epoch) == nil)
    }

    @Test func aRenewedClaimKeepsOtherReplicasOutAndAReleasedOneLetsThemIn() async throws {
        let fixture = try await StoreFixture()
        let first = try await fixture.another(replica: "replica-a")
        let second = try await fixture.another(replica: "replica-b")
        let report = try await Self.reportAwaitingCheck(fixture)
        let ttl = fixture.store.settings.verificationClaimTTL
        var claim = try #require(try await first.claimVerification(jobId: report.jobId, epoch: report.epoch))
        // A long check (a copy) renews well before the claim runs out, again and again.
        for _ in 0..<3 {
            fixture.clock.advance(ttl * 2 / 3)
            claim = try #require(try await first.renewVerificationClaim(claim))
            #expect(claim.until == fixture.clock.now.addingTimeInterval(ttl))
            #expect(try await second.claimVerification(jobId: report.jobId, epoch: report.epoch) == nil)
            #expect(try await !second.pendingVerifications().ready.contains { $0.epoch == report.epoch })
        }
        // Stopping (a graceful shutdown) gives the report up at once.
        try await first.releaseVerificationClaim(claim)
        #expect(try await second.pendingVerifications().ready.contains { $0.epoch == report.epoch })
        let taken = try #require(try await second.claimVerification(jobId: report.jobId, epoch: report.epoch))
        #expect(try await first.renewVerificationClaim(claim) == nil)
        #expect(try await second.recordVerification(jobId: report.jobId, epoch: report.epoch, outcome: .verified, claim: taken))
        // A decided report cannot be claimed or renewed any more.
        #expect(try await second.renewVerificationClaim(taken) == nil)
        #expect(try await second.claimVerification(jobId: report.jobId, epoch: report.epoch) == nil)
    }

    @Test func aPeriodicTaskTakenByOneReplicaIsRefusedToAnotherWithinItsInterval() async throws {
        let fixture = try await StoreFixture()
        let first = try await fixture.another(replica: "replica-a")
        let second = try await fixture.another(replica: "replica-b")
        #expect(try await first.lastRun(of: .retention) == nil)
        #expect(try await first.claimPeriodicTask(.retention, interval: 600))
        #expect(try await first.lastRun(of: .retention)?.replica == "replica-a")
        #expect(try await first.lastRun(of: .retention)?.at == fixture.clock.now)
        #expect(try await !second.claimPeriodicTask(.retention, interval: 600))
        // Not even the replica that ran it runs it again within the interval.
        #expect(try await !first.claimPeriodicTask(.retention, interval: 600))
        fixture.clock.advance(599)
        #expect(try await !second.claimPeriodicTask(.retention, interval: 600))
        fixture.clock.advance(2)
        #expect(try await second.claimPeriodicTask(.retention, interval: 600))
        #expect(try await first.lastRun(of: .retention)?.replica == "replica-b")
        #expect(try await !first.claimPeriodicTask(.retention, interval: 600))

        // Replicas asking at the same moment: one of them runs the pass.
        for round in 0..<5 {
            fixture.clock.advance(601)
            async let a = first.claimPeriodicTask(.retention, interval: 600)
            async let b = second.claimPeriodicTask(.retention, interval: 600)
            let taken = try await [a, b]
            #expect(taken.filter { $0 }.count == 1, "round \(round): \(taken)")
        }
    }
}
