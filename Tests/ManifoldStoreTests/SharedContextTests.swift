import Foundation
import ManifoldCore
import Synchronization
import Testing

@testable import ManifoldStore

/// Contexts kept in the database, so any replica can hand out a context another replica received.
@Suite struct SharedContextTests {
    static func randomFile(_ fixture: StoreFixture, bytes: Int, name: String = "context.tar.gz") throws -> (URL, Digest) {
        // Bytes that differ per file and per position, quickly (random bytes one by one are slow in a debug build).
        let seed = UInt64.random(in: 1...UInt64.max)
        var data = Data(capacity: bytes + 8)
        var state = seed
        while data.count < bytes {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            withUnsafeBytes(of: state) { data.append(contentsOf: $0) }
        }
        data = data.prefix(bytes)
        let file = fixture.directory.appendingPathComponent(name)
        try data.write(to: file)
        return (file, Digest.compute(of: data))
    }

    @Test(arguments: [0, 1, 1 << 20, (5 << 20) / 2, (9 << 20) + 17])
    func aStoredContextLoadsBackByteForByte(bytes: Int) async throws {
        let fixture = try await StoreFixture()
        let (file, digest) = try Self.randomFile(fixture, bytes: bytes)
        try await fixture.store.storeSharedContext(digest: digest, file: file)
        try await fixture.store.recordContext(digest: digest, size: Int64(bytes))
        // Another replica (another store on the same database) loads it.
        let replica = try await fixture.another()
        let copy = fixture.directory.appendingPathComponent("copy")
        #expect(try await replica.loadSharedContext(digest: digest, into: copy))
        #expect(try Data(contentsOf: copy) == Data(contentsOf: file))
    }

    @Test func twoReplicasStoringTheSameContextAtOnceAgree() async throws {
        let fixture = try await StoreFixture()
        let (file, digest) = try Self.randomFile(fixture, bytes: (3 << 20) + 5)
        let replica = try await fixture.another()
        async let first: Void = fixture.store.storeSharedContext(digest: digest, file: file)
        async let second: Void = replica.storeSharedContext(digest: digest, file: file)
        _ = try await (first, second)
        try await fixture.store.recordContext(digest: digest, size: (3 << 20) + 5)
        let copy = fixture.directory.appendingPathComponent("copy")
        #expect(try await replica.loadSharedContext(digest: digest, into: copy))
        #expect(try Data(contentsOf: copy) == Data(contentsOf: file))
    }

    /// Chunks are megabytes a transaction: under the writers' lock an upload would hold every replica's leases and
    /// reports for as long as the disk takes. On PostgreSQL they are stored while another replica's write holds the
    /// lock (the lock holder waits for the upload to finish; if the upload waited for the lock, the holder lets go
    /// after 60 s and the test fails). The context row itself is a write like any other.
    @Test func contextChunksDoNotWaitForTheWritersLock() async throws {
        let fixture = try await StoreFixture(backend: .postgres)
        let (file, digest) = try Self.randomFile(fixture, bytes: (3 << 20) + 1)
        let replica = try await fixture.another()
        let holding = Mutex(false)
        let uploaded = DispatchSemaphore(value: 0)
        let holder = Task {
            try await replica.backend.write { db in
                // A statement waited for: the lock (sent with BEGIN) is held from here on.
                _ = try Int.fetchOne(db, sql: "SELECT 1")
                holding.withLock { $0 = true }
                // On the session's own thread, as a long write would.
                return uploaded.wait(timeout: .now() + 60) == .success
            }
        }
        while !holding.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(5)) }
        try await fixture.store.storeSharedContext(digest: digest, file: file)
        uploaded.signal()
        #expect(try await holder.value, "the upload finished only after the other replica's write let go of the lock")
        try await fixture.store.recordContext(digest: digest, size: (3 << 20) + 1)
        let copy = fixture.directory.appendingPathComponent("copy")
        #expect(try await replica.loadSharedContext(digest: digest, into: copy))
        #expect(try Data(contentsOf: copy) == Data(contentsOf: file))
    }

    @Test func aContextWithoutItsRowOrWithDamagedChunksDoesNotLoad() async throws {
        let fixture = try await StoreFixture()
        let (file, digest) = try Self.randomFile(fixture, bytes: (2 << 20) + 3)
        let copy = fixture.directory.appendingPathComponent("copy")
        // Chunks without a row: an upload that did not finish.
        try await fixture.store.storeSharedContext(digest: digest, file: file)
        #expect(try await fixture.store.loadSharedContext(digest: digest, into: copy) == false)
        // A row whose chunks do not hash to its digest.
        try await fixture.store.recordContext(digest: digest, size: (2 << 20) + 3)
        try await fixture.store.backend.write { db in
            try db.execute(
                sql: "UPDATE context_chunk SET data = ? WHERE digest = ? AND byteOffset = ?",
                arguments: [Data(repeating: 0, count: 1 << 20), digest.description, Int64(1 << 20)])
        }
        #expect(try await fixture.store.loadSharedContext(digest: digest, into: copy) == false)
        // A missing middle chunk.
        try await fixture.store.backend.write { db in
            try db.execute(
                sql: "DELETE FROM context_chunk WHERE digest = ? AND byteOffset = ?",
                arguments: [digest.description, Int64(1 << 20)])
        }
        #expect(try await fixture.store.loadSharedContext(digest: digest, into: copy) == false)
    }

    @Test func retentionDeletesTheChunksWithTheContextAndStrayChunksAfterTheirGrace() async throws {
        let fixture = try await StoreFixture()
        let (kept, keptDigest) = try Self.randomFile(fixture, bytes: 1000, name: "kept")
        let (old, oldDigest) = try Self.randomFile(fixture, bytes: (1 << 20) + 1, name: "old")
        let (stray, strayDigest) = try Self.randomFile(fixture, bytes: 10, name: "stray")
        try await fixture.store.storeSharedContext(digest: oldDigest, file: old)
        try await fixture.store.recordContext(digest: oldDigest, size: (1 << 20) + 1)
        try await fixture.store.storeSharedContext(digest: strayDigest, file: stray)
        fixture.clock.advance(2 * 86_400)
        try await fixture.store.storeSharedContext(digest: keptDigest, file: kept)
        try await fixture.store.recordContext(digest: keptDigest, size: 1000)
        let contexts = ContextDirectory(fixture.directory.appendingPathComponent("contexts"))
        let report = try await fixture.store.applyRetention(
            RetentionPolicy(logRetention: nil, contextRetention: 86_400), contexts: contexts)
        #expect(report.contextsDeleted == 1)
        #expect(report.strayContextChunksDeleted == 1)
        let remaining = try await fixture.store.backend.read { db in
            try String.fetchAll(db, sql: "SELECT DISTINCT digest FROM context_chunk")
        }
        #expect(remaining == [keptDigest.description])
    }
}
