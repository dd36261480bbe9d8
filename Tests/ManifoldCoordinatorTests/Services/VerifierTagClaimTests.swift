import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldRegistry
import ManifoldStore
import Testing

@testable import ManifoldCoordinator

extension VerifierClaimTests.Setup {
    /// Another build of the same image and tag, submitted after the setup's: its image pushed to the registry and
    /// reported, awaiting its check.
    func anotherReport(_ name: String) async throws -> PendingVerification {
        let platform = Platform(os: "linux", architecture: "amd64")
        let context = Digest.compute(of: Data("context \(name)".utf8))
        try await replica.recordContext(digest: context, size: 7)
        let agent = try await replica.joinAgent(
            JoinRequest(name: name, platforms: [platform], labels: [:], builders: ["command"], version: "test"),
            secretHash: "hash-\(name)")
        let build = try await replica.submitBuild(
            BuildSpec(
                image: "\(proxy.host)/team/app", tags: ["1.0"], platforms: [PlatformSpec(platform: platform)],
                context: .upload(digest: context)),
            submittedBy: "test")
        let lease = try #require(
            try await replica.lease(
                agentId: agent.id, poll: PollRequest(platforms: [platform], labels: [:], builders: ["command"], version: "test")))
        let digest = try await PublishingRecoveryTests.push(
            platform, to: try ImageReference(parsing: "\(registry.host)/team/app:\(lease.spec.tag)"), text: name)
        try await replica.complete(
            agentId: agent.id,
            CompleteRequest(
                jobId: lease.jobId, epoch: lease.epoch, outcome: .succeeded,
                imageReference: "\(proxy.host)/team/app:\(lease.spec.tag)", digest: digest))
        return try #require(try await replica.pendingVerifications().ready.first { $0.buildId == build.id })
    }
}

extension VerifierClaimTests {
    @Test func aChildTagAnotherReplicaIsPushingHoldsTheCheckBackAndItsOwnClaimEndsWithItsPut() async throws {
        let setup = try await Setup()
        defer { setup.stop() }
        let newer = try await setup.anotherReport("newer")
        #expect(newer.childTag == setup.pending.childTag)
        // Replica b is in the middle of its PUT of the older build's child tag.
        let older = setup.pending
        let olderClaim = try #require(try await setup.other.claimVerification(jobId: older.jobId, epoch: older.epoch))
        #expect(
            try await setup.other.claimChildTag(
                jobId: older.jobId, epoch: older.epoch, childTag: older.childTag, digest: older.digest, claim: olderClaim))

        // This replica's check of the newer image waits for it: no PUT, no verdict, not counted as a registry failure.
        let verifier = setup.verifier()
        await verifier.verify(newer)
        #expect(setup.childTagPUTs.isEmpty, "\(setup.proxy.requestLog())")
        #expect(try await setup.replica.build(id: newer.buildId).jobs[0].state == .verifying)
        let events = try await setup.replica.events(buildId: newer.buildId).map(\.type)
        #expect(!events.contains("job.verification_postponed") && !events.contains("job.failed"), "\(events)")

        // Replica b's PUT ended: the check goes ahead, and the newer image is the one the tag holds, last.
        try await setup.other.releaseChildTag(epoch: older.epoch)
        await verifier.verify(newer)
        #expect(try await setup.replica.build(id: newer.buildId).jobs[0].state == .succeeded)
        #expect(setup.childTagPUTs.count == 1, "\(setup.proxy.requestLog())")
        #expect(try await setup.replica.tagOwners(image: newer.image)[newer.childTag]?.buildId == newer.buildId)

        // This replica's claim ended with its PUT: a still newer build's push on replica b does not wait for it.
        let newest = try await setup.anotherReport("newest")
        let newestClaim = try #require(try await setup.other.claimVerification(jobId: newest.jobId, epoch: newest.epoch))
        #expect(
            try await setup.other.claimChildTag(
                jobId: newest.jobId, epoch: newest.epoch, childTag: newest.childTag, digest: newest.digest, claim: newestClaim))
    }
}
