import Foundation
import GRDB

/// The embedded backend: one SQLite file in WAL mode with `synchronous = FULL`, so a change acknowledged to a
/// caller survives `kill -9` and power loss. GRDB runs the one writer and the readers on its own threads.
public final class SQLiteBackend: StoreBackend {
    let pool: DatabasePool
    public let path: String
    public var dialect: SQLDialect { .sqlite }
    public let clock: @Sendable () -> Date = { Date() }

    /// How commits reach the disk. `full` fsyncs every commit before it is acknowledged (the coordinator always
    /// runs so); `normal` fsyncs only at checkpoints and can lose the last commits on power loss — it exists so a
    /// benchmark can measure what durability costs.
    public enum Synchronous: String, Sendable {
        case full = "FULL"
        case normal = "NORMAL"
    }

    /// Opens (creating if needed) the database at `path`. Migrations run in ``migrate()``.
    public init(path: String, synchronous: Synchronous = .full) throws {
        var configuration = Configuration()
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(synchronous.rawValue)")
            try db.execute(sql: "PRAGMA foreign_keys = ON")
            // Deleted rows are zeroed in their page (at no extra I/O); build secrets are also overwritten in place
            // before they are deleted (see Store+Secrets).
            try db.execute(sql: "PRAGMA secure_delete = FAST")
        }
        configuration.busyMode = .timeout(10)
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            // GRDB switches the writer to `synchronous = NORMAL` when it enables WAL, after `prepareDatabase` ran:
            // set FULL again on the one writer connection, so every commit is fsync'd before it is acknowledged.
            try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = \(synchronous.rawValue)") }
        } catch let error as DatabaseError {
            throw Self.classify(error)
        }
        self.path = path
    }

    public func read<T: Sendable>(_ body: @Sendable (SQLTransaction) throws -> T) async throws -> T {
        do {
            return try await pool.read { db in try body(GRDBTransaction(db)) }
        } catch let error as DatabaseError {
            throw Self.classify(error)
        }
    }

    public func write<T: Sendable>(_ body: @Sendable (SQLTransaction) throws -> T) async throws -> T {
        do {
            return try await pool.write { db in try body(GRDBTransaction(db)) }
        } catch let error as DatabaseError {
            throw Self.classify(error)
        }
    }

    public func migrate() async throws {
        do {
            let applied = try await pool.read { db in try SQLiteSchema.migrator.appliedIdentifiers(db) }
            try SchemaVersions.refuseNewer(applied: Array(applied), database: path)
            try SQLiteSchema.migrator.migrate(pool)
        } catch let error as DatabaseError {
            throw Self.classify(error)
        }
    }

    /// ``migrate()`` for a caller that opens the store synchronously (SQLite opens without waiting on anyone).
    func migrateSynchronously() throws {
        do {
            let applied = try pool.read { db in try SQLiteSchema.migrator.appliedIdentifiers(db) }
            try SchemaVersions.refuseNewer(applied: Array(applied), database: path)
            try SQLiteSchema.migrator.migrate(pool)
        } catch let error as DatabaseError {
            throw Self.classify(error)
        }
    }

    /// One write transaction on the calling thread, for opening the store synchronously.
    func writeSynchronously<T>(_ body: (SQLTransaction) throws -> T) throws -> T {
        do {
            return try pool.write { db in try body(GRDBTransaction(db)) }
        } catch let error as DatabaseError {
            throw Self.classify(error)
        }
    }

    public func close() async { try? pool.close() }

    /// Copies the write-ahead log into the database file and empties it.
    public func checkpoint() throws {
        do {
            try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
        } catch let error as DatabaseError {
            throw Self.classify(error)
        }
    }

    /// The file's journal mode, for checks and diagnostics (always `wal`).
    public func journalMode() throws -> String {
        try pool.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") ?? "" }
    }

    /// `PRAGMA synchronous` of the writer and of a reader connection (2 = FULL), for checks and diagnostics.
    public func synchronousModes() throws -> (writer: Int, reader: Int) {
        let writer = try pool.writeWithoutTransaction { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1 }
        let reader = try pool.read { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1 }
        return (writer, reader)
    }

    static func classify(_ error: DatabaseError) -> SQLError {
        let message = "\(error.resultCode): \(error.message ?? "no message")"
        switch error.resultCode.primaryResultCode {
        case .SQLITE_FULL, .SQLITE_IOERR, .SQLITE_READONLY, .SQLITE_CANTOPEN: return .storage(message)
        case .SQLITE_CONSTRAINT: return .constraint(message)
        default: return .other(message)
        }
    }
}

/// A GRDB connection inside one of its transactions, seen through the store's seam.
final class GRDBTransaction: SQLTransaction {
    let db: Database
    init(_ db: Database) { self.db = db }

    var dialect: SQLDialect { .sqlite }
    var changesCount: Int { db.changesCount }

    func send(_ sql: String, _ arguments: SQLArguments) throws { try query(sql, arguments) }

    @discardableResult
    func query(_ sql: String, _ arguments: SQLArguments) throws -> [SQLRow] {
        let statement = try db.cachedStatement(sql: sql)
        try statement.setArguments(StatementArguments(arguments.values.map(\.databaseValue)))
        guard statement.columnCount > 0 else {
            try statement.execute()
            return []
        }
        // Column names come from the rows: a cached `SELECT *` prepared before a migration added columns is
        // re-prepared by SQLite, and only the rows know the columns it has now.
        let rows = try Row.fetchAll(statement)
        guard let first = rows.first else { return [] }
        let columns = Array(first.columnNames)
        return rows.map { row in SQLRow(columns: columns, values: row.databaseValues.map(SQLValue.init)) }
    }
}

extension SQLValue {
    var databaseValue: DatabaseValue {
        switch self {
        case .null: return .null
        case .integer(let value): return value.databaseValue
        case .real(let value): return value.databaseValue
        case .text(let value): return value.databaseValue
        case .blob(let value): return value.databaseValue
        }
    }

    init(_ value: DatabaseValue) {
        switch value.storage {
        case .null: self = .null
        case .int64(let integer): self = .integer(integer)
        case .double(let real): self = .real(real)
        case .string(let text): self = .text(text)
        case .blob(let data): self = .blob(data)
        }
    }
}
