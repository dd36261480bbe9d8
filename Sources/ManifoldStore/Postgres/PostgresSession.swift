import Foundation
import Logging
import NIOCore
import PostgresNIO
import Synchronization

/// One connection of a ``PostgresBackend`` and the thread it is used from. Every method is synchronous and runs
/// on that thread (the actor's executor), so the store's synchronous closures and PostgresNIO's
/// `EventLoopFuture.wait()` never occupy a thread of the Swift concurrency pool or an event loop.
actor PostgresSession {
    enum TransactionKind {
        case read
        case write

        var begin: String {
            switch self {
            case .read: return "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
            case .write: return "BEGIN ISOLATION LEVEL READ COMMITTED"
            }
        }
    }

    /// Which advisory locks a transaction takes right after `BEGIN` (see ``PostgresBackend/write(_:)``).
    enum WriterLock: Sendable {
        /// None: content-addressed rows (``PostgresBackend/writeContentAddressed(_:)``) and reads.
        case none
        /// The lock class, exclusively: the transaction runs alone among the schema's writes.
        case exclusive(Int32)
        /// The `writers` class shared, then the `builds` class exclusively for the build that `buildQuery` (one row,
        /// one column, one argument) names: beside other builds' such writes, never beside an exclusive one or one of
        /// the same build. The body takes the `images` class of an image whose tags it reads
        /// (``SQLTransaction/lockImage(_:)``).
        case build(buildQuery: String, SQLValue, writers: Int32, builds: Int32, images: Int32)
        /// The `writers` class shared, then the `agents` class exclusively for `agentId`; the body takes the `builds`
        /// class of each build it reads (``SQLTransaction/lockBuild(_:)``), and the `images` class of an image whose tags it
        /// reads, after them.
        case agent(String, writers: Int32, agents: Int32, builds: Int32, images: Int32)
        /// The `writers` class shared, then, with a token, the `tokens` class exclusively for it.
        case submission(token: String?, writers: Int32, tokens: Int32)
    }

    nonisolated let thread: SessionThread
    nonisolated var unownedExecutor: UnownedSerialExecutor { thread.asUnownedSerialExecutor() }

    private let shared: PostgresShared
    private let number: Int
    private var connection: PostgresConnection?
    /// The statements prepared on `connection`; a new connection starts with none.
    private var preparedStatements = PreparedStatements()
    private var closed = false
    /// The COMMIT of the last read-only transaction, sent and not yet waited for, with its connection.
    private var pendingCommit: (answer: EventLoopFuture<PostgresTransaction.Answer>, connection: PostgresConnection)?

    init(shared: PostgresShared, number: Int) {
        self.shared = shared
        self.number = number
        self.thread = SessionThread(name: "manifold-postgres-\(number)")
    }

    deinit {
        connection?.closeInBackground()
        thread.stop()
    }

    private var address: String { shared.configuration.address }

    /// Connects now and takes the best of three clock samples.
    func open() throws {
        let connection = try openConnection()
        for _ in 0..<3 { try sampleClock(connection) }
    }

    func transaction<T: Sendable>(
        _ kind: TransactionKind, lock: WriterLock = .none, _ body: @Sendable (SQLTransaction) throws -> T
    ) throws -> T {
        var serializationFailures = 0
        var reconnects = 0
        while true {
            settlePendingCommit()
            let connection = try openConnection()
            if shared.clock.isDue { try? sampleClock(connection) }
            let transaction = PostgresTransaction(
                connection: connection, shared: shared, preparedStatements: preparedStatements)
            do {
                // BEGIN and the locks are not waited for on their own: the first statement whose answer the body
                // needs waits for them too (PostgresNIO sends each statement once the one before was answered). The
                // locks are transaction-level ones, keyed by the schema as well (stores in other schemas of the
                // database do not wait for them): taken after BEGIN, so the round trip of BEGIN is not spent holding
                // them, and released by COMMIT or ROLLBACK, or by the server when the connection is lost.
                switch lock {
                case .none:
                    transaction.sendControl(kind.begin)
                case .exclusive(let lockClass):
                    transaction.sendControl(kind.begin, "SELECT pg_advisory_xact_lock(\(lockClass), hashtext(current_schema()))")
                case .build(let buildQuery, let key, let writers, let builds, let images):
                    // The writers' lock shared first, then the build's own: a write holding the build lock never
                    // waits for the writers' lock, so the two orders cannot meet in a deadlock. Both in one statement,
                    // taken left to right (a target list is evaluated in order, and the build's query, a subquery,
                    // when its column is). The query reads a row (a job, an outbox row) committed before the caller
                    // learnt its key, and the build it names never changes, so its snapshot, taken before either lock
                    // is held, reads what the lock is meant for.
                    transaction.sendControl(kind.begin)
                    try transaction.send(
                        "SELECT pg_advisory_xact_lock_shared(\(writers), hashtext(current_schema())), "
                            + "pg_advisory_xact_lock(\(builds), hashtext(current_schema() || '/' "
                            + "|| coalesce((\(buildQuery)), '')))", SQLArguments(values: [key]))
                    transaction.imageLockClass = images
                    transaction.runsBesideOtherWrites = true
                case .agent(let agentId, let writers, let agents, let builds, let images):
                    // The same order: the writers' lock shared, the agent's, then builds' locks as the body reads them.
                    transaction.sendControl(kind.begin)
                    try transaction.send(
                        "SELECT pg_advisory_xact_lock_shared(\(writers), hashtext(current_schema())), "
                            + "pg_advisory_xact_lock(\(agents), hashtext(current_schema() || '/' || ?))", [agentId])
                    transaction.buildLockClass = builds
                    transaction.imageLockClass = images
                    transaction.runsBesideOtherWrites = true
                case .submission(let token, let writers, let tokens):
                    let shared = "SELECT pg_advisory_xact_lock_shared(\(writers), hashtext(current_schema()))"
                    if let token {
                        transaction.sendControl(kind.begin)
                        try transaction.send(
                            shared + ", pg_advisory_xact_lock(\(tokens), hashtext(current_schema() || '/' || ?))", [token])
                    } else {
                        transaction.sendControl(kind.begin, shared)
                    }
                    transaction.runsBesideOtherWrites = true
                }
                let value = try body(transaction)
                if kind == .read {
                    // Nothing read depends on the COMMIT of a read-only transaction: it is waited for before the
                    // session's next use (``settlePendingCommit()``), not now.
                    pendingCommit = (try transaction.sendReadOnlyCommit(), connection)
                    return value
                }
                try transaction.commit()
                return value
            } catch {
                if transaction.connectionLost {
                    drop(connection)
                } else {
                    do { try transaction.rollback() } catch { drop(connection) }
                }
                if transaction.serializationFailed && !transaction.preparedStatementsStale {
                    serializationFailures += 1
                    guard serializationFailures < PostgresBackend.maxSerializationAttempts else {
                        throw SQLError.other(
                            "PostgreSQL at \(address) aborted the transaction for conflicts with concurrent ones "
                                + "\(serializationFailures) times in a row; last: \(transaction.failureMessage ?? "\(error)")")
                    }
                    backoff(after: serializationFailures)
                    continue
                }
                // A new connection, and the transaction again: after a lost connection (unless COMMIT had left), or
                // when a prepared statement is gone from the connection or a table changed under it (every statement
                // is prepared again on the new one).
                let rerun: String?
                if transaction.preparedStatementsStale {
                    drop(connection)
                    rerun = "A prepared statement is gone or no longer matches the schema; running the transaction again"
                } else if transaction.connectionLost {
                    if transaction.commitSent {
                        throw SQLError.unavailable(
                            "lost the connection to PostgreSQL at \(address) while committing; the transaction may or "
                                + "may not have been committed")
                    }
                    rerun = "PostgreSQL connection lost, running the transaction again on a new one"
                } else {
                    rerun = nil
                }
                if let rerun, reconnects < 2 {
                    reconnects += 1
                    shared.logger.info(
                        "\(rerun)", metadata: ["address": "\(address)", "session": "\(number)"])
                    continue
                }
                throw error
            }
        }
    }

    /// Brings the schema up to date under the migration advisory lock.
    func migrate() throws {
        settlePendingCommit()
        let connection = try openConnection()
        let session = PostgresTransaction(connection: connection, shared: shared)
        do {
            try session.query("SELECT pg_advisory_lock(\(PostgresSchema.migrationLockKey))", [])
        } catch {
            if session.connectionLost { drop(connection) }
            throw error
        }
        defer {
            do {
                try session.query("SELECT pg_advisory_unlock(\(PostgresSchema.migrationLockKey))", [])
            } catch {
                // The lock ends with the session; a connection that cannot unlock is not reused.
                drop(connection)
            }
        }
        try applyMigrations(session)
    }

    private func applyMigrations(_ session: PostgresTransaction) throws {
        try session.query(PostgresSchema.versionTable, [])
        let applied = try String.fetchAll(session, sql: "SELECT version FROM manifold_schema ORDER BY version")
        let database = "\(shared.configuration.database) at \(address)"
        try SchemaVersions.refuseNewer(applied: applied, database: database)
        var pending: [(versions: [String], script: String)] = []
        if applied.isEmpty {
            pending.append((PostgresSchema.baselineVersions, PostgresSchema.baseline))
        } else {
            let missing = PostgresSchema.baselineVersions.filter { !applied.contains($0) }
            guard missing.isEmpty else {
                throw SQLError.other(
                    "the database \(database) records schema versions \(applied.joined(separator: ", ")) but not "
                        + "\(missing.joined(separator: ", ")); it was not created by manifold's migrations — use an "
                        + "empty database or schema")
            }
        }
        for migration in PostgresSchema.migrations where !applied.contains(migration.version) {
            pending.append(([migration.version], migration.script))
        }
        for migration in pending {
            try session.control("BEGIN")
            do {
                try session.executeScript(migration.script)
                for version in migration.versions {
                    try session.query(
                        "INSERT INTO manifold_schema (version, appliedAt) VALUES (?, extract(epoch FROM clock_timestamp()))",
                        [version])
                }
                try session.commit()
            } catch {
                if !session.connectionLost { try? session.control("ROLLBACK") }
                throw error
            }
            shared.logger.info(
                "Applied the store's schema on PostgreSQL",
                metadata: ["versions": "\(migration.versions.joined(separator: ", "))", "database": "\(database)"])
        }
    }

    /// Runs one statement on its own (autocommit). `sql` uses PostgreSQL's `$n` placeholders.
    func execute(_ sql: String, arguments: [SQLValue] = []) throws {
        settlePendingCommit()
        let connection = try openConnection()
        let session = PostgresTransaction(connection: connection, shared: shared)
        do {
            try session.run(sql: sql, arguments: arguments)
        } catch {
            if session.connectionLost { drop(connection) }
            throw error
        }
    }

    func shutdown() {
        closed = true
        if let connection {
            // Not waited for: a close was seen never to complete on a connection whose peer went silent.
            connection.closeInBackground()
            self.connection = nil
        }
        thread.stop()
    }

    /// Waits for the last read-only transaction's COMMIT (normally answered long ago). A connection whose COMMIT
    /// failed is not used again: it may still be inside that transaction.
    private func settlePendingCommit() {
        guard let (answer, connection) = pendingCommit else { return }
        pendingCommit = nil
        do {
            _ = try answer.wait()
        } catch {
            shared.logger.debug(
                "PostgreSQL did not confirm a read-only transaction's COMMIT; reconnecting",
                metadata: ["address": "\(address)", "session": "\(number)", "error": "\(error)"])
            drop(connection)
        }
    }

    // MARK: - Connection

    private func openConnection() throws -> PostgresConnection {
        if closed { throw SQLError.unavailable("the store's connection to \(address) is closed") }
        if let connection, !connection.isClosed { return connection }
        connection = nil
        do {
            let new = try connectWithDeadline().wait()
            connection = new
            preparedStatements = PreparedStatements()
            return new
        } catch {
            throw PostgresErrors.classifyConnect(error, configuration: shared.configuration)
        }
    }

    /// Connects, giving up after `connect_timeout` for the whole of it: PostgresNIO's own timeout covers the TCP
    /// connect only, and a server (or proxy) that accepts but never answers the startup would block the session.
    private func connectWithDeadline() -> EventLoopFuture<PostgresConnection> {
        let loop = shared.eventLoopGroup.next()
        let promise = loop.makePromise(of: PostgresConnection.self)
        let settled = TimeoutFlag()
        let seconds = shared.configuration.connectTimeout
        let deadline = loop.scheduleTask(in: .seconds(Int64(seconds))) {
            if settled.settle() { promise.fail(ConnectDeadlineExceeded(seconds: seconds)) }
        }
        PostgresConnection.connect(
            on: loop, configuration: shared.connectionConfiguration, id: number, logger: shared.logger
        ).whenComplete { result in
            deadline.cancel()
            if settled.settle() {
                promise.completeWith(result)
            } else if case .success(let late) = result {
                late.closeInBackground()
            }
        }
        return promise.futureResult
    }

    private func drop(_ connection: PostgresConnection) {
        connection.closeInBackground()
        if self.connection === connection { self.connection = nil }
    }

    private func sampleClock(_ connection: PostgresConnection) throws {
        let probe = PostgresTransaction(connection: connection, shared: shared)
        let sent = ContinuousClock.now
        let rows: [SQLRow]
        do {
            rows = try probe.query("SELECT extract(epoch FROM clock_timestamp())::double precision", [])
        } catch {
            if probe.connectionLost { drop(connection) }
            throw error
        }
        let received = ContinuousClock.now
        guard let epoch = rows.first?.first(as: Double.self) else {
            throw SQLError.other("PostgreSQL at \(address) returned no time for clock_timestamp()")
        }
        shared.clock.record(serverEpoch: epoch, sent: sent, received: received)
    }

    /// Sleeps this session's thread (never a pool thread) 1–2 ms doubled per failure, up to 64–128 ms, at random in
    /// that range so conflicting writers do not meet again in step.
    private func backoff(after failures: Int) {
        let base = Double(1 << min(failures - 1, 6)) / 1000
        Thread.sleep(forTimeInterval: base * Double.random(in: 1...2))
    }
}

/// A thread that runs the jobs of one ``PostgresSession`` actor in order: the actor's serial executor.
///
/// `@unchecked Sendable`: `jobs` and `stopping` are read and written only while `condition` is locked, and the
/// other stored properties are immutable.
final class SessionThread: SerialExecutor, @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var stopping = false

    init(name: String) {
        let thread = Thread { [self] in run() }
        thread.name = name
        thread.start()
    }

    /// The session thread the caller runs on, nil on any other thread.
    static var current: SessionThread? {
        pthread_getspecific(currentKey).map { Unmanaged<SessionThread>.fromOpaque($0).takeUnretainedValue() }
    }

    private static let currentKey: pthread_key_t = {
        var key = pthread_key_t()
        precondition(pthread_key_create(&key, nil) == 0, "pthread_key_create failed")
        return key
    }()

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    func checkIsolated() {
        precondition(Self.current === self, "a PostgreSQL session ran off its own thread")
    }

    /// Lets the thread finish the jobs already queued and end.
    func stop() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
    }

    private func run() {
        // The thread's own reference; the thread keeps `self` alive until it ends.
        pthread_setspecific(Self.currentKey, Unmanaged.passUnretained(self).toOpaque())
        while true {
            condition.lock()
            while jobs.isEmpty && !stopping { condition.wait() }
            if jobs.isEmpty {
                condition.unlock()
                return
            }
            let job = jobs.removeFirst()
            condition.unlock()
            job.runSynchronously(on: asUnownedSerialExecutor())
        }
    }
}

extension PostgresConnection {
    /// Closes without waiting. The completion keeps the connection alive until it is closed: PostgresNIO asserts
    /// that a connection is closed before it is released.
    func closeInBackground() {
        close().whenComplete { _ in withExtendedLifetime(self) {} }
    }
}

/// The server took no part in the connection (TCP, TLS, startup, authentication) within `connect_timeout`.
struct ConnectDeadlineExceeded: Error, CustomStringConvertible {
    let seconds: Int
    var description: String { "no answer within \(seconds) s (connect_timeout)" }
}
