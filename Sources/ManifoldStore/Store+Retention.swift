import Foundation
import ManifoldAPI
import ManifoldCore

/// What retention removes, and how much per transaction.
///
/// - A finished build's logs and events are removed `logRetention` after it finished; the build, its jobs and
///   attempts (states, digests, reasons) stay, and one `build.pruned` event says what was removed and when.
/// - An attempt's log is removed `logRetention` after the attempt ended even while its build is still open
///   (a list can wait weeks for a registry); a `job.log_pruned` event says so.
/// - An uploaded context is removed once no unfinished build uses it and it was last used (uploaded, named by a
///   submitted build, downloaded by an agent) more than `contextRetention` ago, with the record of who uploaded it.
///
/// Deletes run in transactions of at most `batchSize` rows and about `batchBytes` of log, so the writer is never
/// held for long (SQLite as Debian builds it overwrites deleted content, `secure_delete`, so the bytes count).
public struct RetentionPolicy: Sendable, Equatable {
    /// How long logs and events are kept; nil keeps them forever.
    public var logRetention: TimeInterval?
    /// How long an unused context is kept; nil keeps contexts forever.
    public var contextRetention: TimeInterval?
    /// The most rows one transaction deletes.
    public var batchSize: Int
    /// About the most log bytes one transaction deletes (at least one chunk).
    public var batchBytes: Int
    /// Leftover hidden files (`.upload-…`, `.removing-…`) older than this are deleted.
    public var strayFileAge: TimeInterval

    public init(
        logRetention: TimeInterval? = 30 * 86_400, contextRetention: TimeInterval? = 24 * 3_600, batchSize: Int = 500,
        batchBytes: Int = 4 << 20, strayFileAge: TimeInterval = 3_600
    ) {
        self.logRetention = logRetention
        self.contextRetention = contextRetention
        self.batchSize = max(1, batchSize)
        self.batchBytes = max(1, batchBytes)
        self.strayFileAge = strayFileAge
    }
}

/// What one retention run removed.
public struct RetentionReport: Sendable, Equatable {
    /// Finished builds whose logs and events were removed.
    public var buildsPruned = 0
    /// Attempts whose log was removed (of pruned builds and on their own).
    public var attemptLogsPruned = 0
    public var logChunksDeleted = 0
    /// Log bytes removed, as the attempts had recorded them.
    public var logBytesDeleted: Int64 = 0
    public var eventsDeleted = 0
    public var contextsDeleted = 0
    public var contextBytesDeleted: Int64 = 0
    /// Files in the contexts directory that belonged to nothing: interrupted uploads or removals.
    public var strayFilesDeleted = 0
    /// Stored context chunks that belonged to no context: uploads a replica did not finish.
    public var strayContextChunksDeleted = 0

    public init() {}

    /// Whether the run removed anything at all.
    public var isEmpty: Bool { self == RetentionReport() }
}

extension Store {
    /// Applies `policy` once: finished builds' logs and events, old attempts' logs, unused contexts (rows and
    /// files in `contexts`) and stray files there. Safe to interrupt: a later run finishes what one left.
    public func applyRetention(_ policy: RetentionPolicy, contexts: ContextDirectory?) async throws -> RetentionReport {
        var report = RetentionReport()
        if let age = policy.logRetention {
            let cutoff = now().addingTimeInterval(-age)
            try await pruneFinishedBuilds(before: cutoff, retention: age, limits: policy, into: &report)
            try await pruneAttemptLogs(endedBefore: cutoff, retention: age, limits: policy, into: &report)
        }
        if let contexts {
            if let age = policy.contextRetention {
                try await removeUnusedContexts(
                    lastUsedBefore: now().addingTimeInterval(-age), directory: contexts, batchSize: policy.batchSize,
                    into: &report)
            }
            try await sweepStrayFiles(in: contexts, policy: policy, into: &report)
        }
        try await sweepStrayContextChunks(into: &report, batchSize: policy.batchSize)
        return report
    }

    /// The part of retention that concerns this process's own contexts directory only: stray files, and files of
    /// contexts whose rows are gone (another replica's retention pass removed them). Every replica runs it, also in
    /// the intervals another replica ran ``applyRetention(_:contexts:)`` for the shared database.
    public func sweepLocalContexts(_ policy: RetentionPolicy, contexts: ContextDirectory) async throws -> RetentionReport {
        var report = RetentionReport()
        try await sweepStrayFiles(in: contexts, policy: policy, into: &report)
        return report
    }

    /// How long the chunks of an upload may wait for their context row: an upload copies them in well under this.
    static let contextChunkGrace: TimeInterval = 3_600

    /// Deletes stored context chunks without a context row once they are older than ``contextChunkGrace`` (a
    /// replica died while copying an upload into the database), a batch per transaction.
    func sweepStrayContextChunks(into report: inout RetentionReport, batchSize: Int) async throws {
        let cutoff = Store.timestamp(now().addingTimeInterval(-Self.contextChunkGrace))
        while true {
            let deleted = try await write { db -> Int in
                let stray = try SQLRow.fetchAll(
                    db,
                    sql: """
                        SELECT digest, byteOffset FROM context_chunk
                        WHERE createdAt < ? AND digest NOT IN (SELECT digest FROM context) LIMIT ?
                        """, arguments: [cutoff, batchSize])
                for chunk in stray {
                    try db.execute(
                        sql: "DELETE FROM context_chunk WHERE digest = ? AND byteOffset = ?",
                        arguments: [chunk["digest"] as String, chunk["byteOffset"] as Int64])
                }
                return stray.count
            }
            report.strayContextChunksDeleted += deleted
            if deleted < batchSize { return }
        }
    }

    // MARK: - Logs and events

    /// Builds that finished before `cutoff` and were not pruned since, oldest first.
    func pruneFinishedBuilds(
        before cutoff: Date, retention: TimeInterval, limits: RetentionPolicy, into report: inout RetentionReport
    ) async throws {
        var done: Set<String> = []
        while true {
            let ids = try await read { db in
                try String.fetchAll(
                    db,
                    sql: """
                        SELECT id FROM build
                        WHERE finishedAt IS NOT NULL AND finishedAt < ? AND (prunedAt IS NULL OR prunedAt < finishedAt)
                            AND state IN ('published', 'partially-published', 'failed', 'cancelled')
                        ORDER BY finishedAt LIMIT 50
                        """, arguments: [Store.timestamp(cutoff)])
            }
            let fresh = ids.filter { !done.contains($0) }
            if fresh.isEmpty { return }
            for id in fresh {
                try await pruneBuild(id: id, retention: retention, limits: limits, into: &report)
                done.insert(id)
            }
        }
    }

    /// Removes one build's log chunks and events in batches, then records `build.pruned` in the last transaction.
    func pruneBuild(
        id: String, retention: TimeInterval, limits: RetentionPolicy, into report: inout RetentionReport
    ) async throws {
        let batchSize = limits.batchSize
        let (attempts, lastEvent) = try await read { db in
            let attempts = try SQLRow.fetchAll(
                db,
                sql: """
                    SELECT attempt.epoch, attempt.logSize, attempt.logPrunedAt FROM attempt
                    JOIN job ON job.id = attempt.jobId WHERE job.buildId = ?
                    """, arguments: [id])
            let lastEvent = try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM event WHERE buildId = ?", arguments: [id]) ?? 0
            return (attempts, lastEvent)
        }
        var logBytes: Int64 = 0
        var epochs: [Int64] = []
        for attempt in attempts {
            let epoch: Int64 = attempt["epoch"]
            report.logChunksDeleted += try await deleteLogChunks(epoch: epoch, limits: limits)
            if (attempt["logPrunedAt"] as Double?) == nil, (attempt["logSize"] as Int64) > 0 {
                logBytes += attempt["logSize"]
                epochs.append(epoch)
            }
        }
        // Every event up to the newest one seen now, the previous build.pruned included: one stays, the new one.
        var events = 0
        while true {
            let deleted = try await write { db in
                try db.execute(
                    sql: """
                        DELETE FROM event WHERE id IN (
                            SELECT id FROM event WHERE buildId = ? AND id <= ? ORDER BY id LIMIT ?)
                        """, arguments: [id, lastEvent, batchSize])
                return try db.changesCount
            }
            events += deleted
            if deleted < batchSize { break }
        }
        let at = Store.timestamp(now())
        let pruned = epochs
        let data = try Store.json([
            "logBytes": "\(logBytes)", "events": "\(events)", "retentionDays": Self.days(retention),
        ])
        try await write { db in
            for epoch in pruned {
                try db.execute(sql: "UPDATE attempt SET logPrunedAt = ? WHERE epoch = ?", arguments: [at, epoch])
            }
            try db.execute(sql: "UPDATE build SET prunedAt = ? WHERE id = ?", arguments: [at, id])
            // Inserted directly: the build's updatedAt tells when its state last changed, not when it was pruned.
            try db.execute(
                sql: "INSERT INTO event (buildId, type, data, createdAt) VALUES (?, 'build.pruned', ?, ?)",
                arguments: [id, data, at])
        }
        report.buildsPruned += 1
        report.attemptLogsPruned += epochs.count
        report.logBytesDeleted += logBytes
        report.eventsDeleted += events
    }

    /// Attempts that ended before `cutoff` and still have a log, whatever their build's state.
    func pruneAttemptLogs(
        endedBefore cutoff: Date, retention: TimeInterval, limits: RetentionPolicy, into report: inout RetentionReport
    ) async throws {
        while true {
            let attempts = try await read { db in
                try SQLRow.fetchAll(
                    db,
                    sql: """
                        SELECT attempt.epoch, attempt.number, attempt.logSize, attempt.jobId, job.buildId, job.platform
                        FROM attempt JOIN job ON job.id = attempt.jobId
                        WHERE attempt.logPrunedAt IS NULL AND attempt.logSize > 0 AND attempt.endedAt < ?
                            AND attempt.state IN ('succeeded', 'failed', 'lost', 'cancelled')
                        ORDER BY attempt.endedAt LIMIT 50
                        """, arguments: [Store.timestamp(cutoff)])
            }
            if attempts.isEmpty { return }
            for attempt in attempts {
                let epoch: Int64 = attempt["epoch"]
                report.logChunksDeleted += try await deleteLogChunks(epoch: epoch, limits: limits)
                let at = Store.timestamp(now())
                let arguments: SQLArguments = [
                    attempt["buildId"] as String, attempt["jobId"] as String, attempt["platform"] as String,
                    try Store.json([
                        "attempt": "\(attempt["number"] as Int)", "epoch": "\(epoch)",
                        "logBytes": "\(attempt["logSize"] as Int64)", "retentionDays": Self.days(retention),
                    ]), at,
                ]
                try await write { db in
                    try db.execute(sql: "UPDATE attempt SET logPrunedAt = ? WHERE epoch = ?", arguments: [at, epoch])
                    try db.execute(
                        sql: """
                            INSERT INTO event (buildId, jobId, platform, type, data, createdAt)
                            VALUES (?, ?, ?, 'job.log_pruned', ?, ?)
                            """, arguments: arguments)
                }
                report.attemptLogsPruned += 1
                report.logBytesDeleted += attempt["logSize"]
            }
        }
    }

    /// Deletes an attempt's log chunks, at most `batchSize` rows and about `batchBytes` per transaction.
    /// Returns how many went.
    func deleteLogChunks(epoch: Int64, limits: RetentionPolicy) async throws -> Int {
        var total = 0
        while true {
            let deleted = try await write { db -> Int in
                // length() of a blob comes from the record header: the chunks are not read.
                let rows = try SQLRow.fetchAll(
                    db,
                    sql: "SELECT \"offset\", length(data) AS size FROM log_chunk WHERE epoch = ? ORDER BY \"offset\" LIMIT ?",
                    arguments: [epoch, limits.batchSize])
                var count = 0
                var last: Int64 = -1
                var bytes = 0
                for row in rows where bytes < limits.batchBytes {
                    last = row["offset"]
                    bytes += row["size"] as Int
                    count += 1
                }
                guard count > 0 else { return 0 }
                try db.execute(sql: "DELETE FROM log_chunk WHERE epoch = ? AND \"offset\" <= ?", arguments: [epoch, last])
                return count
            }
            if deleted == 0 { return total }
            total += deleted
        }
    }

    /// When retention removed the log of the attempt `epoch`, or nil if it did not.
    public func logRemoval(epoch: Int64) async throws -> Date? {
        try await read { db in
            Store.date(try Double.fetchOne(db, sql: "SELECT logPrunedAt FROM attempt WHERE epoch = ?", arguments: [epoch]))
        }
    }

    static func days(_ interval: TimeInterval) -> String {
        let days = interval / 86_400
        return days == days.rounded() ? "\(Int(days))" : String(format: "%.2f", days)
    }

    // MARK: - Contexts

    /// Deletes the rows of contexts no unfinished build uses and nobody used since `cutoff`, then their files.
    func removeUnusedContexts(
        lastUsedBefore cutoff: Date, directory: ContextDirectory, batchSize: Int, into report: inout RetentionReport
    ) async throws {
        while true {
            let removed = try await write { db -> [(digest: String, size: Int64)] in
                // In the same transaction as the delete: a build submitted with the context either committed first
                // (the context is in use or was just used) or finds it gone and is refused.
                let needed = Set(
                    try String.fetchAll(db, sql: "SELECT spec FROM build WHERE state IN ('queued', 'running', 'publishing')")
                        .compactMap { text -> String? in
                            guard case .upload(let digest) = try Store.decode(BuildSpec.self, text).context else { return nil }
                            return digest.description
                        })
                let candidates = try SQLRow.fetchAll(
                    db,
                    sql: """
                        SELECT digest, size FROM context WHERE COALESCE(lastUsedAt, createdAt) < ?
                        ORDER BY COALESCE(lastUsedAt, createdAt) LIMIT ?
                        """, arguments: [Store.timestamp(cutoff), batchSize + needed.count])
                let doomed = candidates.map { (digest: $0["digest"] as String, size: $0["size"] as Int64) }
                    .filter { !needed.contains($0.digest) }.prefix(batchSize)
                for context in doomed {
                    try db.execute(sql: "DELETE FROM context WHERE digest = ?", arguments: [context.digest])
                    try db.execute(sql: "DELETE FROM context_upload WHERE digest = ?", arguments: [context.digest])
                    try db.execute(sql: "DELETE FROM context_chunk WHERE digest = ?", arguments: [context.digest])
                }
                return Array(doomed)
            }
            for context in removed {
                guard let digest = try? Digest(parsing: context.digest) else { continue }
                _ = try await directory.remove(digest) { [self] in try await self.hasContext(digest: digest) }
                report.contextsDeleted += 1
                report.contextBytesDeleted += context.size
            }
            if removed.count < batchSize { return }
        }
    }

    /// Deletes what an interrupted upload or removal left behind, and context files with no row (a crash between
    /// deleting a row and its file) once they are older than the context retention.
    func sweepStrayFiles(
        in directory: ContextDirectory, policy: RetentionPolicy, into report: inout RetentionReport
    )
        async throws
    {
        let at = now()
        for entry in try await directory.entries() {
            let age = at.timeIntervalSince(entry.modified)
            if entry.name.hasPrefix(ContextDirectory.uploadPrefix) || entry.name.hasPrefix(ContextDirectory.removalPrefix)
                || entry.name.hasPrefix(ContextDirectory.probePrefix)
            {
                if age > policy.strayFileAge {
                    try await directory.delete(named: entry.name)
                    report.strayFilesDeleted += 1
                }
            } else if let digest = ContextDirectory.digest(ofFileNamed: entry.name), let retention = policy.contextRetention,
                age > max(retention, policy.strayFileAge), try await !hasContext(digest: digest)
            {
                // Moved aside and checked again, as for unused contexts: an upload of the same digest meanwhile
                // keeps its file.
                if try await directory.remove(digest, stillRecorded: { try await self.hasContext(digest: digest) }) {
                    report.strayFilesDeleted += 1
                }
            }
        }
    }

    /// Marks a context as used now (a check before a submission, an upload of bytes already stored, an agent's
    /// download). Returns whether the context is recorded.
    ///
    /// A read first, and a write only when the last use is older than ``contextTouchInterval``: the agents of one
    /// build download its context at once, and each write waits for the writer and its flush to disk. Retention keeps
    /// a context at least an hour after its last use, so a use recorded up to a minute late changes nothing there.
    public func touchContext(digest: Digest) async throws -> Bool {
        let at = Store.timestamp(now())
        let lastUsed = try await read { db in
            try Double.fetchOne(
                db, sql: "SELECT COALESCE(lastUsedAt, createdAt) FROM context WHERE digest = ?",
                arguments: [digest.description])
        }
        guard let lastUsed else { return false }
        if lastUsed > at - Self.contextTouchInterval { return true }
        return try await write { db in
            try db.execute(
                sql: "UPDATE context SET lastUsedAt = ? WHERE digest = ?", arguments: [at, digest.description])
            return try db.changesCount > 0
        }
    }

    /// How stale a context's last use may be before ``touchContext(digest:)`` writes it again, in seconds.
    static let contextTouchInterval: TimeInterval = 60
}
