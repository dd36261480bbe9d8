import Foundation
import GRDB
import ManifoldAPI
import ManifoldCore
import Testing

@testable import ManifoldStore

/// Retention on a real SQLite file and a real contexts directory, with the clock moved by hand.
@Suite struct RetentionTests {
    static let day: TimeInterval = 86_400
    /// 30 days of logs, a day of unused contexts, and two rows (or 40 log bytes) per transaction so every batch loop turns.
    static let policy = RetentionPolicy(logRetention: 30 * day, contextRetention: day, batchSize: 2, batchBytes: 40)

    /// Logs `chunks` lines to the attempt, one chunk each; returns the bytes logged.
    static func log(
        _ fixture: StoreFixture, _ lease: Lease, agent: AgentView, chunks: Int, from start: Int64 = 0
    ) async throws
        -> Int64
    {
        var offset = start
        for index in 0..<chunks {
            let line = Data("step \(index) of attempt \(lease.epoch)\n".utf8)
            _ = try await fixture.store.appendLog(
                agentId: agent.id, jobId: lease.jobId, epoch: lease.epoch, offset: offset, data: line)
            offset += Int64(line.count)
        }
        return offset - start
    }

    static func fail(_ fixture: StoreFixture, _ lease: Lease, agent: AgentView) async throws {
        try await fixture.store.complete(
            agentId: agent.id,
            CompleteRequest(jobId: lease.jobId, epoch: lease.epoch, outcome: .failed, exitCode: 1, reason: "exit 1"))
    }

    static func count(_ fixture: StoreFixture, _ sql: String, _ arguments: SQLArguments = []) async throws -> Int {
        try await fixture.store.backend.read { db in try Int.fetchOne(db, sql: sql, arguments: arguments) ?? 0 }
    }

    static func chunks(_ fixture: StoreFixture, buildId: String) async throws -> Int {
        try await count(
            fixture,
            """
            SELECT COUNT(*) FROM log_chunk WHERE epoch IN (
                SELECT attempt.epoch FROM attempt JOIN job ON job.id = attempt.jobId WHERE job.buildId = ?)
            """, [buildId])
    }

    @Test func oldFinishedBuildsLoseLogsAndEventsButKeepTheirResult() async throws {
        let fixture = try await StoreFixture()
        let agent = try await fixture.join("builder", platforms: ["linux/amd64", "linux/arm64"])
        // An old build that failed after logging seven chunks.
        let old = try await fixture.submit(platforms: ["linux/amd64"], maxAttempts: 1)
        let oldLease = try #require(try await fixture.poll(agent))
        let oldBytes = try await Self.log(fixture, oldLease, agent: agent, chunks: 7)
        try await Self.fail(fixture, oldLease, agent: agent)
        #expect(try await fixture.store.build(id: old.id).state == .failed)
        let oldEvents = try await fixture.store.events(buildId: old.id)
        #expect(oldEvents.count > 3)

        fixture.clock.advance(31 * Self.day)
        // A build running now, with a log, and one still queued behind it.
        let running = try await fixture.submit(platforms: ["linux/amd64"])
        let runningLease = try #require(try await fixture.poll(agent))
        let runningBytes = try await Self.log(fixture, runningLease, agent: agent, chunks: 5)
        let queued = try await fixture.submit(platforms: ["linux/s390x"])
        let runningEvents = try await fixture.store.events(buildId: running.id)
        let queuedEvents = try await fixture.store.events(buildId: queued.id)

        let report = try await fixture.store.applyRetention(Self.policy, contexts: nil)
        #expect(report.buildsPruned == 1)
        #expect(report.logChunksDeleted == 7)
        #expect(report.logBytesDeleted == oldBytes)
        #expect(report.eventsDeleted == oldEvents.count)

        // The old build: no log chunk, one build.pruned event saying what went, the result kept.
        #expect(try await Self.chunks(fixture, buildId: old.id) == 0)
        let remaining = try await fixture.store.events(buildId: old.id)
        #expect(remaining.map(\.type) == ["build.pruned"])
        #expect(remaining.first?.data["logBytes"] == "\(oldBytes)")
        #expect(remaining.first?.data["events"] == "\(oldEvents.count)")
        #expect(remaining.first?.data["retentionDays"] == "30")
        let view = try await fixture.store.build(id: old.id)
        #expect(view.state == .failed)
        #expect(view.jobs.count == 1 && view.jobs[0].attempts == 1 && view.jobs[0].reason != nil)
        #expect(view.logsRemovedAt == fixture.clock.now)
        let log = try await fixture.store.readLog(buildId: old.id, platform: "linux/amd64")
        #expect(log.data.isEmpty && log.size == oldBytes)
        #expect(try await fixture.store.logRemoval(epoch: log.epoch) == fixture.clock.now)

        // The running and the queued build keep everything.
        #expect(try await Self.chunks(fixture, buildId: running.id) == 5)
        let runningLog = try await fixture.store.readLog(buildId: running.id, platform: "linux/amd64")
        #expect(runningLog.data.count == Int(runningBytes))
        #expect(try await fixture.store.logRemoval(epoch: runningLog.epoch) == nil)
        #expect(try await fixture.store.events(buildId: running.id) == runningEvents)
        #expect(try await fixture.store.events(buildId: queued.id) == queuedEvents)
        #expect(try await fixture.store.build(id: running.id).logsRemovedAt == nil)

        // A second pass finds nothing more to do, and the one build.pruned event stays.
        #expect(try await fixture.store.applyRetention(Self.policy, contexts: nil).isEmpty)
        #expect(try await fixture.store.events(buildId: old.id).map(\.type) == ["build.pruned"])
    }

    @Test func buildsFinishedWithinTheWindowAndForeverSettingsKeepEverything() async throws {
        let fixture = try await StoreFixture()
        let agent = try await fixture.join("builder", platforms: ["linux/amd64"])
        let build = try await fixture.submit(platforms: ["linux/amd64"], maxAttempts: 1)
        let lease = try #require(try await fixture.poll(agent))
        _ = try await Self.log(fixture, lease, agent: agent, chunks: 3)
        try await Self.fail(fixture, lease, agent: agent)
        let events = try await fixture.store.events(buildId: build.id)
        fixture.clock.advance(29 * Self.day)
        #expect(try await fixture.store.applyRetention(Self.policy, contexts: nil).isEmpty)
        fixture.clock.advance(365 * Self.day)
        let forever = RetentionPolicy(logRetention: nil, contextRetention: nil)
        #expect(try await fixture.store.applyRetention(forever, contexts: nil).isEmpty)
        #expect(try await Self.chunks(fixture, buildId: build.id) == 3)
        #expect(try await fixture.store.events(buildId: build.id) == events)
    }

    @Test func anOldAttemptOfAnOpenBuildLosesItsLogAndTheCurrentOneKeepsIt() async throws {
        let fixture = try await StoreFixture()
        let agent = try await fixture.join("builder", platforms: ["linux/amd64"])
        let build = try await fixture.submit(platforms: ["linux/amd64"], maxAttempts: 3)
        let first = try #require(try await fixture.poll(agent))
        let firstBytes = try await Self.log(fixture, first, agent: agent, chunks: 3)
        try await Self.fail(fixture, first, agent: agent)
        fixture.clock.advance(31 * Self.day)
        let second = try #require(try await fixture.poll(agent))
        #expect(second.attempt == 2)
        _ = try await Self.log(fixture, second, agent: agent, chunks: 2)

        let report = try await fixture.store.applyRetention(Self.policy, contexts: nil)
        #expect(report.buildsPruned == 0)
        #expect(report.attemptLogsPruned == 1)
        #expect(report.logBytesDeleted == firstBytes)
        #expect(try await Self.count(fixture, "SELECT COUNT(*) FROM log_chunk WHERE epoch = ?", [first.epoch]) == 0)
        #expect(try await Self.count(fixture, "SELECT COUNT(*) FROM log_chunk WHERE epoch = ?", [second.epoch]) == 2)
        #expect(try await fixture.store.logRemoval(epoch: first.epoch) != nil)
        let events = try await fixture.store.events(buildId: build.id)
        #expect(events.first?.type == "build.submitted")
        let pruned = try #require(events.first { $0.type == "job.log_pruned" })
        #expect(pruned.data["attempt"] == "1")
        #expect(pruned.data["logBytes"] == "\(firstBytes)")
        #expect(try await fixture.store.build(id: build.id).state == .running)
    }

    /// A context written the way the coordinator's upload does: recorded, then its file renamed into place.
    static func upload(
        _ fixture: StoreFixture, _ contexts: ContextDirectory, _ text: String, by token: String? = nil
    ) async throws -> Digest {
        let bytes = Data(text.utf8)
        let digest = Digest.compute(of: bytes)
        try await fixture.store.recordContext(digest: digest, size: Int64(bytes.count), uploadedBy: token)
        try bytes.write(to: contexts.file(for: digest))
        try setModified(contexts.file(for: digest), fixture.clock.now)
        return digest
    }

    static func setModified(_ file: URL, _ date: Date) throws {
        try FileManager.default.setAttributes([.modificationDate: date], ofItemAtPath: file.path)
    }

    static func spec(_ digest: Digest, platform: String = "linux/amd64", maxAttempts: Int? = nil) throws -> BuildSpec {
        BuildSpec(
            image: "registry.local:5000/team/app", tags: ["1.0"],
            platforms: [PlatformSpec(platform: try Platform(parsing: platform))], context: .upload(digest: digest),
            maxAttempts: maxAttempts)
    }

    @Test func unusedContextsGoWithTheirFilesAndNeededOrRecentOnesStay() async throws {
        let fixture = try await StoreFixture()
        let contexts = ContextDirectory(fixture.directory.appendingPathComponent("contexts"))
        try FileManager.default.createDirectory(at: contexts.url, withIntermediateDirectories: true)
        let agent = try await fixture.join("builder", platforms: ["linux/amd64"])

        // Used by a build that failed: unused once it finished.
        let finished = try await Self.upload(fixture, contexts, "finished build's context")
        let failed = try await fixture.store.submitBuild(try Self.spec(finished, maxAttempts: 1), submittedBy: "t")
        try await Self.fail(fixture, try #require(try await fixture.poll(agent)), agent: agent)
        // Needed by a queued build (no agent offers its platform), and by a running one.
        let forQueued = try await Self.upload(fixture, contexts, "queued build's context")
        _ = try await fixture.store.submitBuild(try Self.spec(forQueued, platform: "linux/s390x"), submittedBy: "t")
        let forRunning = try await Self.upload(fixture, contexts, "running build's context")
        _ = try await fixture.store.submitBuild(try Self.spec(forRunning), submittedBy: "t")
        _ = try #require(try await fixture.poll(agent))
        // Uploaded and never used, and uploaded then downloaded again recently.
        let neverUsed = try await Self.upload(fixture, contexts, "never used")
        let touched = try await Self.upload(fixture, contexts, "used again later")
        // Files that belong to nothing: an interrupted upload and a context file whose row is gone.
        let partial = contexts.url.appendingPathComponent(".upload-interrupted")
        try Data("half".utf8).write(to: partial)
        try Self.setModified(partial, fixture.clock.now)
        let orphan = contexts.file(for: Digest.compute(of: Data("orphan".utf8)))
        try Data("orphan".utf8).write(to: orphan)
        try Self.setModified(orphan, fixture.clock.now)

        fixture.clock.advance(2 * Self.day)
        #expect(try await fixture.store.touchContext(digest: touched))
        let fresh = try await Self.upload(fixture, contexts, "uploaded just now")
        let freshPartial = contexts.url.appendingPathComponent(".upload-in-progress")
        try Data("streaming".utf8).write(to: freshPartial)
        try Self.setModified(freshPartial, fixture.clock.now)

        let report = try await fixture.store.applyRetention(Self.policy, contexts: contexts)
        #expect(report.contextsDeleted == 2)
        #expect(report.contextBytesDeleted == Int64("finished build's context".utf8.count + "never used".utf8.count))
        #expect(report.strayFilesDeleted == 2)
        for gone in [finished, neverUsed] {
            #expect(try await !fixture.store.hasContext(digest: gone))
            #expect(!FileManager.default.fileExists(atPath: contexts.file(for: gone).path))
        }
        for kept in [forQueued, forRunning, touched, fresh] {
            #expect(try await fixture.store.hasContext(digest: kept))
            #expect(FileManager.default.fileExists(atPath: contexts.file(for: kept).path))
        }
        #expect(!FileManager.default.fileExists(atPath: partial.path))
        #expect(!FileManager.default.fileExists(atPath: orphan.path))
        #expect(FileManager.default.fileExists(atPath: freshPartial.path))
        let left = try FileManager.default.contentsOfDirectory(atPath: contexts.url.path)
        #expect(!left.contains { $0.hasPrefix(".removing-") }, "\(left)")

        // A build naming a removed context is refused, and so is a retry of the build that used it.
        await #expect { try await fixture.store.submitBuild(try Self.spec(finished), submittedBy: "t") } throws: {
            guard case StoreError.invalid(let field, _) = $0 else { return false }
            return field == "context.digest"
        }
        await #expect { try await fixture.store.retryJob(buildId: failed.id, platform: "linux/amd64") } throws: {
            "\($0)".contains("removed by retention")
        }
        // Uploading it again brings it back.
        #expect(try await Self.upload(fixture, contexts, "finished build's context") == finished)
        _ = try await fixture.store.retryJob(buildId: failed.id, platform: "linux/amd64")
    }

    /// Who uploaded a context is forgotten with the context: when another token uploads the same bytes later, the
    /// first uploader does not get to read them again.
    @Test func aContextUsedWithinAMinuteIsNotWrittenAgain() async throws {
        let fixture = try await StoreFixture()
        let contexts = ContextDirectory(fixture.directory.appendingPathComponent("contexts"))
        try FileManager.default.createDirectory(at: contexts.url, withIntermediateDirectories: true)
        let digest = try await Self.upload(fixture, contexts, "downloaded by every agent of a build")
        @Sendable func lastUsed() async throws -> Double? {
            try await fixture.store.backend.read { db in
                try Double.fetchOne(
                    db, sql: "SELECT lastUsedAt FROM context WHERE digest = ?", arguments: [digest.description])
            }
        }
        let uploaded = try #require(try await lastUsed())
        let writes = fixture.store.writesCommitted

        // Within the minute: recorded, answered from a read, nothing written.
        fixture.clock.advance(59)
        #expect(try await fixture.store.touchContext(digest: digest))
        #expect(try await lastUsed() == uploaded)
        #expect(fixture.store.writesCommitted == writes)

        // Past it: written, and the next minute counts from there.
        fixture.clock.advance(2)
        #expect(try await fixture.store.touchContext(digest: digest))
        let touched = try #require(try await lastUsed())
        #expect(touched == Store.timestamp(fixture.clock.now))
        fixture.clock.advance(30)
        #expect(try await fixture.store.touchContext(digest: digest))
        #expect(try await lastUsed() == touched)

        // A context nobody recorded: false, and nothing written.
        let before = fixture.store.writesCommitted
        #expect(try await !fixture.store.touchContext(digest: Digest.compute(of: Data("never uploaded".utf8))))
        #expect(fixture.store.writesCommitted == before)
    }

    @Test func aContextsUploadersGoWithIt() async throws {
        let fixture = try await StoreFixture()
        let contexts = ContextDirectory(fixture.directory.appendingPathComponent("contexts"))
        try FileManager.default.createDirectory(at: contexts.url, withIntermediateDirectories: true)
        let first = TokenGrant(tokenId: "tok_first", name: "first", role: .submitter)
        let digest = try await Self.upload(fixture, contexts, "shared source", by: first.tokenId)
        #expect(try await fixture.store.mayReadContext(digest: digest, grant: first))
        fixture.clock.advance(2 * Self.day)
        #expect(try await fixture.store.applyRetention(Self.policy, contexts: contexts).contextsDeleted == 1)
        #expect(try await Self.count(fixture, "SELECT COUNT(*) FROM context_upload", []) == 0)
        _ = try await Self.upload(fixture, contexts, "shared source", by: "tok_second")
        #expect(try await !fixture.store.mayReadContext(digest: digest, grant: first))
        #expect(
            try await fixture.store.mayReadContext(
                digest: digest, grant: TokenGrant(tokenId: "tok_second", name: "second", role: .submitter)))
    }

    @Test func aSubmissionKeepsItsContextFromBeingCollected() async throws {
        let fixture = try await StoreFixture()
        let contexts = ContextDirectory(fixture.directory.appendingPathComponent("contexts"))
        try FileManager.default.createDirectory(at: contexts.url, withIntermediateDirectories: true)
        let digest = try await Self.upload(fixture, contexts, "context")
        fixture.clock.advance(2 * Self.day)
        // Submitted (and at once cancelled): the submission counts as a use.
        let build = try await fixture.store.submitBuild(try Self.spec(digest), submittedBy: "t")
        _ = try await fixture.store.cancelBuild(id: build.id, by: "t")
        #expect(try await fixture.store.applyRetention(Self.policy, contexts: contexts).contextsDeleted == 0)
        fixture.clock.advance(Self.day + 1)
        #expect(try await fixture.store.applyRetention(Self.policy, contexts: contexts).contextsDeleted == 1)
        #expect(!FileManager.default.fileExists(atPath: contexts.file(for: digest).path))
    }

    @Test func aContextUploadedAgainWhileItIsRemovedKeepsItsFile() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("contexts-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let contexts = ContextDirectory(directory)
        let bytes = Data("same bytes".utf8)
        let digest = Digest.compute(of: bytes)
        try bytes.write(to: contexts.file(for: digest))
        // The row was deleted, then an upload recorded the context again before the file was deleted.
        #expect(try await contexts.remove(digest) { true } == false)
        #expect(try Data(contentsOf: contexts.file(for: digest)) == bytes)
        #expect(try await contexts.remove(digest) { false } == true)
        #expect(!FileManager.default.fileExists(atPath: contexts.file(for: digest).path))
        #expect(try await contexts.remove(digest) { false } == false)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).isEmpty)
    }

    @Test func aProbeWriteClearsARecordedStorageFailure() async throws {
        let fixture = try await StoreFixture()
        fixture.store.recordStorageFailure("cannot write the context to /x: No space left on device")
        #expect(fixture.store.writeHealth.failure == "cannot write the context to /x: No space left on device")
        fixture.clock.advance(1)
        try await fixture.store.probeWrite()
        #expect(fixture.store.writeHealth.failure == nil)
        #expect(fixture.store.writeHealth.lastFailure != nil)
    }
}
