import Foundation
import Logging
import NIOCore
import NIOSSL
import PostgresNIO
import Synchronization

/// The shared backend: one PostgreSQL database that every coordinator replica uses.
///
/// ## Threads and connections
/// The store's rules run synchronously inside ``read(_:)`` and ``write(_:)`` and must never block the Swift
/// concurrency pool (it may have two threads, and every request handler needs them). So the backend keeps up to
/// ``PostgresConfiguration/poolSize`` *sessions*; a session is an actor whose executor is a thread of its own and
/// which owns one `PostgresConnection`. A transaction checks out an idle session, and the awaiting task hops onto
/// the session's thread (as GRDB runs its connections on their own dispatch queues); there the closure runs, and
/// each statement waits on PostgresNIO's `EventLoopFuture` — allowed, because the session thread is neither an event
/// loop nor part of the cooperative pool. The caller's task is suspended meanwhile, not blocking anything, so any
/// number of callers on a two-thread pool only queue for a session. Sessions and their connections are made on
/// first need and reused most-recently-idle first, so a quiet store holds one connection.
///
/// `PostgresClient` was not used: its leases are async, and the store's synchronous closures would have to block a
/// thread on each statement anyway; a fixed thread per connection makes that explicit and bounded.
///
/// ## Transactions
/// `write` runs `BEGIN ISOLATION LEVEL READ COMMITTED`, takes the writers' lock (see ``write(_:)``) and then runs the
/// closure, so writes run one at a time, as the store's rules (written for SQLite's single writer) expect, and each
/// statement sees every write committed before it. Writes confined to one build's rows (``write(buildOfJob:_:)``)
/// share that lock with each other and take their build's lock as well; so does a poll's write
/// (``write(agent:_:)``), which takes its agent's lock and then each build's as it reads them. A serialization failure
/// or deadlock (SQLSTATE 40001, 40P01) at any point rolls back and runs the closure again after a short jittered
/// backoff, up to ``maxSerializationAttempts`` times. `read` runs `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`:
/// one snapshot, and any write is refused. Neither `BEGIN` (nor the writers' lock) is waited for on its own, and a
/// read's `COMMIT` is waited for only before the session's next use: each costs the session thread a wake-up, and a
/// statement's round trip on a loaded machine is mostly such wake-ups.
///
/// A connection found closed (the server restarted, `pg_terminate_backend`) is replaced before the next
/// transaction; one lost during a transaction before `COMMIT` was sent runs the transaction again on a new
/// connection. One lost while committing reports ``SQLError/unavailable(_:)``: whether it committed is unknown.
public final class PostgresBackend: StoreBackend {
    /// How many times a write is tried when PostgreSQL aborts it for a conflict with a concurrent one.
    public static let maxSerializationAttempts = 20

    public let configuration: PostgresConfiguration
    public var dialect: SQLDialect { .postgres }
    /// The database server's time (see ``ServerClock``): every replica reads the same lease clock.
    public let clock: @Sendable () -> Date

    let shared: PostgresShared
    let sessions: SessionPool

    private init(shared: PostgresShared) {
        self.shared = shared
        self.configuration = shared.configuration
        self.sessions = SessionPool(shared: shared)
        let serverClock = shared.clock
        self.clock = { serverClock.now() }
    }

    /// Connects to the database (one connection, to fail early with a clear error) and samples its clock.
    /// Throws ``SQLError/unavailable(_:)`` naming the server when it cannot be reached, ``SQLError/other(_:)``
    /// when it refuses the role, password or database, and ``PostgresConfigurationError`` for unusable TLS files.
    public static func connect(_ configuration: PostgresConfiguration, logger: Logger) async throws -> PostgresBackend {
        try configuration.validate()
        let backend = PostgresBackend(shared: try PostgresShared(configuration: configuration, logger: logger))
        do {
            try await backend.sessions.withSession { session in try await session.open() }
        } catch {
            await backend.close()
            throw error
        }
        return backend
    }

    public func read<T: Sendable>(_ body: @Sendable (SQLTransaction) throws -> T) async throws -> T {
        try await sessions.withSession { session in try await session.transaction(.read, body) }
    }

    /// Every write transaction of every replica on this schema runs alone: its first statement after `BEGIN` takes a
    /// transaction-level advisory lock (class ``writerLockClass``, keyed by the schema), which `COMMIT` or `ROLLBACK`
    /// releases, as does the server when the connection is lost. At `READ COMMITTED` each statement takes a fresh
    /// snapshot, so everything after the lock sees the previous writer's commit. Reads run beside the writer and each
    /// other, on their own snapshots.
    ///
    /// Why one writer, as on SQLite: with writes side by side, `SERIALIZABLE` aborted a large share of them as
    /// pivots of read/write dependency cycles — the queue's hot index ranges (`state = 'queued'`, `'running'`,
    /// `'pending'`) are read and written by nearly every transaction. Measured with deploy/bench/replicas.sh (8 lanes,
    /// 2 cores): about one transaction in five rolled back, some ran out of retries after 20 tries (a poll or a
    /// report answered with an error under load), and throughput did not grow with lanes or replicas. Serialized,
    /// no write is aborted and none fails; replicas share the HTTP, TLS and registry work, not the commits.
    ///
    /// Why `READ COMMITTED` under the lock and not `SERIALIZABLE` (as until 2026-12-04): with no other writer,
    /// `SERIALIZABLE` adds nothing but its bookkeeping of every row read, and it needs its snapshot to come after the
    /// lock — a session lock taken before `BEGIN` and released by a statement after `COMMIT`, two more round trips
    /// with the lock held (deploy/bench/README.md has the figures).
    public func write<T: Sendable>(_ body: @Sendable (SQLTransaction) throws -> T) async throws -> T {
        try await sessions.withSession { session in
            try await session.transaction(.write, lock: .exclusive(Self.writerLockClass), body)
        }
    }

    /// A write that reads and changes only the rows of one build (its jobs, attempts, logs, events and outbox rows),
    /// plus blind updates of other rows that no such write reads (an agent's last-seen time): it takes the writers'
    /// lock *shared*, then a transaction-level lock of the job's build (class ``buildLockClass``, keyed by the schema
    /// and the build's id). So it runs beside such writes of other builds, after any write of the same build, and never
    /// beside an ordinary write, which still runs alone. What the build's rows held when it read them is what they hold
    /// when it commits, as under the one writer; rows of other builds it only writes, so a concurrent write of their
    /// build waits for the row or sees its commit.
    ///
    /// An image's tags are shared by its builds: their owners and claims, and the outbox rows of other builds waiting
    /// for one of them (`tagWait`, set by a claim, cleared by the end of the push waited for). A scoped write reads or
    /// changes them only after ``SQLTransaction/lockImage(_:)`` (class ``imageLockClass``), taken after its build's
    /// lock, so claims of one image's tags and the ends of their pushes run one at a time.
    ///
    /// Heartbeats, log appends, reports and verification outcomes, each a few round trips, were half of every
    /// build's writes and kept every other replica's writes waiting meanwhile (deploy/bench/README.md has the figures).
    /// A rule that changes what such a write reads on another build's rows (a run made pending again) must stay an
    /// ordinary write. A scoped write waiting for its build's lock already holds the shared lock, so an ordinary write
    /// queued behind it waits for it too (the other order could deadlock).
    public func write<T: Sendable>(
        buildOfJob jobId: String, _ body: @Sendable (SQLTransaction) throws -> T
    ) async throws -> T {
        try await sessions.withSession { session in
            try await session.transaction(
                .write, lock: Self.buildLock("SELECT buildId FROM job WHERE id = ?", .text(jobId)), body)
        }
    }

    /// ``write(buildOfJob:_:)`` for the build of publishing run `id` (an outbox row): claiming its tags, recording its
    /// push or its failure. These read and change their run, their build and, under the image's lock, its tags.
    public func write<T: Sendable>(
        buildOfPublication id: Int64, _ body: @Sendable (SQLTransaction) throws -> T
    ) async throws -> T {
        try await sessions.withSession { session in
            try await session.transaction(
                .write, lock: Self.buildLock("SELECT buildId FROM outbox WHERE id = ?", .integer(id)), body)
        }
    }

    private static func buildLock(_ query: String, _ key: SQLValue) -> PostgresSession.WriterLock {
        .build(buildQuery: query, key, writers: writerLockClass, builds: buildLockClass, images: imageLockClass)
    }

    /// A write for one agent's poll (a lease): the writers' lock shared, then a transaction-level lock of the agent
    /// (class ``agentLockClass``), then the lock of each build the body reads (``SQLTransaction/lockBuild(_:)``,
    /// class ``buildLockClass``, the key ``write(buildOfJob:_:)`` takes). So two polls of one agent run one after
    /// the other, and a lease runs beside other agents' leases and other builds' writes. The queue is read before any
    /// build's lock, on a snapshot that may be out of date by the time a build's lock is held: the body reads the job
    /// again under the lock and goes on to the next candidate when another lease took it.
    ///
    /// Deadlocks: builds are locked in the queue's order (oldest build first), so two leases wait for each other's
    /// builds only when one also locks the build of a grant it found unconfirmed and could not hand out again, then
    /// takes a new job (PostgreSQL detects that and the write runs again). The agent's row is written last, after
    /// every build's lock: a heartbeat holds its build's lock while it writes the agent's last-seen time, and a lease
    /// holding that row while it waited for that build would wait for the heartbeat that waits for it.
    public func write<T: Sendable>(agent agentId: String, _ body: @Sendable (SQLTransaction) throws -> T) async throws -> T {
        try await sessions.withSession { session in
            try await session.transaction(
                .write,
                lock: .agent(
                    agentId, writers: Self.writerLockClass, agents: Self.agentLockClass, builds: Self.buildLockClass,
                    images: Self.imageLockClass),
                body)
        }
    }

    /// A submission: the writers' lock shared and, when the token's unfinished builds are counted, a lock of that
    /// token (class ``tokenLockClass``), so two submissions of one token never both fit under its cap. It runs beside
    /// the other writes but ordinary ones. Its build's sequence number comes from the table's sequence, so two builds
    /// submitted at the same moment on two replicas may commit in the other order: neither was submitted first, and a
    /// lease reading the queue between the two commits hands out the one it sees.
    public func write<T: Sendable>(
        submittingFor token: String?, _ body: @Sendable (SQLTransaction) throws -> T
    ) async throws -> T {
        try await sessions.withSession { session in
            try await session.transaction(
                .write, lock: .submission(token: token, writers: Self.writerLockClass, tokens: Self.tokenLockClass), body)
        }
    }

    /// A write at `READ COMMITTED` without the writers' lock, beside the other writes: its rows are
    /// content-addressed, inserted with `ON CONFLICT DO NOTHING` (two replicas storing the same context at once write
    /// the same rows, and the second insert of a row waits for the first and then does nothing), and no rule uses
    /// them until the caller, having stored them all, records the context's row with a write under the lock. Chunks
    /// of a context are megabytes a transaction; under the lock they held every replica's leases and reports for as
    /// long as the disk took.
    public func writeContentAddressed<T: Sendable>(_ body: @Sendable (SQLTransaction) throws -> T) async throws -> T {
        try await sessions.withSession { session in try await session.transaction(.write, lock: .none, body) }
    }

    /// The advisory lock class of the one writer ("MFWR"); the object key is the schema's `hashtext`.
    static let writerLockClass: Int32 = 0x4D46_5752
    /// The advisory lock class of one build's writes ("MFBL"); the object key hashes the schema and the build's id.
    static let buildLockClass: Int32 = 0x4D46_424C
    /// The advisory lock class of one agent's polls ("MFAG"); the object key hashes the schema and the agent's id.
    static let agentLockClass: Int32 = 0x4D46_4147
    /// The advisory lock class of one image's tags ("MFIM"); the object key hashes the schema and the image.
    static let imageLockClass: Int32 = 0x4D46_494D
    /// The advisory lock class of one token's submissions ("MFTK"); the object key hashes the schema and the token.
    static let tokenLockClass: Int32 = 0x4D46_544B

    /// Creates or updates the schema. Holds a session advisory lock for the schema (``PostgresSchema/migrationLockKey``)
    /// meanwhile, so replicas starting together migrate one after the other and each sees what the other applied.
    public func migrate() async throws {
        try await sessions.withSession { session in try await session.migrate() }
    }

    /// Runs one statement outside the store's transactions (autocommit), e.g. `CREATE SCHEMA` in test setup.
    public func execute(_ sql: String) async throws {
        try await sessions.withSession { session in try await session.execute(sql) }
    }

    /// The clock sample's half round trip: the most the backend's ``clock`` can be off from the server's clock
    /// when it was sampled (plus the local monotonic clock's drift since, at most ``ServerClock/resampleInterval``).
    public var clockUncertainty: Duration { shared.clock.uncertainty }

    /// How many connections are open now (sessions are made on demand), for diagnostics and tests.
    public var openSessionCount: Int { sessions.count }

    public func close() async {
        await sessions.close()
    }
}

/// What all sessions of one backend share. Every property is immutable or guards its own state.
final class PostgresShared: Sendable {
    let configuration: PostgresConfiguration
    let connectionConfiguration: PostgresConnection.Configuration
    let logger: Logger
    let clock = ServerClock()
    let statements = StatementCache()
    let eventLoopGroup: any EventLoopGroup = PostgresConnection.defaultEventLoopGroup

    init(configuration: PostgresConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        var connection = PostgresConnection.Configuration(
            host: configuration.host, port: configuration.port, username: configuration.user,
            password: configuration.password, database: configuration.database,
            tls: try Self.tls(configuration))
        connection.options.connectTimeout = .seconds(Int64(configuration.connectTimeout))
        var parameters = [("application_name", configuration.applicationName)]
        if let schema = configuration.schema { parameters.append(("search_path", schema)) }
        connection.options.additionalStartupParameters = parameters
        self.connectionConfiguration = connection
    }

    static func tls(_ configuration: PostgresConfiguration) throws -> PostgresConnection.Configuration.TLS {
        var tls = TLSConfiguration.makeClientConfiguration()
        switch configuration.sslMode {
        case .disable:
            return .disable
        case .require:
            tls.certificateVerification = configuration.sslRootCertificate == nil ? .none : .noHostnameVerification
        case .verifyCA:
            tls.certificateVerification = .noHostnameVerification
        case .verifyFull:
            tls.certificateVerification = .fullVerification
        }
        if let file = configuration.sslRootCertificate { tls.trustRoots = .file(file) }
        do {
            return .require(try NIOSSLContext(configuration: tls))
        } catch {
            throw PostgresConfigurationError(
                "cannot set up TLS for the database at \(configuration.address) (sslmode="
                    + "\(configuration.sslMode.rawValue)"
                    + (configuration.sslRootCertificate.map { ", sslrootcert=\($0)" } ?? "")
                    + "): \(error); sslrootcert must be a PEM file of CA certificates")
        }
    }
}

/// Hands out the backend's sessions: the most recently idle one first, a new one while fewer than the pool size
/// exist, otherwise the caller waits (suspended, in arrival order) for one to come back.
final class SessionPool: Sendable {
    private struct State {
        var idle: [PostgresSession] = []
        var all: [PostgresSession] = []
        var waiters: [CheckedContinuation<PostgresSession, any Error>] = []
        var closed = false
    }

    private let shared: PostgresShared
    private let state = Mutex(State())

    init(shared: PostgresShared) { self.shared = shared }

    var count: Int { state.withLock { $0.all.count } }

    func withSession<T: Sendable>(_ body: (PostgresSession) async throws -> T) async throws -> T {
        let session = try await acquire()
        defer { release(session) }
        return try await body(session)
    }

    private enum Acquired {
        case session(PostgresSession)
        case wait
    }

    private func acquire() async throws -> PostgresSession {
        let closedError = SQLError.unavailable("the store's connection to \(shared.configuration.address) is closed")
        let first: Acquired = try state.withLock { state in
            if state.closed { throw closedError }
            if let session = state.idle.popLast() { return .session(session) }
            if state.all.count < shared.configuration.poolSize {
                let session = PostgresSession(shared: shared, number: state.all.count + 1)
                state.all.append(session)
                return .session(session)
            }
            return .wait
        }
        if case .session(let session) = first { return session }
        return try await withCheckedThrowingContinuation { continuation in
            let ready: Result<PostgresSession, any Error>? = state.withLock { state in
                if state.closed { return .failure(closedError) }
                if let session = state.idle.popLast() { return .success(session) }
                state.waiters.append(continuation)
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }

    private func release(_ session: PostgresSession) {
        let waiter: CheckedContinuation<PostgresSession, any Error>? = state.withLock { state in
            if !state.waiters.isEmpty { return state.waiters.removeFirst() }
            state.idle.append(session)
            return nil
        }
        waiter?.resume(returning: session)
    }

    func close() async {
        let (sessions, waiters) = state.withLock { state in
            state.closed = true
            defer { state.waiters = [] }
            return (state.all, state.waiters)
        }
        for waiter in waiters {
            waiter.resume(throwing: SQLError.unavailable("the store's connection to \(shared.configuration.address) was closed"))
        }
        // A session in use finishes its transaction first: the actor runs one call at a time.
        for session in sessions { await session.shutdown() }
    }
}

/// The database server's clock, as seen from here.
///
/// A sample reads `extract(epoch FROM clock_timestamp())` and assumes the server read it halfway through the round
/// trip; after that the time is the sampled server time plus the local *monotonic* time elapsed, so a step of the
/// local wall clock (NTP) does not move it. The error is at most half the sample's round trip (asymmetric network
/// delay) plus the drift of the local monotonic clock against the server's since the sample (typically under
/// 100 ppm, i.e. 1 ms over the ``resampleInterval``). A session resamples before its next transaction once the
/// sample is older than ``resampleInterval``; a newer sample with a shorter round trip always replaces the old one.
final class ServerClock: Sendable {
    static let resampleInterval: Duration = .seconds(10)

    struct Sample {
        var serverEpoch: Double
        var taken: ContinuousClock.Instant
        var roundTrip: Duration
    }

    private let sample = Mutex<Sample?>(nil)

    func now() -> Date {
        guard let sample = sample.withLock({ $0 }) else { return Date() }
        return Date(timeIntervalSince1970: sample.serverEpoch + (ContinuousClock.now - sample.taken).seconds)
    }

    var isDue: Bool {
        sample.withLock { sample in
            guard let sample else { return true }
            return ContinuousClock.now - sample.taken > Self.resampleInterval
        }
    }

    var uncertainty: Duration { sample.withLock { $0.map { $0.roundTrip / 2 } ?? .seconds(0) } }

    func record(serverEpoch: Double, sent: ContinuousClock.Instant, received: ContinuousClock.Instant) {
        let roundTrip = received - sent
        let new = Sample(serverEpoch: serverEpoch, taken: sent + roundTrip / 2, roundTrip: roundTrip)
        sample.withLock { sample in
            if let old = sample, ContinuousClock.now - old.taken <= Self.resampleInterval, old.roundTrip < roundTrip {
                return
            }
            sample = new
        }
    }
}

extension Duration {
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
