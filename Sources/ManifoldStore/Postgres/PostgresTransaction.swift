import Foundation
import Logging
import NIOCore
import PostgresNIO
import Synchronization

/// A PostgreSQL connection inside one of the store's transactions, seen through the store's seam. Used only on
/// its session's thread; it records what went wrong so the session can tell a conflict (run the transaction
/// again) and a lost connection (reconnect) from an error of the statement.
final class PostgresTransaction: SQLTransaction {
    let connection: PostgresConnection
    let shared: PostgresShared

    var dialect: SQLDialect { .postgres }
    /// Rows changed by the last INSERT, UPDATE or DELETE (a SELECT leaves it as it was, as SQLite's `changes()`).
    private var lastChanges = 0
    /// A statement failed with SQLSTATE 40001 or 40P01: the transaction is void and may run again.
    private(set) var serializationFailed = false
    /// The connection failed or was closed by the server.
    private(set) var connectionLost = false
    /// `COMMIT` reached the wire: after a lost connection, the outcome is unknown. (PostgresNIO writes a statement
    /// only once the one before it was answered, so a COMMIT behind a statement that failed never left.)
    private(set) var commitSent = false
    /// The first failure's message, for the error after giving up.
    private(set) var failureMessage: String?
    private var firstFailure: SQLError?
    /// Statements sent and not yet answered, oldest first. PostgresNIO sends each as soon as the one before is
    /// answered, on its event loop, so the session thread waits once for several statements instead of once each.
    private var inFlight: [Sent] = []

    private struct Sent {
        let answer: EventLoopFuture<Answer>
        let sql: String
        let timedOut: TimeoutFlag
        let kind: Kind

        enum Kind {
            case unnamed, preparation, execution
        }
    }

    /// A statement's answer, from either of PostgresNIO's ways of running one.
    struct Answer: Sendable {
        /// The command tag's command (`SELECT`, `UPDATE`, …) and the rows it changed, for an unnamed statement.
        var command: String?
        var rowsAffected: Int?
        var rows: [PostgresRow]
        /// The rows of a prepared statement's execution: binary, whatever their columns say (its Bind asks for
        /// binary results, while the columns come from the preparation's Describe, which knows no format yet).
        var binaryRows = false
        /// The statement a preparation made.
        var prepared: PreparedQuery?
    }

    /// The connection's prepared statements, when this transaction may use them (see ``PreparedStatements``).
    private let preparedStatements: PreparedStatements?
    /// Statements sent unnamed in this transaction, to prepare after its COMMIT (``sendPrepared(_:_:)``).
    private var statementsToPrepare: [String] = []
    /// The execution of a prepared statement was refused because the schema changed under it (SQLSTATE 0A000 from
    /// `RevalidateCachedQuery`: "cached plan must not change result type") or the statement is gone from the server
    /// (26000: a `DEALLOCATE ALL` or `DISCARD ALL` on the connection): the connection, with every statement prepared on
    /// it, is dropped and the transaction run again on a new one.
    private(set) var preparedStatementsStale = false

    /// The advisory lock class of builds' locks when the body takes them itself (``PostgresBackend/write(agent:_:)``);
    /// nil when the transaction's locks were all taken at its start.
    var buildLockClass: Int32?
    /// The advisory lock class of images' tags, for a write scoped to one build (``lockImage(_:)``); nil otherwise.
    var imageLockClass: Int32?
    /// The locks taken by ``lockBuild(_:)`` and ``lockImage(_:)`` so far, as `class/key`.
    private var lockedKeys: Set<String> = []
    /// The transaction holds the writers' lock shared: it runs beside other writes, and a lock it has no class for is
    /// a rule reading rows outside its scope (an error, never a silent no-op).
    var runsBesideOtherWrites = false

    init(connection: PostgresConnection, shared: PostgresShared, preparedStatements: PreparedStatements? = nil) {
        self.connection = connection
        self.shared = shared
        self.preparedStatements = preparedStatements
    }

    var changesCount: Int {
        get throws {
            _ = try settle()
            return lastChanges
        }
    }

    /// Sent without waiting: the statement after it waits for the lock too, and PostgreSQL takes its snapshot (at
    /// `READ COMMITTED`, one per statement) only once the lock is held. The key is the one
    /// ``PostgresBackend/write(buildOfJob:_:)`` takes for the build.
    func lockBuild(_ buildId: String) throws {
        try lock(buildLockClass, buildId, reaching: "build \(buildId)")
    }

    /// Sent without waiting, as ``lockBuild(_:)``.
    func lockImage(_ image: String) throws {
        try lock(imageLockClass, image, reaching: "the tags of \(image)")
    }

    /// Takes the lock `key` of `lockClass` once per transaction; without a class, nothing where the transaction runs
    /// alone and an error where it runs beside others (a rule reaching rows outside its scope).
    private func lock(_ lockClass: Int32?, _ key: String, reaching what: String) throws {
        guard let lockClass else {
            guard !runsBesideOtherWrites else {
                throw SQLError.other(
                    "a write that runs beside others reached \(what), which its scope does not cover; it must be an "
                        + "ordinary write")
            }
            return
        }
        guard lockedKeys.insert("\(lockClass)/\(key)").inserted else { return }
        try send("SELECT pg_advisory_xact_lock(\(lockClass), hashtext(current_schema() || '/' || ?))", [key])
    }

    @discardableResult
    func query(_ sql: String, _ arguments: SQLArguments) throws -> [SQLRow] {
        if try !enqueuePrepared(sql, arguments) { try enqueue(sql, arguments) }
        guard let result = try settle() else { return [] }
        return try result.rows.map { row in
            var columns: [String] = []
            var values: [SQLValue] = []
            columns.reserveCapacity(row.count)
            values.reserveCapacity(row.count)
            for var cell in row {
                if result.binaryRows { cell.format = .binary }
                columns.append(cell.columnName)
                values.append(try Self.decode(cell, sql: sql))
            }
            return SQLRow(columns: columns, values: values)
        }
    }

    /// Runs a `SELECT` whose rows are waited for as a statement prepared on this connection: PostgreSQL parses and
    /// plans it once per connection instead of at every execution (planning was half of the server's time per
    /// statement). Its second use on a connection prepares it and waits for that (``PreparedStatements/mayPrepare(_:)``).
    /// Returns false where the statement runs unnamed instead: outside a store transaction, for any other statement,
    /// at its first use, or once the connection holds ``PreparedStatements/limit`` statements.
    private func enqueuePrepared(_ sql: String, _ arguments: SQLArguments) throws -> Bool {
        guard let preparedStatements, StatementCache.isSelect(sql) else { return false }
        let statement = shared.statements.translate(sql)
        guard statement.placeholders == arguments.values.count else { return false }
        let text = statement.typedText(for: arguments.values)
        let query: PreparedQuery
        if let known = preparedStatements.statement(for: text) {
            query = known
        } else {
            guard preparedStatements.mayPrepare(text) else { return false }
            dispatch(sql: sql, kind: .preparation) { connection in
                connection.prepare(query: text).map { Answer(rows: [], prepared: $0) }
            }
            guard let made = try settle()?.prepared else {
                throw SQLError.other("PostgreSQL at \(shared.configuration.address) prepared no statement for: \(sql)")
            }
            preparedStatements.record(made, for: text)
            query = made
        }
        let binds = arguments.values.map(Self.data)
        dispatch(sql: sql, kind: .execution) { _ in
            query.execute(binds).map { Answer(command: "SELECT", rows: $0, binaryRows: true) }
        }
        return true
    }

    func send(_ sql: String, _ arguments: SQLArguments) throws {
        if try !sendPrepared(sql, arguments) { try enqueue(sql, arguments) }
    }

    /// Sends a `SELECT`, `INSERT` or `UPDATE` whose rows nobody reads (a lock, a write) as a statement prepared on
    /// this connection; a write with `RETURNING 1`, so that its rows count what it changed (the prepared path's
    /// answer has no command tag). Until then it runs unnamed; the transaction of its second use prepares it after
    /// its COMMIT (``commit()``), outside any transaction, where a preparation that fails changes nothing. Returns
    /// false where the statement runs unnamed.
    private func sendPrepared(_ sql: String, _ arguments: SQLArguments) throws -> Bool {
        guard let preparedStatements else { return false }
        let command: String
        let suffix: String
        if StatementCache.isSelect(sql) {
            (command, suffix) = ("SELECT", "")
        } else if let write = StatementCache.countedWrite(sql) {
            (command, suffix) = (write, "\nRETURNING 1")
        } else {
            return false
        }
        let statement = shared.statements.translate(sql)
        guard statement.placeholders == arguments.values.count else { return false }
        let text = statement.typedText(for: arguments.values) + suffix
        guard let query = preparedStatements.statement(for: text) else {
            if !statementsToPrepare.contains(text) && preparedStatements.mayPrepare(text) {
                statementsToPrepare.append(text)
            }
            return false
        }
        let binds = arguments.values.map(Self.data)
        dispatch(sql: sql, kind: .execution) { _ in
            query.execute(binds).map { rows in
                command == "SELECT"
                    ? Answer(command: command, rows: [], binaryRows: true)
                    : Answer(command: command, rowsAffected: rows.count, rows: [])
            }
        }
        return true
    }

    private func enqueue(_ sql: String, _ arguments: SQLArguments) throws {
        let statement = shared.statements.translate(sql)
        guard statement.placeholders == arguments.values.count else {
            throw SQLError.other(
                "the statement has \(statement.placeholders) placeholders but \(arguments.values.count) arguments: \(sql)")
        }
        var binds = PostgresBindings(capacity: arguments.values.count)
        for value in arguments.values { Self.bind(value, to: &binds) }
        dispatch(PostgresQuery(unsafeSQL: statement.text, binds: binds), sql: sql)
    }

    /// The binary form of `value` for a prepared statement's execution (see ``bind(_:to:)``).
    static func data(_ value: SQLValue) -> PostgresData {
        switch value {
        case .null: return .null
        case .integer(let integer):
            return PostgresData(type: .int8, value: ByteBuffer(integer: integer, endianness: .big))
        case .real(let real):
            return PostgresData(type: .float8, value: ByteBuffer(integer: real.bitPattern, endianness: .big))
        case .text(let text): return PostgresData(type: .text, value: ByteBuffer(string: text))
        case .blob(let data): return PostgresData(type: .bytea, value: ByteBuffer(bytes: data))
        }
    }

    /// Runs `sql` as written (`$n` placeholders, no translation), e.g. a statement outside any transaction.
    func run(sql: String, arguments: [SQLValue]) throws {
        var binds = PostgresBindings(capacity: arguments.count)
        for value in arguments { Self.bind(value, to: &binds) }
        dispatch(PostgresQuery(unsafeSQL: sql, binds: binds), sql: sql)
        _ = try settle()
    }

    /// Runs transaction-control statements (`BEGIN`, `ROLLBACK`), sent together and waited for once.
    func control(_ statements: String...) throws {
        for sql in statements { dispatch(PostgresQuery(unsafeSQL: sql), sql: sql) }
        _ = try settle()
    }

    /// Sends transaction-control statements (`BEGIN …`, the writers' lock) without waiting: the transaction's first
    /// statement that is waited for, or its `COMMIT` or `ROLLBACK`, waits for them too, and a failure among them is
    /// thrown there (statements behind a failed one fail as well).
    func sendControl(_ statements: String...) {
        for sql in statements { dispatch(PostgresQuery(unsafeSQL: sql), sql: sql) }
    }

    /// Sends `COMMIT` of a read-only transaction without waiting, returning the answer to wait for later. Statements
    /// still in flight are waited for first, so a failure among them (a write the transaction refused) is thrown
    /// here. Nothing a read-only transaction read depends on its COMMIT; the connection answers in order, so the
    /// session's next transaction runs behind it.
    func sendReadOnlyCommit() throws -> EventLoopFuture<Answer> {
        if !inFlight.isEmpty { _ = try settle() }
        dispatch(PostgresQuery(unsafeSQL: "COMMIT"), sql: "COMMIT")
        return inFlight.removeLast().answer
    }

    /// Sends `ROLLBACK` behind whatever is still in flight; throws only when the ROLLBACK itself failed (a statement
    /// before it that failed is why the transaction is being rolled back).
    func rollback() throws {
        dispatch(PostgresQuery(unsafeSQL: "ROLLBACK"), sql: "ROLLBACK")
        let batch = inFlight
        inFlight = []
        let outcome = wait(for: batch)
        if outcome.results.last ?? nil == nil {
            throw outcome.failure?.error ?? SQLError.other("ROLLBACK was not answered")
        }
    }

    /// Sends `COMMIT` behind whatever is still in flight and waits for all of it. PostgreSQL answers a `COMMIT` of a
    /// transaction that an earlier error aborted with `ROLLBACK` instead of an error; that is reported as the earlier
    /// error.
    func commit() throws {
        dispatch(PostgresQuery(unsafeSQL: "COMMIT"), sql: "COMMIT")
        let commitIndex = inFlight.count - 1
        // Statements sent unnamed are prepared behind the COMMIT, each once per connection.
        let preparing = statementsToPrepare
        statementsToPrepare = []
        for text in preparing {
            dispatch(sql: text, kind: .preparation) { connection in
                connection.prepare(query: text).map { Answer(rows: [], prepared: $0) }
            }
        }
        // Statements a renewal replaced go after them; a failure there changes nothing either (the connection's end
        // deallocates them all the same).
        for retired in preparedStatements?.takeRetired() ?? [] {
            dispatch(sql: "DEALLOCATE", kind: .preparation) { _ in retired.deallocate().map { Answer(rows: []) } }
        }
        let batch = inFlight
        inFlight = []
        let outcome = wait(for: batch)
        for (offset, text) in preparing.enumerated() {
            if let made = outcome.results[commitIndex + 1 + offset]?.prepared {
                preparedStatements?.record(made, for: text)
            } else {
                preparedStatements?.refuse(text)
            }
        }
        // Statements before COMMIT all answered: COMMIT was written, and a connection lost now leaves it unknown.
        commitSent = (outcome.failure?.index ?? Int.max) >= commitIndex
        // A preparation after the COMMIT that failed leaves the transaction as it was.
        if let failure = outcome.failure, failure.index <= commitIndex { throw failure.error }
        if outcome.results[commitIndex]?.command == "ROLLBACK" {
            throw firstFailure
                ?? SQLError.other("PostgreSQL at \(shared.configuration.address) rolled the transaction back at COMMIT")
        }
    }

    /// Hands an unnamed statement to the connection without waiting (``dispatch(sql:kind:_:)``).
    private func dispatch(_ query: PostgresQuery, sql: String) {
        dispatch(sql: sql, kind: .unnamed) { connection in
            connection.query(query, logger: self.shared.logger).map { result in
                Answer(command: result.metadata.command, rowsAffected: result.metadata.rows, rows: result.rows)
            }
        }
    }

    /// Hands a statement to the connection without waiting: `start` writes it to the connection, which sends it once
    /// the statements before it were answered. Its deadline starts now: the watchdog closes the connection if
    /// PostgreSQL has not answered within `query_timeout`.
    private func dispatch(
        sql: String, kind: Sent.Kind, _ start: (PostgresConnection) -> EventLoopFuture<Answer>
    ) {
        let timeout = TimeAmount.seconds(Int64(shared.configuration.queryTimeout))
        let connection = self.connection
        let settled = TimeoutFlag()
        let timedOut = TimeoutFlag()
        // The session waits for whichever comes first, the answer or the deadline: closing the connection at the
        // deadline is not enough on its own, since a query on a connection whose peer went silent mid-statement was
        // seen never to complete after the close (the session thread, and the store with it, hung for good).
        let outcome = connection.eventLoop.makePromise(of: Answer.self)
        let watchdog = connection.eventLoop.scheduleTask(in: timeout) {
            guard settled.settle() else { return }
            _ = timedOut.settle()
            outcome.fail(QueryDeadlineExceeded())
            connection.closeInBackground()
        }
        start(connection).whenComplete { result in
            watchdog.cancel()
            // Both closures run on the connection's event loop: the flag decides which one completes the promise.
            guard settled.settle() else { return }
            outcome.completeWith(result)
        }
        inFlight.append(Sent(answer: outcome.futureResult, sql: sql, timedOut: timedOut, kind: kind))
    }

    /// Waits for every statement in flight; returns the last one's answer (nil when none was in flight). When one
    /// failed, throws the transaction's first failure (the statements after it fail too: PostgreSQL refuses
    /// statements in an aborted transaction, and a lost connection answers none).
    private func settle() throws -> Answer? {
        let batch = inFlight
        inFlight = []
        let outcome = wait(for: batch)
        if let failure = outcome.failure { throw failure.error }
        return outcome.results.last ?? nil
    }

    /// The answers to `batch`, in order (nil for each that failed), and the first failure with its position.
    private func wait(for batch: [Sent]) -> (results: [Answer?], failure: (index: Int, error: SQLError)?) {
        // The connection answers in order, so once the last statement settled the others have: one wait, not one each.
        _ = try? batch.last?.answer.wait()
        var results: [Answer?] = []
        var failure: (index: Int, error: SQLError)?
        for (index, statement) in batch.enumerated() {
            do {
                let result = try statement.answer.wait()
                switch result.command {
                case "INSERT", "UPDATE", "DELETE", "MERGE": lastChanges = result.rowsAffected ?? 0
                default: break
                }
                results.append(result)
            } catch {
                results.append(nil)
                let classified = PostgresErrors.classify(
                    error, sql: statement.sql, configuration: shared.configuration,
                    timedOut: statement.timedOut.fired.withLock { $0 })
                if classified.serializationFailure { serializationFailed = true }
                if classified.connectionLost { connectionLost = true }
                if statement.kind == .execution,
                    classified.sqlState == "26000"
                        || (classified.sqlState == "0A000" && classified.routine == "RevalidateCachedQuery")
                {
                    preparedStatementsStale = true
                }
                if firstFailure == nil {
                    firstFailure = classified.error
                    failureMessage = classified.error.description
                }
                if failure == nil { failure = (index, firstFailure ?? classified.error) }
            }
        }
        return (results, failure)
    }

    static func bind(_ value: SQLValue, to binds: inout PostgresBindings) {
        switch value {
        case .null: binds.appendNull()
        case .integer(let integer): binds.append(integer)
        case .real(let real): binds.append(real)
        case .text(let text): binds.append(text)
        case .blob(let data): binds.append(ByteBuffer(bytes: data))
        }
    }

    /// Reads a result cell as the storage class the store knows (see ``SQLValue``).
    static func decode(_ cell: PostgresCell, sql: String) throws -> SQLValue {
        guard var bytes = cell.bytes else { return .null }
        let unreadable = SQLError.other(
            "column \(cell.columnName) holds PostgreSQL type \(cell.dataType) (\(cell.format)), which the store does "
                + "not read; cast it to bigint, double precision, text or bytea in: \(sql)")
        if cell.format == .text {
            let text = bytes.readString(length: bytes.readableBytes) ?? ""
            switch cell.dataType {
            case .int2, .int4, .int8, .oid: return Int64(text).map(SQLValue.integer) ?? .text(text)
            case .float4, .float8: return Double(text).map(SQLValue.real) ?? .text(text)
            case .numeric: return numeric(text)
            case .bool: return .integer(text == "t" ? 1 : 0)
            case .void: return .null
            case .bytea: throw unreadable
            default: return .text(text)
            }
        }
        switch cell.dataType {
        case .int2:
            guard let value = bytes.readInteger(as: Int16.self) else { throw unreadable }
            return .integer(Int64(value))
        case .int4:
            guard let value = bytes.readInteger(as: Int32.self) else { throw unreadable }
            return .integer(Int64(value))
        case .int8:
            guard let value = bytes.readInteger(as: Int64.self) else { throw unreadable }
            return .integer(value)
        case .oid:
            guard let value = bytes.readInteger(as: UInt32.self) else { throw unreadable }
            return .integer(Int64(value))
        case .float4:
            guard let bits = bytes.readInteger(as: UInt32.self) else { throw unreadable }
            return .real(Double(Float(bitPattern: bits)))
        case .float8:
            guard let bits = bytes.readInteger(as: UInt64.self) else { throw unreadable }
            return .real(Double(bitPattern: bits))
        case .numeric:
            guard let decimal = try? cell.decode(Decimal.self, context: .default) else { throw unreadable }
            return numeric("\(decimal)")
        case .bool:
            guard let value = bytes.readInteger(as: UInt8.self) else { throw unreadable }
            return .integer(value == 0 ? 0 : 1)
        case .bytea:
            return .blob(Data(bytes.readableBytesView))
        case .void:
            return .null
        case .text, .varchar, .name, .bpchar, .unknown, .json, .xml, .char:
            return .text(bytes.readString(length: bytes.readableBytes) ?? "")
        case .jsonb:
            guard bytes.readInteger(as: UInt8.self) == 1 else { throw unreadable }
            return .text(bytes.readString(length: bytes.readableBytes) ?? "")
        case .uuid:
            guard let uuid = bytes.readUUIDBytesOfSixteen() else { throw unreadable }
            return .text(UUID(uuid: uuid).uuidString.lowercased())
        default:
            throw unreadable
        }
    }

    /// A numeric as an integer when it is whole and fits, else as a double (`SUM` of bigints is a numeric).
    static func numeric(_ text: String) -> SQLValue {
        if let integer = Int64(text) { return .integer(integer) }
        if let dot = text.firstIndex(of: "."), text[text.index(after: dot)...].allSatisfy({ $0 == "0" }),
            let integer = Int64(text[..<dot])
        {
            return .integer(integer)
        }
        return .real(Double(text) ?? .nan)
    }
}

/// The store's SQL with `?` placeholders translated to PostgreSQL's `$1…$n`, cached per SQL text (the store runs
/// a few hundred distinct statements).
final class StatementCache: Sendable {
    struct Statement: Sendable {
        var text: String
        var placeholders: Int
        /// The text around the placeholders: `placeholders + 1` pieces.
        var segments: [String]

        /// The text with each placeholder cast to the type of its argument (`$1::bigint`), as a statement is prepared
        /// without parameter types: PostgreSQL takes a cast parameter's type from the cast, so the statement means
        /// what the unnamed one, whose parameters carry their types, means. A null stays uncast and is inferred.
        func typedText(for values: [SQLValue]) -> String {
            var text = segments[0]
            for (index, value) in values.enumerated() {
                text += "$\(index + 1)"
                switch value {
                case .null: break
                case .integer: text += "::bigint"
                case .real: text += "::double precision"
                case .text: text += "::text"
                case .blob: text += "::bytea"
                }
                text += segments[index + 1]
            }
            return text
        }
    }

    /// The command of an `INSERT` or `UPDATE` (after a `WITH` list, too) that has no `RETURNING` of its own and may
    /// take one at its end; nil for any other statement.
    static func countedWrite(_ sql: String) -> String? {
        let scalars = Array(sql.unicodeScalars)
        var index = scalars.firstIndex { $0 != " " && $0 != "\n" } ?? scalars.endIndex
        func startsWith(_ word: String) -> Bool {
            let word = Array(word.unicodeScalars)
            return scalars.count - index >= word.count && Array(scalars[index..<index + word.count]) == word
        }
        if startsWith("WITH ") {
            // The main statement starts after the parenthesis that closes the list's last definition (one not
            // followed by a comma). Literals, quoted names and comments make it more than this scan reads: nil.
            var depth = 0
            var main: Int?
            scan: for position in index..<scalars.count {
                switch scalars[position] {
                case "'", "\"", "$", "-", "/", ";": return nil
                case "(": depth += 1
                case ")":
                    depth -= 1
                    guard depth == 0 else { continue }
                    let next = scalars[(position + 1)...].firstIndex { $0 != " " && $0 != "\n" } ?? scalars.endIndex
                    if next == scalars.endIndex || scalars[next] != "," {
                        main = next
                        break scan
                    }
                default: break
                }
            }
            guard let main else { return nil }
            index = main
        }
        let upper = sql.uppercased()
        guard !upper.contains("RETURNING"), !sql.contains(";") else { return nil }
        if startsWith("UPDATE ") { return "UPDATE" }
        if startsWith("INSERT INTO ") { return "INSERT" }
        return nil
    }

    /// Whether `sql` is a `SELECT` (which changes no rows a command tag would count).
    static func isSelect(_ sql: String) -> Bool {
        let start = sql.utf8.firstIndex { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\n") } ?? sql.utf8.endIndex
        return sql.utf8[start...].prefix(7).elementsEqual("SELECT ".utf8)
    }

    private static let limit = 2000
    private let cache = Mutex<[String: Statement]>([:])

    func translate(_ sql: String) -> Statement {
        if let cached = cache.withLock({ $0[sql] }) { return cached }
        let statement = Self.translatePlaceholders(sql)
        cache.withLock { cache in
            if cache.count >= Self.limit { cache.removeAll(keepingCapacity: true) }
            cache[sql] = statement
        }
        return statement
    }

    /// Replaces each `?` outside string literals (`'…'`, `E'…'`, `$tag$…$tag$`), quoted identifiers (`"…"`) and
    /// comments (`-- …`, `/* … */`) with `$1`, `$2`, … in order.
    static func translatePlaceholders(_ sql: String) -> Statement {
        let characters = Array(sql.unicodeScalars)
        var output: [Unicode.Scalar] = []
        output.reserveCapacity(characters.count + 8)
        var segments: [String] = []
        var segmentStart = 0
        func text(_ scalars: ArraySlice<Unicode.Scalar>) -> String {
            var view = String.UnicodeScalarView()
            view.append(contentsOf: scalars)
            return String(view)
        }
        var count = 0
        var index = 0
        func isIdentifier(_ scalar: Unicode.Scalar) -> Bool {
            scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || scalar == "_" || scalar == "$"
        }
        func copy(until end: Int) {
            output.append(contentsOf: characters[index..<min(end, characters.count)])
            index = min(end, characters.count)
        }
        while index < characters.count {
            let scalar = characters[index]
            let next: Unicode.Scalar? = index + 1 < characters.count ? characters[index + 1] : nil
            switch scalar {
            case "?":
                count += 1
                segments.append(text(output[segmentStart...]))
                output.append(contentsOf: "$\(count)".unicodeScalars)
                segmentStart = output.count
                index += 1
            case "'":
                let escapes =
                    index > 0 && (characters[index - 1] == "E" || characters[index - 1] == "e")
                    && (index < 2 || !isIdentifier(characters[index - 2]))
                var end = index + 1
                while end < characters.count {
                    if escapes && characters[end] == "\\" {
                        end += 2
                        continue
                    }
                    if characters[end] == "'" {
                        // '' inside a literal is a quote, not the end.
                        if end + 1 < characters.count && characters[end + 1] == "'" {
                            end += 2
                            continue
                        }
                        break
                    }
                    end += 1
                }
                copy(until: end + 1)
            case "\"":
                var end = index + 1
                while end < characters.count && characters[end] != "\"" { end += 1 }
                copy(until: end + 1)
            case "-" where next == "-":
                var end = index
                while end < characters.count && characters[end] != "\n" { end += 1 }
                copy(until: end)
            case "/" where next == "*":
                var depth = 0
                var end = index
                while end < characters.count {
                    if characters[end] == "/" && end + 1 < characters.count && characters[end + 1] == "*" {
                        depth += 1
                        end += 2
                    } else if characters[end] == "*" && end + 1 < characters.count && characters[end + 1] == "/" {
                        depth -= 1
                        end += 2
                        if depth == 0 { break }
                    } else {
                        end += 1
                    }
                }
                copy(until: end)
            case "$" where index == 0 || !isIdentifier(characters[index - 1]):
                // A dollar quote: $$ or $tag$ up to the same delimiter.
                var tagEnd = index + 1
                while tagEnd < characters.count && characters[tagEnd] != "$"
                    && (characters[tagEnd].properties.isAlphabetic || characters[tagEnd] == "_"
                        || (tagEnd > index + 1 && ("0"..."9").contains(characters[tagEnd])))
                {
                    tagEnd += 1
                }
                guard tagEnd < characters.count && characters[tagEnd] == "$" else {
                    copy(until: index + 1)
                    continue
                }
                let delimiter = Array(characters[index...tagEnd])
                var end = tagEnd + 1
                while end < characters.count {
                    if characters[end] == "$" && end + delimiter.count <= characters.count
                        && Array(characters[end..<end + delimiter.count]) == delimiter
                    {
                        end += delimiter.count
                        break
                    }
                    end += 1
                }
                copy(until: end)
            default:
                output.append(scalar)
                index += 1
            }
        }
        segments.append(text(output[segmentStart...]))
        return Statement(text: text(output[...]), placeholders: count, segments: segments)
    }
}

/// The statements prepared on one connection, by their typed text (``StatementCache/Statement/typedText(for:)``), up to
/// ``limit``: a statement is prepared once per connection and lives as long as it. Used only on its session's thread.
final class PreparedStatements {
    /// The store runs a few hundred distinct statements; beyond these, statements run unnamed, so neither side's
    /// memory grows with statements that differ only in the number of their arguments.
    static let limit = 512

    /// A statement is prepared again after this many runs on its connection, then after ``renewalGrowth`` times as
    /// many, and so on. PostgreSQL keeps the generic plan it chose at a statement's sixth run, costed on the tables as
    /// they were then, until it analyzes them again: a store that starts empty chose seq scans of tables that hold a
    /// handful of rows, which, a few hundred builds later, read every build for each job leased (`deploy/bench`).
    /// Preparing again plans on the tables as they are now; the renewals grow apart as the tables settle.
    static let firstRenewal = 32
    static let renewalGrowth = 4

    private struct Entry {
        var query: PreparedQuery
        var runs = 0
        var renewal: Int
    }
    private var statements: [String: Entry] = [:]
    /// When a statement prepared again is renewed next.
    private var renewals: [String: Int] = [:]
    /// Statements replaced by a renewal, deallocated after the next COMMIT (``takeRetired()``).
    private var retired: [PreparedQuery] = []

    /// Statements whose preparation failed (or was cut off with the connection): not tried again on it.
    private var refused: Set<String> = []
    /// Statements run once on the connection and not prepared: a statement is prepared at its second use, so
    /// statements that run once (a page of a listing, a list of unusual length) take no room.
    private var seenOnce: Set<String> = []

    /// The statement prepared for `text`, counting this run; nil when there is none, or when this run renews it (it
    /// is then prepared again, as at a second use).
    func statement(for text: String) -> PreparedQuery? {
        guard var entry = statements[text] else { return nil }
        entry.runs += 1
        guard entry.runs < entry.renewal else {
            statements[text] = nil
            retired.append(entry.query)
            let (next, overflow) = entry.renewal.multipliedReportingOverflow(by: Self.renewalGrowth)
            renewals[text] = overflow ? Int.max : next
            seenOnce.insert(text)
            return nil
        }
        statements[text] = entry
        return entry.query
    }

    /// Statements replaced by renewals since the last call, for deallocation.
    func takeRetired() -> [PreparedQuery] {
        defer { retired = [] }
        return retired
    }

    /// Whether `text` is to be prepared now: its second use, not refused before, and room left. The first use is
    /// remembered (up to ``limit`` statements at a time).
    func mayPrepare(_ text: String) -> Bool {
        guard statements.count < Self.limit, refused.count < Self.limit, !refused.contains(text) else { return false }
        if seenOnce.remove(text) != nil { return true }
        if seenOnce.count >= Self.limit { seenOnce.removeAll(keepingCapacity: true) }
        seenOnce.insert(text)
        return false
    }

    func record(_ statement: PreparedQuery, for text: String) {
        statements[text] = Entry(query: statement, renewal: renewals[text] ?? Self.firstRenewal)
    }

    func refuse(_ text: String) { refused.insert(text) }
}

/// The deadline of a statement passed before PostgreSQL answered (classified with the timeout's message).
struct QueryDeadlineExceeded: Error {}

/// Set once by whichever comes first, an answer or a deadline.
final class TimeoutFlag: Sendable {
    let fired = Mutex(false)

    /// True for the first caller only.
    func settle() -> Bool {
        fired.withLock { fired in
            defer { fired = true }
            return !fired
        }
    }
}

extension ByteBuffer {
    fileprivate mutating func readUUIDBytesOfSixteen() -> uuid_t? {
        guard let bytes = readBytes(length: 16) else { return nil }
        return (
            bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7], bytes[8], bytes[9],
            bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]
        )
    }
}
