import Foundation

/// The SQL engines the store runs on. Statements are written once, in the subset both understand (`?`
/// placeholders, `ON CONFLICT … DO UPDATE`, `RETURNING`, double-quoted identifiers for reserved words); where the
/// engines differ, the domain code asks ``SQLTransaction/dialect``.
public enum SQLDialect: String, Sendable {
    case sqlite
    case postgres
}

/// One open transaction of a store backend. Domain code runs synchronously inside it on a thread the backend
/// owns (never on the Swift concurrency pool); a write transaction commits when the closure returns and rolls
/// back when it throws.
public protocol SQLTransaction: AnyObject {
    var dialect: SQLDialect { get }
    /// Runs a statement and returns the rows it produced (none for most writes).
    @discardableResult
    func query(_ sql: String, _ arguments: SQLArguments) throws -> [SQLRow]
    /// Runs a statement whose rows nobody reads. A backend may send it and go on without waiting for the answer
    /// (PostgreSQL pipelines it behind the statements before): a failure is then thrown by the next statement that
    /// is waited for, by ``changesCount`` or by the commit — always inside the same transaction, which rolls back.
    func send(_ sql: String, _ arguments: SQLArguments) throws
    /// Rows changed by the last statement (`UPDATE`, `DELETE`, `INSERT`); throws what a statement sent before it
    /// failed with.
    var changesCount: Int { get throws }
    /// Waits, for the rest of this transaction, until no other write of build `buildId` runs, before this one reads
    /// that build's rows. Only a write that may run beside others needs it (``StoreBackend/write(agent:_:)``), and
    /// there it must come before any read of the build's rows and before any row lock that such a write of another
    /// build may wait for. Nothing to do where the transaction runs alone (SQLite; PostgreSQL's ordinary writes); an
    /// error in a write whose scope does not cover other builds (one build's, a submission).
    func lockBuild(_ buildId: String) throws
    /// Waits, for the rest of this transaction, until no other write holds image `image`'s tags (its `tag_owner` and
    /// `tag_claim` rows, and the outbox rows waiting for one of them), before this one reads or changes them. Needed
    /// by a write scoped to one build (``StoreBackend/write(buildOfJob:_:)``) or a poll's, after its builds' locks;
    /// nothing to do where the transaction runs alone, an error in a submission.
    func lockImage(_ image: String) throws
}

extension SQLTransaction {
    public func lockBuild(_ buildId: String) throws {}
    public func lockImage(_ image: String) throws {}

    /// Runs a statement that produces no rows the caller needs (see ``send(_:_:)``).
    public func execute(sql: String, arguments: SQLArguments = []) throws {
        try send(sql, arguments)
    }

    /// The larger of two SQL expressions: `MAX(a, b)` in SQLite, `GREATEST(a, b)` in PostgreSQL.
    public func greatest(_ first: String, _ second: String) -> String {
        dialect == .sqlite ? "MAX(\(first), \(second))" : "GREATEST(\(first), \(second))"
    }

    /// Tries to take the lock `lockClass` for the rest of this transaction, without waiting; answers whether it got it.
    /// On PostgreSQL a transaction-level advisory lock (`pg_try_advisory_xact_lock`), keyed by `lockClass` and the
    /// current schema (like the migration lock), so stores in other schemas of one database never contend; it ends
    /// with the transaction, so pooled connections never keep it. On SQLite always granted: one writer at a time.
    public func tryTransactionLock(_ lockClass: Int32) throws -> Bool {
        guard dialect == .postgres else { return true }
        return try Bool.fetchOne(
            self, sql: "SELECT pg_try_advisory_xact_lock(\(lockClass), hashtext(coalesce(current_schema(), '')))") ?? false
    }

    /// Runs several statements separated by `;`, without arguments (schema changes).
    public func executeScript(_ sql: String) throws {
        for statement in SQLScript.statements(sql) { try query(statement, []) }
    }
}

extension SQLRow {
    public static func fetchAll(_ db: SQLTransaction, sql: String, arguments: SQLArguments = []) throws -> [SQLRow] {
        try db.query(sql, arguments)
    }

    public static func fetchOne(_ db: SQLTransaction, sql: String, arguments: SQLArguments = []) throws -> SQLRow? {
        try db.query(sql, arguments).first
    }
}

extension SQLDecodable {
    /// The first column of the first row, or nil when there is no row or it holds NULL.
    public static func fetchOne(_ db: SQLTransaction, sql: String, arguments: SQLArguments = []) throws -> Self? {
        guard let row = try db.query(sql, arguments).first, let value = row.values.first else { return nil }
        if case .null = value { return nil }
        guard let decoded = Self.decode(value) else { throw SQLError.unexpectedValue(value, expected: "\(Self.self)", sql: sql) }
        return decoded
    }

    /// The first column of every row (NULLs left out).
    public static func fetchAll(_ db: SQLTransaction, sql: String, arguments: SQLArguments = []) throws -> [Self] {
        try db.query(sql, arguments).compactMap { row -> Self? in
            guard let value = row.values.first else { return nil }
            if case .null = value { return nil }
            guard let decoded = Self.decode(value) else {
                throw SQLError.unexpectedValue(value, expected: "\(Self.self)", sql: sql)
            }
            return decoded
        }
    }
}

/// A failure reported by a backend, classified so the store's rules do not depend on one engine's error codes.
public enum SQLError: Error, CustomStringConvertible, Sendable {
    /// The storage cannot take writes (disk full, I/O error, read-only): nothing of the transaction was kept.
    case storage(String)
    /// A constraint (unique, foreign key, check) refused the change.
    case constraint(String)
    /// The database is unreachable (connection refused or lost); the transaction did not commit.
    case unavailable(String)
    /// A column held a value of another type than the store's SQL expects.
    case unexpectedValue(SQLValue, expected: String, sql: String)
    /// Anything else the engine refused, with its message.
    case other(String)

    public var description: String {
        switch self {
        case .storage(let message), .constraint(let message), .unavailable(let message), .other(let message):
            return message
        case .unexpectedValue(let value, let expected, let sql):
            return "expected \(expected) but the database returned \(value) for: \(sql)"
        }
    }
}

/// Splits a schema script at the `;` that end statements, leaving those inside quotes, comments and
/// `$$`-quoted function bodies alone.
enum SQLScript {
    static func statements(_ script: String) -> [String] {
        var statements: [String] = []
        var current = ""
        var characters = Array(script)[...]
        var quote: Character?
        var dollarQuoted = false
        while let character = characters.popFirst() {
            if dollarQuoted {
                current.append(character)
                if character == "$", characters.first == "$" {
                    current.append(characters.removeFirst())
                    dollarQuoted = false
                }
                continue
            }
            if let open = quote {
                current.append(character)
                if character == open { quote = nil }
                continue
            }
            switch character {
            case "'", "\"":
                quote = character
                current.append(character)
            case "$" where characters.first == "$":
                current.append(character)
                current.append(characters.removeFirst())
                dollarQuoted = true
            case "-" where characters.first == "-":
                while let next = characters.first, next != "\n" { characters.removeFirst() }
            case ";":
                let statement = current.trimmingCharacters(in: .whitespacesAndNewlines)
                if !statement.isEmpty { statements.append(statement) }
                current = ""
            default:
                current.append(character)
            }
        }
        let last = current.trimmingCharacters(in: .whitespacesAndNewlines)
        if !last.isEmpty { statements.append(last) }
        return statements
    }
}
