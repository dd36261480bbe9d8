import Foundation
import ManifoldAPI
import ManifoldCore
import Testing

@testable import ManifoldStore

/// Tags never move backwards with several replicas: two replicas (two stores on one database) publishing two builds
/// of one image never have PUTs of the same tag under way at once, so the PUT that lands last is the newer build's
/// and agrees with the recorded owner. Each test plays the registry as the order in which the allowed PUTs land: the
/// replica that claimed first is the slow one, its PUTs land after the other's. Run on both engines.
@Suite struct ReplicaTagRaceTests {
    /// What the registry holds per tag, in the order the PUTs land.
    final class Registry {
        var tags: [String: Digest] = [:]
        func land(_ tags: [String], _ digest: Digest) { for tag in tags { self.tags[tag] = digest } }
    }

    static let older = Digest.compute(of: Data("older list".utf8))
    static let newer = Digest.compute(of: Data("newer list".utf8))

    /// Two builds of one image, both sharing `latest`, with their lists due (the older one submitted first).
    static func twoBuilds(
        _ fixture: StoreFixture
    ) async throws -> (older: BuildView, olderRun: Publication, newer: BuildView, newerRun: Publication) {
        let (older, olderRun) = try await PublicationFencingTests.readyToPublish(fixture, tags: ["1.0", "latest"], agent: "a")
        let (newer, newerRun) = try await PublicationFencingTests.readyToPublish(fixture, tags: ["1.1", "latest"], agent: "b")
        return (older, olderRun, newer, newerRun)
    }

    @Test func aNewerBuildsListWaitsForAnOlderOnesPushOnAnotherReplicaAndLandsLast() async throws {
        let fixture = try await StoreFixture()
        let first = try await fixture.another(replica: "replica-a")
        let second = try await fixture.another(replica: "replica-b")
        let (_, olderRun, newer, newerRun) = try await Self.twoBuilds(fixture)
        let registry = Registry()

        // Replica a starts the older build's tag PUTs; replica b reaches the newer build's while they are under way.
        let slow = try await first.claimPublication(id: olderRun.id, listDigest: Self.older, tags: olderRun.tags)
        #expect(slow == .push(tags: ["1.0", "latest"]))
        let fast = try await second.claimPublication(id: newerRun.id, listDigest: Self.newer, tags: newerRun.tags)
        if case .push(let tags) = fast {
            registry.land(tags, Self.newer)
            try await second.publicationSucceeded(
                id: newerRun.id, listDigest: Self.newer, mediaType: MediaType.ociImageIndex, tags: tags)
        }
        guard case .waitForTag(let held) = fast else {
            Issue.record("replica b was allowed to push `latest` while replica a's push of it was under way: \(fast)")
            // Replica a's PUTs land late, after b's: `latest` goes back to the older list, its owner says newer.
            if case .push(let tags) = slow { registry.land(tags, Self.older) }
            let owner = try await fixture.store.tagOwners(image: newerRun.image)["latest"]
            #expect(registry.tags["latest"]?.description == owner?.listDigest, "registry and recorded owner disagree")
            return
        }
        #expect(held.tag == "latest" && held.replica == "replica-a" && held.buildId == olderRun.buildId, "\(held)")
        let waiting = try #require(try await fixture.store.events(buildId: newer.id).last { $0.type == "tag.waiting" })
        #expect(waiting.data["heldBy"] == olderRun.buildId && waiting.data["replica"] == "replica-a", "\(waiting)")
        // The waiting run is not due (no replica retries it in a loop) until the claim would run out.
        #expect(try await !second.duePublications().ready.contains { $0.id == newerRun.id })
        #expect(try await second.nextPublicationTime() == held.until)
        #expect(try await fixture.store.build(id: newer.id).state == .publishing)

        // Replica a's PUTs land; recording them ends its claim and makes b's run due at once.
        registry.land(["1.0", "latest"], Self.older)
        try await first.publicationSucceeded(
            id: olderRun.id, listDigest: Self.older, mediaType: MediaType.ociImageIndex, tags: ["1.0", "latest"])
        #expect(try await second.duePublications().ready.contains { $0.id == newerRun.id })
        let retried = try await second.claimPublication(id: newerRun.id, listDigest: Self.newer, tags: newerRun.tags)
        #expect(retried == .push(tags: ["1.1", "latest"]))
        registry.land(["1.1", "latest"], Self.newer)
        try await second.publicationSucceeded(
            id: newerRun.id, listDigest: Self.newer, mediaType: MediaType.ociImageIndex, tags: ["1.1", "latest"])

        let owners = try await fixture.store.tagOwners(image: newerRun.image)
        #expect(registry.tags["latest"] == Self.newer)
        #expect(owners["latest"]?.buildId == newer.id && owners["latest"]?.listDigest == Self.newer.description)
        #expect(try await fixture.store.build(id: newer.id).state == .published)
    }

    /// Two builds of one image claiming their tags at the same moment on two replicas: one pushes, the other waits.
    /// On PostgreSQL these writes run beside other builds' writes; the image's lock keeps two claims of one tag apart.
    @Test func twoBuildsClaimingOneTagAtOnceOnTwoReplicasNeverBothPush() async throws {
        let fixture = try await StoreFixture()
        let first = try await fixture.another(replica: "replica-a")
        let second = try await fixture.another(replica: "replica-b")
        for round in 0..<6 {
            let (_, olderRun) = try await PublicationFencingTests.readyToPublish(
                fixture, tags: ["\(round).0", "latest"], agent: "a\(round)")
            let (_, newerRun) = try await PublicationFencingTests.readyToPublish(
                fixture, tags: ["\(round).1", "latest"], agent: "b\(round)")
            async let a = first.claimPublication(id: olderRun.id, listDigest: Self.older, tags: olderRun.tags)
            async let b = second.claimPublication(id: newerRun.id, listDigest: Self.newer, tags: newerRun.tags)
            let claims = try await [(first, olderRun, a, Self.older), (second, newerRun, b, Self.newer)]
            let pushing = claims.filter { if case .push = $0.2 { return true } else { return false } }
            #expect(pushing.count == 1, "round \(round): \(claims.map(\.2))")
            // Each run lands once it may push; the one that waited is due as soon as the other's push is recorded.
            for (replica, run, claim, digest) in pushing {
                guard case .push(let tags) = claim else { continue }
                try await replica.publicationSucceeded(
                    id: run.id, listDigest: digest, mediaType: MediaType.ociImageIndex, tags: tags)
            }
            for (replica, run, claim, digest) in claims where pushing.count == 1 && claim != pushing[0].2 {
                #expect(try await replica.duePublications().ready.contains { $0.id == run.id }, "round \(round)")
                guard case .push(let tags) = try await replica.claimPublication(id: run.id, listDigest: digest, tags: run.tags)
                else {
                    Issue.record("round \(round): the waiting run could not push after the other's push was recorded")
                    continue
                }
                try await replica.publicationSucceeded(
                    id: run.id, listDigest: digest, mediaType: MediaType.ociImageIndex, tags: tags)
            }
        }
    }

    /// A run that starts waiting for a tag while the push holding it is being recorded on another replica is due at
    /// once afterwards, whichever commits first: the push's end either comes before the claim (which then pushes) or
    /// finds the run waiting and makes it due. Never a run left waiting for a claim that is gone.
    @Test func aRunThatStartsWaitingAsThePushItWaitsForEndsIsDueAtOnce() async throws {
        let fixture = try await StoreFixture()
        let first = try await fixture.another(replica: "replica-a")
        let second = try await fixture.another(replica: "replica-b")
        for round in 0..<8 {
            let (_, olderRun) = try await PublicationFencingTests.readyToPublish(
                fixture, tags: ["\(round).0", "latest"], agent: "a\(round)")
            let (_, newerRun) = try await PublicationFencingTests.readyToPublish(
                fixture, tags: ["\(round).1", "latest"], agent: "b\(round)")
            let held = try await first.claimPublication(id: olderRun.id, listDigest: Self.older, tags: olderRun.tags)
            #expect(held == .push(tags: ["\(round).0", "latest"]))
            async let landed: Void = first.publicationSucceeded(
                id: olderRun.id, listDigest: Self.older, mediaType: MediaType.ociImageIndex, tags: ["\(round).0", "latest"])
            async let claim = second.claimPublication(id: newerRun.id, listDigest: Self.newer, tags: newerRun.tags)
            let (_, waiting) = try await (landed, claim)
            if case .push(let tags) = waiting {
                try await second.publicationSucceeded(
                    id: newerRun.id, listDigest: Self.newer, mediaType: MediaType.ociImageIndex, tags: tags)
                continue
            }
            #expect(
                try await second.duePublications().ready.contains { $0.id == newerRun.id },
                "round \(round): the run waits for a claim that ended (\(waiting))")
            let retried = try await second.claimPublication(id: newerRun.id, listDigest: Self.newer, tags: newerRun.tags)
            guard case .push(let tags) = retried else {
                Issue.record("round \(round): \(retried)")
                continue
            }
            try await second.publicationSucceeded(
                id: newerRun.id, listDigest: Self.newer, mediaType: MediaType.ociImageIndex, tags: tags)
        }
    }

    @Test func anOlderBuildsListWaitsForANewerOnesPushOnAnotherReplicaAndThenKeepsTheTag() async throws {
        let fixture = try await StoreFixture()
        let first = try await fixture.another(replica: "replica-a")
        let second = try await fixture.another(replica: "replica-b")
        let (older, olderRun, newer, newerRun) = try await Self.twoBuilds(fixture)
        let registry = Registry()

        // Replica b starts the newer build's PUTs; replica a reaches the older build's before they land.
        let slow = try await second.claimPublication(id: newerRun.id, listDigest: Self.newer, tags: newerRun.tags)
        #expect(slow == .push(tags: ["1.1", "latest"]))
        let fast = try await first.claimPublication(id: olderRun.id, listDigest: Self.older, tags: olderRun.tags)
        if case .push(let tags) = fast {
            registry.land(tags, Self.older)
            try await first.publicationSucceeded(
                id: olderRun.id, listDigest: Self.older, mediaType: MediaType.ociImageIndex, tags: tags)
        }
        registry.land(["1.1", "latest"], Self.newer)
        try await second.publicationSucceeded(
            id: newerRun.id, listDigest: Self.newer, mediaType: MediaType.ociImageIndex, tags: ["1.1", "latest"])
        guard case .waitForTag = fast else {
            Issue.record("replica a was allowed to push `latest` while replica b's push of it was under way: \(fast)")
            return
        }
        // Once the newer list landed, the older run pushes its own tag only.
        #expect(try await first.duePublications().ready.contains { $0.id == olderRun.id })
        let retried = try await first.claimPublication(id: olderRun.id, listDigest: Self.older, tags: olderRun.tags)
        #expect(retried == .push(tags: ["1.0"]))
        registry.land(["1.0"], Self.older)
        try await first.publicationSucceeded(
            id: olderRun.id, listDigest: Self.older, mediaType: MediaType.ociImageIndex, tags: ["1.0"])

        let owners = try await fixture.store.tagOwners(image: olderRun.image)
        #expect(registry.tags["latest"] == Self.newer)
        #expect(owners["latest"]?.buildId == newer.id && owners["latest"]?.listDigest == Self.newer.description)
        #expect(owners["1.0"]?.buildId == older.id && registry.tags["1.0"] == Self.older)
        #expect(try await fixture.store.events(buildId: older.id).contains { $0.type == "tag.kept" })
        #expect(try await fixture.store.build(id: older.id).state == .published)
    }

    @Test func aDeadReplicasTagClaimRunsOutAndAFailedPushReleasesItsTagsAtOnce() async throws {
        let fixture = try await StoreFixture()
        let dead = try await fixture.another(replica: "replica-a")
        let live = try await fixture.another(replica: "replica-b")
        let (_, olderRun, newer, newerRun) = try await Self.twoBuilds(fixture)

        // A push whose PUTs failed holds no tag: the other replica's run goes ahead at once.
        #expect(
            try await dead.claimPublication(id: olderRun.id, listDigest: Self.older, tags: olderRun.tags)
                == .push(tags: ["1.0", "latest"]))
        try await dead.publicationFailed(id: olderRun.id, error: "503 from the registry", retryable: true)
        guard case .push = try await live.claimPublication(id: newerRun.id, listDigest: Self.newer, tags: newerRun.tags)
        else {
            Issue.record("a failed push kept its tags claimed")
            return
        }
        try await live.publicationFailed(id: newerRun.id, error: "503 from the registry", retryable: true)

        // Replica a claims the older run again and dies mid-push: b's run waits until that claim runs out.
        fixture.clock.advance(60)
        #expect(
            try await dead.claimPublication(id: olderRun.id, listDigest: Self.older, tags: olderRun.tags)
                == .push(tags: ["1.0", "latest"]))
        guard
            case .waitForTag(let held) = try await live.claimPublication(
                id: newerRun.id, listDigest: Self.newer, tags: newerRun.tags)
        else {
            Issue.record("replica b pushed `latest` while replica a's claim on it ran")
            return
        }
        #expect(held.until == fixture.clock.now.addingTimeInterval(fixture.store.settings.publicationClaimTTL))
        #expect(try await !live.duePublications().ready.contains { $0.id == newerRun.id })
        fixture.clock.advance(fixture.store.settings.publicationClaimTTL + 1)
        #expect(try await live.duePublications().ready.contains { $0.id == newerRun.id })
        #expect(
            try await live.claimPublication(id: newerRun.id, listDigest: Self.newer, tags: newerRun.tags)
                == .push(tags: ["1.1", "latest"]))
        try await live.publicationSucceeded(
            id: newerRun.id, listDigest: Self.newer, mediaType: MediaType.ociImageIndex, tags: ["1.1", "latest"])
        #expect(try await fixture.store.tagOwners(image: newerRun.image)["latest"]?.buildId == newer.id)
        // Replica a comes back: its older run is the other replica's to finish now, and keeps off `latest`.
        #expect(try await live.duePublications().ready.contains { $0.id == olderRun.id })
        #expect(
            try await live.claimPublication(id: olderRun.id, listDigest: Self.older, tags: olderRun.tags) == .push(tags: ["1.0"]))
    }

    /// Two builds of one image whose single jobs reported images for the same child tag, each report claimed for
    /// its check by another replica (the older build's by `first`).
    static func twoReports(
        _ fixture: StoreFixture, first: Store, second: Store
    ) async throws -> (older: (PendingVerification, VerificationClaim), newer: (PendingVerification, VerificationClaim)) {
        let older = try await ReplicaClaimTests.reportAwaitingCheck(fixture, name: "a")
        let newer = try await ReplicaClaimTests.reportAwaitingCheck(fixture, name: "b")
        #expect(older.childTag == newer.childTag)
        let olderClaim = try #require(try await first.claimVerification(jobId: older.jobId, epoch: older.epoch))
        let newerClaim = try #require(try await second.claimVerification(jobId: newer.jobId, epoch: newer.epoch))
        return ((older, olderClaim), (newer, newerClaim))
    }

    @Test func aNewerBuildsChildTagWaitsForAnOlderOnesPutOnAnotherReplicaAndLandsLast() async throws {
        let fixture = try await StoreFixture()
        let first = try await fixture.another(replica: "replica-a")
        let second = try await fixture.another(replica: "replica-b")
        let ((older, olderClaim), (newer, newerClaim)) = try await Self.twoReports(fixture, first: first, second: second)
        let registry = Registry()
        let tag = older.childTag

        #expect(
            try await first.claimChildTag(
                jobId: older.jobId, epoch: older.epoch, childTag: tag, digest: older.digest, claim: olderClaim))
        let allowed: Bool
        do {
            allowed = try await second.claimChildTag(
                jobId: newer.jobId, epoch: newer.epoch, childTag: tag, digest: newer.digest, claim: newerClaim)
        } catch let held as TagClaimedElsewhere {
            #expect(held.tag == tag && held.replica == "replica-a" && held.buildId == older.buildId, "\(held)")
            allowed = false
            // Replica a's PUT lands and ends its claim; the newer image goes next and lands last.
            registry.land([tag], older.digest)
            try await first.releaseChildTag(epoch: older.epoch)
            #expect(
                try await second.claimChildTag(
                    jobId: newer.jobId, epoch: newer.epoch, childTag: tag, digest: newer.digest, claim: newerClaim))
            registry.land([tag], newer.digest)
            try await second.releaseChildTag(epoch: newer.epoch)
        }
        if allowed {
            Issue.record("replica b was allowed to push \(tag) while replica a's PUT of it was under way")
            registry.land([tag], newer.digest)
            registry.land([tag], older.digest)
        }
        #expect(registry.tags[tag] == newer.digest)
        #expect(try await fixture.store.tagOwners(image: newer.image)[tag]?.listDigest == registry.tags[tag]?.description)
        #expect(try await fixture.store.tagOwners(image: newer.image)[tag]?.buildId == newer.buildId)
    }

    /// Two builds' checks claiming one child tag at the same moment on two replicas: at most one may PUT it.
    @Test func twoChecksClaimingOneChildTagAtOnceNeverBothPut() async throws {
        let fixture = try await StoreFixture()
        let first = try await fixture.another(replica: "replica-a")
        let second = try await fixture.another(replica: "replica-b")
        for round in 0..<6 {
            var reports: [(PendingVerification, VerificationClaim, Store)] = []
            for (name, replica) in [("a\(round)", first), ("b\(round)", second)] {
                let report = try await ReplicaClaimTests.reportAwaitingCheck(fixture, name: name)
                reports.append(
                    (report, try #require(try await replica.claimVerification(jobId: report.jobId, epoch: report.epoch)), replica)
                )
            }
            #expect(reports[0].0.childTag == reports[1].0.childTag)
            let allowed = try await withThrowingTaskGroup(of: Bool.self) { group in
                for (report, claim, replica) in reports {
                    group.addTask {
                        do {
                            return try await replica.claimChildTag(
                                jobId: report.jobId, epoch: report.epoch, childTag: report.childTag, digest: report.digest,
                                claim: claim)
                        } catch is TagClaimedElsewhere {
                            return false
                        }
                    }
                }
                var allowed = 0
                for try await answer in group where answer { allowed += 1 }
                return allowed
            }
            #expect(allowed == 1, "round \(round): \(allowed) checks were allowed to PUT the child tag")
            for (report, claim, replica) in reports {
                try await replica.recordVerification(jobId: report.jobId, epoch: report.epoch, outcome: .verified, claim: claim)
            }
        }
    }

    /// A landed PUT's claim on the child tag ends with the recording of the check's outcome (the same write), so
    /// the next build's push of that tag on another replica goes ahead at once.
    @Test func recordingTheOutcomeEndsTheChildTagClaim() async throws {
        let fixture = try await StoreFixture()
        let first = try await fixture.another(replica: "replica-a")
        let second = try await fixture.another(replica: "replica-b")
        let ((older, olderClaim), (newer, newerClaim)) = try await Self.twoReports(fixture, first: first, second: second)
        #expect(
            try await first.claimChildTag(
                jobId: older.jobId, epoch: older.epoch, childTag: older.childTag, digest: older.digest, claim: olderClaim))
        await #expect(throws: TagClaimedElsewhere.self) {
            try await second.claimChildTag(
                jobId: newer.jobId, epoch: newer.epoch, childTag: newer.childTag, digest: newer.digest, claim: newerClaim)
        }
        #expect(
            try await first.recordVerification(
                jobId: older.jobId, epoch: older.epoch, outcome: .verified, claim: olderClaim))
        #expect(
            try await second.claimChildTag(
                jobId: newer.jobId, epoch: newer.epoch, childTag: newer.childTag, digest: newer.digest, claim: newerClaim))
        // A recording that another replica's claim refuses still ends this replica's own tag claim, and no other.
        #expect(
            try await first.recordVerification(
                jobId: newer.jobId, epoch: newer.epoch, outcome: .verified, claim: olderClaim) == false)
        // A recording that names another job's attempt changes nothing, not even that attempt's tag claim (the write
        // holds the named job's build, not the attempt's).
        #expect(
            try await second.recordVerification(
                jobId: older.jobId, epoch: newer.epoch, outcome: .verified, claim: newerClaim) == false)
        let third = try await ReplicaClaimTests.reportAwaitingCheck(fixture, name: "c")
        let thirdClaim = try #require(try await first.claimVerification(jobId: third.jobId, epoch: third.epoch))
        await #expect(throws: TagClaimedElsewhere.self) {
            try await first.claimChildTag(
                jobId: third.jobId, epoch: third.epoch, childTag: third.childTag, digest: third.digest, claim: thirdClaim)
        }
    }

    @Test func aDeadReplicasChildTagClaimRunsOut() async throws {
        let fixture = try await StoreFixture()
        let dead = try await fixture.another(replica: "replica-a")
        let live = try await fixture.another(replica: "replica-b")
        let ((older, olderClaim), (newer, newerClaim)) = try await Self.twoReports(fixture, first: dead, second: live)
        #expect(
            try await dead.claimChildTag(
                jobId: older.jobId, epoch: older.epoch, childTag: older.childTag, digest: older.digest, claim: olderClaim))
        // Replica a dies before its PUT ended: replica b's check waits for the claim, then goes ahead.
        await #expect(throws: TagClaimedElsewhere.self) {
            try await live.claimChildTag(
                jobId: newer.jobId, epoch: newer.epoch, childTag: newer.childTag, digest: newer.digest, claim: newerClaim)
        }
        fixture.clock.advance(fixture.store.settings.verificationClaimTTL + 1)
        #expect(
            try await live.claimChildTag(
                jobId: newer.jobId, epoch: newer.epoch, childTag: newer.childTag, digest: newer.digest, claim: newerClaim))
        #expect(try await fixture.store.tagOwners(image: newer.image)[newer.childTag]?.buildId == newer.buildId)
        // Releasing a claim the replica no longer holds leaves the current one alone.
        try await dead.releaseChildTag(epoch: older.epoch)
        let other = try await ReplicaClaimTests.reportAwaitingCheck(fixture, name: "c")
        let otherClaim = try #require(try await dead.claimVerification(jobId: other.jobId, epoch: other.epoch))
        await #expect(throws: TagClaimedElsewhere.self) {
            try await dead.claimChildTag(
                jobId: other.jobId, epoch: other.epoch, childTag: other.childTag, digest: other.digest, claim: otherClaim)
        }
    }
}
