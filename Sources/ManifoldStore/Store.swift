import CoreMetrics
import Foundation
import ManifoldAPI
import ManifoldCore
import Synchronization

/// The coordinator's durable state, on SQLite (embedded, the default) or PostgreSQL (shared by replicas).
///
/// Every operation is one transaction of its ``backend``; the rules are written once, over ``SQLTransaction``.
/// Time comes from `now` — the backend's clock unless a test injects one — so lease expiry and backoff are tested
/// without sleeping, and replicas on one database agree on it.
public final class Store: Sendable {
    public let backend: any StoreBackend
    let now: @Sendable () -> Date
    public let settings: StoreSettings
    /// Whether the last writes reached the disk; `/readyz` and the lease reaper read it.
    public let writeHealth = WriteHealth()
    private let committedWrites = Atomic<Int>(0)
    private let writesOpen = Atomic<Int>(0)
    private let fetchedLogBytes = Atomic<Int>(0)
    /// Where transaction times go, once ``recordTransactionDurations(with:)`` named a factory.
    private let transactionTimers = Mutex<TransactionTimers?>(nil)
    /// Encrypts build secrets at rest; without it, builds with secrets are refused.
    let secretsKey: SecretsKey?
    /// Reports waiting for verification, decoded, by attempt epoch: what ``pendingVerifications()`` decodes never
    /// changes while the attempt waits, and the verifier reads the list again after every check. Holds only the
    /// attempts of the last read (see there), so it never outgrows the reports waiting.
    let decodedVerifications = Mutex<[Int64: PendingVerification]>([:])

    /// Who this store is among the processes on one database: outbox claims name it. The embedded database has one
    /// coordinator (the state directory lock sees to it), which is `embedded` across restarts, so after a crash it
    /// takes back its own claims at once; each process on PostgreSQL is a replica with an id of its own.
    public let replica: String

    public typealias Synchronous = SQLiteBackend.Synchronous

    init(
        backend: any StoreBackend, settings: StoreSettings, secretsKey: SecretsKey?, replica: String,
        now: @escaping @Sendable () -> Date
    ) {
        self.backend = backend
        self.settings = settings
        self.secretsKey = secretsKey
        self.replica = replica
        self.now = now
    }

    /// Opens (creating if needed) the SQLite database at `path` and runs pending migrations. `secretsKey` encrypts
    /// build secrets at rest (the coordinator passes the key of its state directory); a store without one refuses
    /// builds with secrets.
    public convenience init(
        path: String, settings: StoreSettings = StoreSettings(), synchronous: Synchronous = .full,
        secretsKey: SecretsKey? = nil, replica: String = "embedded", now: @escaping @Sendable () -> Date = { Date() }
    ) throws {
        let backend = try SQLiteBackend(path: path, synchronous: synchronous)
        try backend.migrateSynchronously()
        self.init(backend: backend, settings: settings, secretsKey: secretsKey, replica: replica, now: now)
        try backend.writeSynchronously { db in try self.sealLegacySecrets(db) }
    }

    /// Opens a store on `backend`, bringing its schema up to date. Without `now`, time comes from the backend's
    /// clock (the database server's for PostgreSQL).
    public static func open(
        backend: any StoreBackend, settings: StoreSettings = StoreSettings(), secretsKey: SecretsKey? = nil,
        replica: String? = nil, now: (@Sendable () -> Date)? = nil
    ) async throws -> Store {
        try await backend.migrate()
        let store = Store(
            backend: backend, settings: settings, secretsKey: secretsKey,
            replica: replica ?? (backend.dialect == .sqlite ? "embedded" : "replica-" + UUID().uuidString.lowercased()),
            now: now ?? backend.clock)
        try await store.write { db in try store.sealLegacySecrets(db) }
        return store
    }

    /// The store's clock: the one time source for leases, deadlines and backoff.
    public func currentTime() -> Date { now() }

    /// The SQLite file's journal mode, for checks and diagnostics (always `wal`).
    public func journalMode() throws -> String {
        guard let sqlite = backend as? SQLiteBackend else { return "" }
        return try sqlite.journalMode()
    }

    /// `PRAGMA synchronous` of the SQLite writer and of a reader connection (2 = FULL), for checks and diagnostics.
    public func synchronousModes() throws -> (writer: Int, reader: Int) {
        guard let sqlite = backend as? SQLiteBackend else { return (-1, -1) }
        return try sqlite.synchronousModes()
    }

    /// Write transactions this store committed since it was opened (for metrics and for tests that check which paths
    /// write).
    public var writesCommitted: Int { committedWrites.load(ordering: .relaxed) }

    /// Write transactions of this store under way right now (for checks that some work happens outside them).
    public var openWriteTransactions: Int { writesOpen.load(ordering: .relaxed) }

    /// Log chunk bytes that ``readLog(buildId:platform:attempt:offset:limit:)`` fetched from the database since the
    /// store was opened (for tests that check a read touches about what it returns, not the whole log).
    public var logBytesFetched: Int { fetchedLogBytes.load(ordering: .relaxed) }

    func countLogBytesFetched(_ count: Int) { fetchedLogBytes.add(count, ordering: .relaxed) }

    /// Times every later read and write transaction into `manifold_store_transaction_duration_seconds` (label
    /// `kind`: `read` or `write`) with `factory`. The coordinator passes its own factory, so a store counts for its
    /// coordinator only, never through the process-wide `MetricsSystem`.
    public func recordTransactionDurations(with factory: any MetricsFactory) {
        let timers = TransactionTimers(
            read: CoreMetrics.Timer(label: TransactionTimers.label, dimensions: [("kind", "read")], factory: factory),
            write: CoreMetrics.Timer(label: TransactionTimers.label, dimensions: [("kind", "write")], factory: factory))
        transactionTimers.withLock { $0 = timers }
    }

    /// One read transaction (a consistent snapshot), timed.
    func read<T: Sendable>(_ body: @Sendable (SQLTransaction) throws -> T) async throws -> T {
        let start = ContinuousClock.now
        defer { transactionTimers.withLock { $0?.read }?.record(since: start) }
        return try await backend.read(body)
    }

    /// Which other writes a write may run beside (on PostgreSQL; SQLite runs every write alone).
    enum WriteScope: Sendable {
        /// Alone: the rules may read and change anything.
        case all
        /// Beside any write (``StoreBackend/writeContentAddressed(_:)``).
        case contentAddressed
        /// Reads and changes only that job's build's rows (and blindly updates rows no such write reads), and an
        /// image's tags after locking them (``StoreBackend/write(buildOfJob:_:)``).
        case buildOfJob(String)
        /// The same for the build of a publishing run (its outbox row).
        case buildOfPublication(Int64)
        /// A poll's, which locks each build before it reads its rows (``StoreBackend/write(agent:_:)``).
        case agent(String)
        /// A new build's (``StoreBackend/write(submittingFor:_:)``), counting the token's unfinished builds.
        case submission(token: String?)
    }

    /// One write transaction. A failure of the storage itself (disk full, I/O error, read-only file system) is
    /// recorded in ``writeHealth`` and thrown as ``StoreError/storageUnavailable(_:)``: the transaction was rolled
    /// back, nothing of it was kept.
    func write<T: Sendable>(_ scope: WriteScope = .all, _ updates: @Sendable (SQLTransaction) throws -> T) async throws -> T {
        writesOpen.add(1, ordering: .relaxed)
        let start = ContinuousClock.now
        defer {
            writesOpen.subtract(1, ordering: .relaxed)
            transactionTimers.withLock { $0?.write }?.record(since: start)
        }
        do {
            let value: T
            switch scope {
            case .all: value = try await backend.write(updates)
            case .contentAddressed: value = try await backend.writeContentAddressed(updates)
            case .buildOfJob(let jobId): value = try await backend.write(buildOfJob: jobId, updates)
            case .buildOfPublication(let id): value = try await backend.write(buildOfPublication: id, updates)
            case .agent(let agentId): value = try await backend.write(agent: agentId, updates)
            case .submission(let token): value = try await backend.write(submittingFor: token, updates)
            }
            committedWrites.add(1, ordering: .relaxed)
            writeHealth.succeeded(at: now())
            return value
        } catch SQLError.storage(let reason) {
            writeHealth.failed(at: now(), reason: reason)
            throw StoreError.storageUnavailable(
                "the coordinator cannot write its database (\(reason)); nothing was changed. "
                    + "Free space where the database lives and retry")
        } catch SQLError.unavailable(let reason) {
            writeHealth.failed(at: now(), reason: reason)
            throw StoreError.storageUnavailable(
                "the coordinator cannot reach its database (\(reason)); nothing was changed. Retry when it is back")
        }
    }

    static func timestamp(_ date: Date) -> Double { date.timeIntervalSince1970 }
    static func date(_ value: Double?) -> Date? { value.map { Date(timeIntervalSince1970: $0) } }

    static func json<T: Encodable>(_ value: T) throws -> String {
        String(decoding: try CanonicalJSON.encode(value), as: UTF8.self)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        try JSONDecoder().decode(type, from: Data(text.utf8))
    }

    static func newID(_ prefix: String) -> String {
        prefix + "_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(20)
    }
}

/// Scheduling knobs the store applies inside its transactions.
public struct StoreSettings: Sendable {
    public var leaseTTL: TimeInterval
    public var defaultMaxAttempts: Int
    /// Delay before retry n (1-based) is `retryBackoff * 2^(n-1)`, capped at `maxRetryBackoff`.
    public var retryBackoff: TimeInterval
    public var maxRetryBackoff: TimeInterval
    /// The most log bytes kept per attempt; appends past it are refused (413) and the build goes on.
    public var maxLogBytesPerAttempt: Int64
    /// `{tag}-{os}-{arch}{-variant}` and friends; rendered by `childTag`.
    public var childTag: @Sendable (_ template: String?, _ tag: String, _ platform: Platform) -> String
    /// Repositories besides the build's own that an agent may report its image in (`staging_repositories`).
    public var stagingRepositories: [RepositoryPattern]

    public init(
        leaseTTL: TimeInterval = 60, defaultMaxAttempts: Int = 3, retryBackoff: TimeInterval = 5,
        maxRetryBackoff: TimeInterval = 300, maxLogBytesPerAttempt: Int64 = 64 << 20,
        childTag: @escaping @Sendable (String?, String, Platform) -> String = StoreSettings.defaultChildTag,
        stagingRepositories: [RepositoryPattern] = []
    ) {
        self.stagingRepositories = stagingRepositories
        self.leaseTTL = leaseTTL
        self.defaultMaxAttempts = defaultMaxAttempts
        self.retryBackoff = retryBackoff
        self.maxRetryBackoff = maxRetryBackoff
        self.maxLogBytesPerAttempt = maxLogBytesPerAttempt
        self.childTag = childTag
    }

    /// `TAG-os-arch[-variant]`, e.g. `1.0-linux-arm64-v8`; Windows adds the OS build: `1.0-windows-amd64-10.0.20348`.
    public static let defaultChildTag: @Sendable (String?, String, Platform) -> String = { _, tag, platform in
        var parts = [tag, platform.os, platform.architecture]
        if let variant = platform.variant { parts.append(variant) }
        if platform.os == "windows", let version = platform.osVersion.flatMap(Platform.windowsBuild) { parts.append(version) }
        let joined = parts.joined(separator: "-").map { character -> Character in
            character.isLetter || character.isNumber || character == "." || character == "_" || character == "-" ? character : "-"
        }
        return String(String(joined).prefix(128))
    }

    /// How long a replica's claim on an outbox row lasts once it starts the tag PUTs: one lease TTL. Another replica
    /// takes the row over only after that (the claimer died); PUTs slower than that are repeated with the same
    /// content, which the registry takes as a no-op.
    public var publicationClaimTTL: TimeInterval { leaseTTL }

    /// How long a replica's claim on a report to verify lasts: one lease TTL. The verifier renews it while a check
    /// runs longer (copies take minutes); a dead replica's claims run out after it and another replica checks.
    public var verificationClaimTTL: TimeInterval { leaseTTL }

    /// How long a fresh grant lasts before the agent confirms it (its first heartbeat, log chunk or report comes
    /// at once): one lease TTL, after which a lease whose poll answer was lost goes back to the queue uncounted.
    /// (A poll answer can reach a live agent late on a loaded coordinator; a shorter window took such leases away.)
    public var acknowledgeWindow: TimeInterval { leaseTTL }

    func backoff(afterAttempt attempt: Int) -> TimeInterval {
        min(retryBackoff * pow(2, Double(max(0, attempt - 1))), maxRetryBackoff)
    }
}

/// Whether writes reach the disk: the time of the last failure and of the last success after it.
public final class WriteHealth: Sendable {
    private let state = Mutex<(failedAt: Date?, reason: String?, succeededAt: Date?)>((nil, nil, nil))

    func failed(at date: Date, reason: String) {
        state.withLock {
            $0.failedAt = date; $0.reason = reason
        }
    }
    func succeeded(at date: Date) { state.withLock { $0.succeededAt = date } }

    /// The reason writes fail now: the last write failed and none succeeded since.
    public var failure: String? {
        state.withLock { state in
            guard let failed = state.failedAt else { return nil }
            if let succeeded = state.succeededAt, succeeded > failed { return nil }
            return state.reason
        }
    }

    /// When a write last failed, if ever.
    public var lastFailure: Date? { state.withLock { $0.failedAt } }
}

/// Why the store refused an operation. The coordinator maps each case to an HTTP status.
public enum StoreError: Error, CustomStringConvertible, Equatable, Sendable {
    case notFound(kind: String, id: String)
    /// A call from a superseded or foreign attempt (409).
    case staleAttempt(jobId: String, epoch: Int64, reason: String)
    /// A state transition that is not allowed now (409).
    case conflict(String)
    case invalid(field: String, message: String)
    /// A limit was reached (413).
    case limitExceeded(String)
    /// The caller may not touch this (403), e.g. an agent calling about another agent's attempt.
    case forbidden(String)
    /// The database cannot be written (disk full, I/O error): 507, nothing changed.
    case storageUnavailable(String)
    /// The credential no longer works (401), e.g. a join token that expired or was used up meanwhile.
    case unauthenticated(String)
    /// A per-token quota is used up (429), e.g. too many unfinished builds.
    case quotaExceeded(String)

    public var description: String {
        switch self {
        case .notFound(let kind, let id): return "\(kind) \(id) does not exist"
        case .staleAttempt(let jobId, let epoch, let reason):
            return "attempt epoch \(epoch) of job \(jobId) is no longer current: \(reason)"
        case .conflict(let message): return message
        case .invalid(let field, let message): return "\(field): \(message)"
        case .limitExceeded(let message), .forbidden(let message), .storageUnavailable(let message),
            .unauthenticated(let message), .quotaExceeded(let message):
            return message
        }
    }
}

/// The store's two transaction timers, made with the factory the coordinator gave.
struct TransactionTimers: Sendable {
    static let label = "manifold_store_transaction_duration_seconds"
    var read: CoreMetrics.Timer
    var write: CoreMetrics.Timer
}

extension CoreMetrics.Timer {
    fileprivate func record(since start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
    }
}
