import Foundation

/// Periodic work every replica would otherwise repeat; one replica per interval runs a pass, recorded in the
/// task's `periodic_task` row.
public enum PeriodicTask: String, Sendable, CaseIterable {
    /// Removing old logs, events and contexts (``Store/applyRetention(_:contexts:)``).
    case retention

    /// The transaction-level advisory lock a replica takes on PostgreSQL before reading the task's row ("MFRT").
    var lockClass: Int32 {
        switch self {
        case .retention: 0x4D46_5254
        }
    }
}

extension Store {
    /// Takes `task`'s turn for this replica if no replica ran it within the last `interval` (by the store's clock),
    /// recording the run; answers whether this replica should run a pass now.
    ///
    /// On PostgreSQL the transaction first tries the task's advisory lock and answers false at once when another
    /// replica holds it (deciding the same turn right now); the row then decides. On SQLite the row alone does.
    public func claimPeriodicTask(_ task: PeriodicTask, interval: TimeInterval) async throws -> Bool {
        let at = Store.timestamp(now())
        return try await write { db -> Bool in
            guard try db.tryTransactionLock(task.lockClass) else { return false }
            if let last = try Double.fetchOne(
                db, sql: "SELECT lastRunAt FROM periodic_task WHERE name = ?", arguments: [task.rawValue]),
                last > at - interval
            {
                return false
            }
            try db.execute(
                sql: """
                    INSERT INTO periodic_task (name, lastRunAt, runBy) VALUES (?, ?, ?)
                    ON CONFLICT (name) DO UPDATE SET lastRunAt = excluded.lastRunAt, runBy = excluded.runBy
                    """, arguments: [task.rawValue, at, replica])
            return true
        }
    }

    /// When `task` last ran and on which replica, if ever.
    public func lastRun(of task: PeriodicTask) async throws -> (at: Date, replica: String)? {
        try await read { db in
            guard
                let row = try SQLRow.fetchOne(
                    db, sql: "SELECT lastRunAt, runBy FROM periodic_task WHERE name = ?", arguments: [task.rawValue])
            else { return nil }
            return (Date(timeIntervalSince1970: row["lastRunAt"]), row["runBy"])
        }
    }
}
