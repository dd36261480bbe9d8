import Foundation
import ManifoldAPI
import ManifoldCore
import Testing

@testable import ManifoldStore

/// The outbox is re-checked right before the tag PUTs; tags never move backwards across builds; a push that
/// lands after a cancel or a retry is recorded, never silent.
@Suite struct PublicationFencingTests {
    /// Runs one platform build to a due outbox row; returns the row.
    static func readyToPublish(
        _ fixture: StoreFixture, tags: [String] = ["1.0", "latest"], agent name: String = "a"
    ) async throws -> (build: BuildView, publication: Publication) {
        let build = try await fixture.submit(platforms: ["linux/amd64"], tags: tags)
        let agent = try await fixture.join(name, platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent))
        _ = try await fixture.succeed(lease, agent: agent)
        try await fixture.verifyAll()
        let publication = try #require(try await fixture.store.duePublications().ready.first { $0.buildId == build.id })
        return (build, publication)
    }

    static let list = Digest.compute(of: Data("list".utf8))

    @Test func aCancelBeforeTheClaimPushesNoTag() async throws {
        let fixture = try await StoreFixture()
        let (build, publication) = try await Self.readyToPublish(fixture)
        _ = try await fixture.store.cancelBuild(id: build.id, by: "ops")
        let claim = try await fixture.store.claimPublication(id: publication.id, listDigest: Self.list, tags: publication.tags)
        guard case .abandon = claim else {
            Issue.record("a cancelled build's run was allowed to tag: \(claim)")
            return
        }
        #expect(try await fixture.store.tagOwners(image: publication.image).isEmpty)
        #expect(try await fixture.store.build(id: build.id).state == .cancelled)
    }

    @Test func aCancelDuringTheTagPUTsIsRecordedWhenThePushLands() async throws {
        let fixture = try await StoreFixture()
        let (build, publication) = try await Self.readyToPublish(fixture)
        let claim = try await fixture.store.claimPublication(id: publication.id, listDigest: Self.list, tags: publication.tags)
        #expect(claim == .push(tags: ["1.0", "latest"]))
        _ = try await fixture.store.cancelBuild(id: build.id, by: "ops")
        #expect(
            try await fixture.store.events(buildId: build.id).last { $0.type == "build.cancelled" }?.data["pushInFlight"]
                == "true")
        try await fixture.store.publicationSucceeded(
            id: publication.id, listDigest: Self.list, mediaType: MediaType.ociImageIndex, tags: ["1.0", "latest"])
        let view = try await fixture.store.build(id: build.id)
        #expect(view.state == .cancelled)
        #expect(view.notice?.contains("\(Self.list)") == true, "\(view)")
        #expect(view.notice?.contains("after the build was cancelled") == true)
        let late = try #require(try await fixture.store.events(buildId: build.id).last { $0.type == "list.pushed_after_cancel" })
        #expect(late.data["tags"] == "1.0,latest")
        #expect(late.data["digest"] == Self.list.description)
    }

    @Test func anOlderBuildNeverMovesATagANewerBuildPublished() async throws {
        let fixture = try await StoreFixture()
        let (older, olderRun) = try await Self.readyToPublish(fixture, tags: ["1.0", "latest"], agent: "a")
        let (newer, newerRun) = try await Self.readyToPublish(fixture, tags: ["1.1", "latest"], agent: "b")
        let newerList = Digest.compute(of: Data("newer".utf8))
        #expect(
            try await fixture.publish(id: newerRun.id, listDigest: newerList, mediaType: MediaType.ociImageIndex)
                == .push(tags: ["1.1", "latest"]))
        // The older build finishes late: it keeps its own tag, `latest` stays on the newer list.
        #expect(
            try await fixture.publish(id: olderRun.id, listDigest: Self.list, mediaType: MediaType.ociImageIndex)
                == .push(tags: ["1.0"]))
        let owners = try await fixture.store.tagOwners(image: olderRun.image)
        #expect(owners["latest"]?.buildId == newer.id && owners["latest"]?.listDigest == newerList.description)
        #expect(owners["1.0"]?.buildId == older.id)
        let kept = try #require(try await fixture.store.events(buildId: older.id).first { $0.type == "tag.kept" })
        #expect(kept.data["reason"] == "tag latest kept: held by \(newer.id) submitted later")
        let published = try #require(try await fixture.store.events(buildId: older.id).last { $0.type == "list.published" })
        #expect(published.data["tags"] == "1.0")
        #expect(try await fixture.store.build(id: older.id).state == .published)
        // A retry of the older build later still does not take `latest` back.
        let retried = try await fixture.store.retryJob(buildId: older.id, platform: "linux/amd64")
        #expect(retried.state == .running)
        let agent = try await fixture.join("c", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent))
        _ = try await fixture.succeed(lease, agent: agent)
        try await fixture.verifyAll()
        let rerun = try #require(try await fixture.store.duePublications().ready.first { $0.buildId == older.id })
        #expect(
            try await fixture.store.claimPublication(
                id: rerun.id, listDigest: Digest.compute(of: Data("r".utf8)), tags: rerun.tags)
                == .push(tags: ["1.0"]))
        #expect(try await fixture.store.tagOwners(image: olderRun.image)["latest"]?.buildId == newer.id)
    }

    @Test func aRunReplacedByARetryWhileItPushedIsRecordedAndDoesNotFinishTheBuild() async throws {
        let fixture = try await StoreFixture()
        let (build, first) = try await Self.readyToPublish(fixture)
        _ = try await fixture.store.claimPublication(id: first.id, listDigest: Self.list, tags: first.tags)
        // A retry while the first run's tags are being pushed; the rebuilt platform is verified at once.
        _ = try await fixture.store.retryJob(buildId: build.id, platform: "linux/amd64")
        let agent = try await fixture.join("b", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent))
        _ = try await fixture.succeed(lease, agent: agent)
        try await fixture.verifyAll()
        let second = try #require(try await fixture.store.duePublications().ready.first { $0.id != first.id })
        // The first push lands now: recorded, but the build waits for the second run's list.
        try await fixture.store.publicationSucceeded(
            id: first.id, listDigest: Self.list, mediaType: MediaType.ociImageIndex, tags: first.tags)
        var view = try await fixture.store.build(id: build.id)
        #expect(view.state == .publishing, "\(view)")
        #expect(view.notice?.contains("after a retry replaced its publishing run") == true)
        #expect(try await fixture.store.events(buildId: build.id).contains { $0.type == "list.pushed_superseded" })
        let newList = Digest.compute(of: Data("second".utf8))
        #expect(
            try await fixture.publish(id: second.id, listDigest: newList, mediaType: MediaType.ociImageIndex)
                == .push(tags: ["1.0", "latest"]))
        view = try await fixture.store.build(id: build.id)
        #expect(view.state == .published && view.listDigest == newList)
    }

    @Test func aFailedPushAfterTheClaimIsRetriedFromPending() async throws {
        let fixture = try await StoreFixture()
        let (build, publication) = try await Self.readyToPublish(fixture)
        _ = try await fixture.store.claimPublication(id: publication.id, listDigest: Self.list, tags: publication.tags)
        // A crash mid-push leaves the row pushing: it is due again after a restart.
        #expect(try await fixture.store.duePublications().ready.map(\.id) == [publication.id])
        try await fixture.store.publicationFailed(id: publication.id, error: "503", retryable: true)
        #expect(try await fixture.store.duePublications().ready.isEmpty, "backoff before the next try")
        fixture.clock.advance(10)
        #expect(
            try await fixture.publish(id: publication.id, listDigest: Self.list, mediaType: MediaType.ociImageIndex)
                == .push(tags: ["1.0", "latest"]))
        #expect(try await fixture.store.build(id: build.id).state == .published)
    }

    @Test func anUnreadableOutboxRowIsReportedNotFatalToTheOthers() async throws {
        let fixture = try await StoreFixture()
        let (_, good) = try await Self.readyToPublish(fixture, agent: "a")
        let (bad, broken) = try await Self.readyToPublish(fixture, agent: "b")
        try await fixture.store.backend.write { db in
            try db.execute(sql: "UPDATE outbox SET children = 'not json' WHERE id = ?", arguments: [broken.id])
        }
        let due = try await fixture.store.duePublications()
        #expect(due.ready.map(\.id) == [good.id])
        #expect(due.unreadable.map(\.buildId) == [bad.id])
    }
}

/// The stable child tag is the coordinator's, claimed right before its PUT; a run that started pushing tags is
/// never abandoned silently.
@Suite struct ChildTagAndPartialPushTests {
    @Test func aCancelledBuildOrAStaleAttemptNeverClaimsTheChildTag() async throws {
        let fixture = try await StoreFixture()
        let build = try await fixture.submit(platforms: ["linux/amd64"])
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent))
        let digest = try await fixture.succeed(lease, agent: agent)
        _ = try await fixture.store.cancelBuild(id: build.id, by: "ops")
        #expect(
            try await !fixture.store.claimChildTag(
                jobId: lease.jobId, epoch: lease.epoch, childTag: "1.0-linux-amd64", digest: digest))
        #expect(
            try await !fixture.store.claimChildTag(
                jobId: lease.jobId, epoch: lease.epoch + 7, childTag: "1.0-linux-amd64", digest: digest))
    }

    @Test func anOlderBuildNeverMovesAChildTagANewerBuildHolds() async throws {
        let fixture = try await StoreFixture()
        let older = try await fixture.submit(platforms: ["linux/amd64"], tags: ["latest"])
        let newer = try await fixture.submit(platforms: ["linux/amd64"], tags: ["latest"])
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        let first = try #require(try await fixture.poll(agent))
        let second = try #require(try await fixture.poll(agent))
        #expect(first.spec.buildId == older.id && second.spec.buildId == newer.id)
        let olderDigest = try await fixture.succeed(first, agent: agent)
        let newerDigest = try await fixture.succeed(second, agent: agent)
        #expect(
            try await fixture.store.claimChildTag(
                jobId: second.jobId, epoch: second.epoch, childTag: "latest-linux-amd64", digest: newerDigest))
        // The older build's verification comes late: the child tag stays on the newer build's image.
        #expect(
            try await !fixture.store.claimChildTag(
                jobId: first.jobId, epoch: first.epoch, childTag: "latest-linux-amd64", digest: olderDigest))
        #expect(
            try await fixture.store.tagOwners(image: first.spec.image)["latest-linux-amd64"]?.listDigest
                == newerDigest.description)
        let kept = try #require(try await fixture.store.events(buildId: older.id).first { $0.type == "tag.kept" })
        #expect(kept.data["tag"] == "latest-linux-amd64" && kept.data["heldBy"] == newer.id)
    }

    @Test func aPushThatFailedMidwayIsRecordedWhenTheBuildIsCancelledBeforeItsRetry() async throws {
        let fixture = try await StoreFixture()
        let (build, publication) = try await PublicationFencingTests.readyToPublish(fixture)
        #expect(
            try await fixture.store.claimPublication(
                id: publication.id, listDigest: PublicationFencingTests.list, tags: publication.tags)
                == .push(tags: ["1.0", "latest"]))
        // `1.0` moved, then the registry failed: the run is retried later, still marked as pushing.
        try await fixture.store.publicationFailed(id: publication.id, error: "503", retryable: true)
        _ = try await fixture.store.cancelBuild(id: build.id, by: "ops")
        #expect(
            try await fixture.store.events(buildId: build.id).last { $0.type == "build.cancelled" }?.data["pushInFlight"]
                == "true")
        fixture.clock.advance(60)
        let claim = try await fixture.store.claimPublication(
            id: publication.id, listDigest: PublicationFencingTests.list, tags: publication.tags)
        guard case .abandon = claim else {
            Issue.record("a cancelled build's run was allowed to tag: \(claim)")
            return
        }
        let view = try await fixture.store.build(id: build.id)
        #expect(view.notice?.contains("may already point at list \(PublicationFencingTests.list)") == true, "\(view)")
        #expect(try await fixture.store.events(buildId: build.id).contains { $0.type == "list.pushed_after_cancel" })
    }

    @Test func aLogThatFillsExactlyToTheMarkersRoomStillEndsWithTheMarker() async throws {
        let fixture = try await StoreFixture(settings: StoreSettings(maxLogBytesPerAttempt: 300))
        let build = try await fixture.submit(platforms: ["linux/amd64"])
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent))
        let marker =
            "\n[manifold] this attempt's log reached the coordinator's limit of 300 bytes (max_log_bytes_per_attempt); later output was not stored\n"
        let room = 300 - marker.utf8.count
        #expect(
            try await fixture.store.appendLog(
                agentId: agent.id, jobId: lease.jobId, epoch: lease.epoch, offset: 0, data: Data(repeating: 65, count: room))
                == .stored(size: Int64(room)))
        let more = try await fixture.store.appendLog(
            agentId: agent.id, jobId: lease.jobId, epoch: lease.epoch, offset: Int64(room), data: Data("more\n".utf8))
        #expect(more == .truncated(size: 300))
        let log = try await fixture.store.readLog(buildId: build.id, platform: "linux/amd64")
        #expect(String(decoding: log.data, as: UTF8.self).hasSuffix(marker))
    }

    @Test func anAgentThatNeverConfirmsIsNotHandedTheSameLeaseForever() async throws {
        let fixture = try await StoreFixture()
        _ = try await fixture.submit(platforms: ["linux/amd64"])
        let agent = try await fixture.join("a", platforms: ["linux/amd64"])
        let first = try #require(try await fixture.poll(agent, confirm: false))
        for _ in 0..<5 {
            fixture.clock.advance(45)
            #expect(try await fixture.poll(agent, confirm: false)?.epoch == first.epoch)
        }
        // Past four acknowledge windows (240 s) the same grant is no longer handed out, nor extended; once its last
        // extension (at 225 s, to 285 s) runs out the reaper gives it back uncounted.
        fixture.clock.advance(20)
        #expect(try await fixture.poll(agent, confirm: false) == nil)
        fixture.clock.advance(41)
        #expect(try await fixture.store.expireLeases() == 1)
        let next = try #require(try await fixture.poll(agent))
        #expect(next.epoch > first.epoch)
    }
}
