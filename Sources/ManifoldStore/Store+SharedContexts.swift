import Foundation
import ManifoldCore

/// Build contexts in the database, for replicas: an upload that reaches one replica must be downloadable from any
/// other, so with PostgreSQL the verified file is copied into `context_chunk` (1 MiB rows keyed by digest and byte
/// offset) before the `context` row is recorded. A replica that lacks the file fetches it from there into its
/// local contexts directory, which is then only a cache. Retention deletes the chunks with the row.
extension Store {
    /// Bytes per stored chunk. Chunks are keyed by byte offset, and content addressed: two replicas storing the
    /// same context at once write the same rows, and the second insert of a row is a no-op.
    public static let contextChunkSize = 1 << 20
    /// Chunks written per transaction: a few MiB, so one upload never holds a connection for long.
    static let contextChunksPerTransaction = 8

    /// Copies the verified context `file` into the database. Call before ``recordContext(digest:size:)``: a context
    /// row means its chunks are complete.
    public func storeSharedContext(digest: Digest, file: URL) async throws {
        let size = try FileManager.default.attributesOfItem(atPath: file.path)[.size] as? Int64 ?? 0
        let step = Int64(Self.contextChunkSize * Self.contextChunksPerTransaction)
        var start: Int64 = 0
        repeat {
            let from = start
            let at = Store.timestamp(now())
            // The file is read on the backend's thread, inside the transaction (never on the concurrency pool);
            // a retried transaction reads the same bytes again. The chunks are content-addressed and read only once
            // the context row says they are complete, so they do not wait for other writes.
            try await write(.contentAddressed) { db in
                let handle = try FileHandle(forReadingFrom: file)
                defer { try? handle.close() }
                try handle.seek(toOffset: UInt64(from))
                var offset = from
                for _ in 0..<Self.contextChunksPerTransaction {
                    guard let data = try handle.read(upToCount: Self.contextChunkSize), !data.isEmpty else { break }
                    try db.execute(
                        sql: """
                            INSERT INTO context_chunk (digest, byteOffset, data, createdAt) VALUES (?, ?, ?, ?)
                            ON CONFLICT (digest, byteOffset) DO NOTHING
                            """, arguments: [digest.description, offset, data, at])
                    offset += Int64(data.count)
                }
            }
            start += step
        } while start < size
    }

    /// Writes the context from the database into `file` (created or truncated) and checks its digest and size.
    /// Returns false when the database holds no complete copy of it.
    public func loadSharedContext(digest: Digest, into file: URL) async throws -> Bool {
        guard
            let size = try await read({ db in
                try Int64.fetchOne(db, sql: "SELECT size FROM context WHERE digest = ?", arguments: [digest.description])
            })
        else { return false }
        guard FileManager.default.createFile(atPath: file.path, contents: nil) else {
            throw StoreError.storageUnavailable("cannot create \(file.path) to copy context \(digest) into")
        }
        var written: Int64 = 0
        var hasher = DigestHasher(digest.algorithm)
        while written < size {
            // Read and written on the backend's thread, never on the concurrency pool.
            let (from, before) = (written, hasher)
            let step = try await read { db -> (written: Int64, hasher: DigestHasher)? in
                let chunks = try SQLRow.fetchAll(
                    db,
                    sql:
                        "SELECT byteOffset, data FROM context_chunk WHERE digest = ? AND byteOffset >= ? ORDER BY byteOffset LIMIT ?",
                    arguments: [digest.description, from, Self.contextChunksPerTransaction])
                guard !chunks.isEmpty else { return nil }
                let handle = try FileHandle(forWritingTo: file)
                defer { try? handle.close() }
                try handle.seekToEnd()
                var (written, hasher) = (from, before)
                for chunk in chunks {
                    let data: Data = chunk["data"]
                    guard chunk["byteOffset"] as Int64 == written else { return nil }
                    try handle.write(contentsOf: data)
                    hasher.update(data)
                    written += Int64(data.count)
                }
                return (written, hasher)
            }
            guard let step else { return false }
            (written, hasher) = step
        }
        return written == size && hasher.finalize() == digest
    }
}
