import Foundation
import ManifoldAPI

extension Store {
    /// A change to other rows that an event's append carries (``Store/appendEvent(_:buildId:jobId:platform:type:data:along:)``).
    struct SQLChange {
        var sql: String
        var arguments: SQLArguments
    }

    /// Appends to a build's event log inside the caller's transaction, and marks the build updated; the changes in
    /// `along` run first.
    ///
    /// On PostgreSQL all of it is one statement (each change and the build's time as a data-modifying `WITH` entry,
    /// which runs whether or not the insert reads it): every statement of a write costs a round trip while the
    /// writers' lock is held, and nearly every write appends an event. The entries see one snapshot, so no two of them
    /// may change the same row, and in `SET` a column names its value before the update. SQLite runs in process, where
    /// a statement more costs next to nothing: each change runs on its own, in order.
    func appendEvent(
        _ db: SQLTransaction, buildId: String, jobId: String? = nil, platform: String? = nil, type: String,
        data: [String: String], along changes: [SQLChange] = []
    ) throws {
        let at = Store.timestamp(now())
        let event: SQLArguments = [buildId, jobId, platform, type, try Store.json(data), at]
        let insert = "INSERT INTO event (buildId, jobId, platform, type, data, createdAt) VALUES (?, ?, ?, ?, ?, ?)"
        let touch = "UPDATE build SET updatedAt = ? WHERE id = ?"
        switch db.dialect {
        case .postgres:
            let entries = changes.enumerated().map { "change\($0.offset) AS (\($0.element.sql))" } + ["touched AS (\(touch))"]
            try db.execute(
                sql: "WITH " + entries.joined(separator: ",\n    ") + "\n" + insert,
                arguments: SQLArguments(
                    values: changes.flatMap(\.arguments.values) + [at.sqlValue, buildId.sqlValue] + event.values))
        case .sqlite:
            for change in changes { try db.execute(sql: change.sql, arguments: change.arguments) }
            try db.execute(sql: insert, arguments: event)
            try db.execute(sql: touch, arguments: [at, buildId])
        }
    }

    /// Appends an event for a job of a build in its own transaction (services reporting progress).
    public func recordEvent(buildId: String, jobId: String, type: String, data: [String: String]) async throws {
        try await write { db in
            let platform = try String.fetchOne(db, sql: "SELECT platform FROM job WHERE id = ?", arguments: [jobId])
            try self.appendEvent(db, buildId: buildId, jobId: jobId, platform: platform, type: type, data: data)
        }
    }

    /// A build's events after `afterId` (exclusive), oldest first: the source of progress streams.
    public func events(buildId: String, after afterId: Int64 = 0, limit: Int = 500) async throws -> [BuildEvent] {
        try await eventPage(buildId: buildId, after: afterId, limit: limit).events
    }

    /// A build's events after `afterId` and whether they are its last, read together: a stream that has sent a page
    /// whose `isLast` is true has sent every event of the build's final transition and may end.
    public struct EventPage: Sendable {
        public var events: [BuildEvent]
        /// The build was final when this page was read and the page holds every event after `afterId`. Events
        /// added to a final build later (retention's notes) are not waited for.
        public var isLast: Bool
    }

    /// The events after `afterId` (at most `limit`, oldest first) and whether the build was final, in one snapshot:
    /// the final state commits with the final transition's events, so a page read with it holds them all.
    public func eventPage(buildId: String, after afterId: Int64 = 0, limit: Int = 500) async throws -> EventPage {
        let limit = max(1, min(limit, 5000))
        return try await read { db in
            // The state first: on a backend whose statements took snapshots of their own, the events read after it
            // would still hold the final transition's.
            guard let state = try String.fetchOne(db, sql: "SELECT state FROM build WHERE id = ?", arguments: [buildId])
            else {
                throw StoreError.notFound(kind: "build", id: buildId)
            }
            let events = try SQLRow.fetchAll(
                db, sql: "SELECT * FROM event WHERE buildId = ? AND id > ? ORDER BY id LIMIT ?",
                arguments: [buildId, afterId, limit]
            ).map { row in
                BuildEvent(
                    id: row["id"], buildId: row["buildId"], jobId: row["jobId"], platform: row["platform"], type: row["type"],
                    data: (try? Store.decode([String: String].self, row["data"])) ?? [:],
                    time: Store.date(row["createdAt"]) ?? Date())
            }
            let final = BuildState(rawValue: state)?.isFinal ?? false
            return EventPage(events: events, isLast: final && events.count < limit)
        }
    }

    /// The newest event id of all builds, for waking streams.
    public func latestEventID() async throws -> Int64 {
        try await read { db in try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM event") ?? 0 }
    }
}
