import Foundation
import GRDB
import ManifoldAPI
import ManifoldCore
import Synchronization

/// The coordinator's durable state: one SQLite file in WAL mode with `synchronous = FULL`, so a state
/// change acknowledged to a caller survives `kill -9` and power loss.
///
/// Every operation is one transaction. Time comes from `now`, so lease expiry and backoff are tested
/// without sleeping.
public final class Store: Sendable {
    let database: DatabasePool
    let now: @Sendable () -> Date
    public let settings: StoreSettings
    /// Whether the last writes reached the disk; `/readyz` and the lease reaper read it.
    public let writeHealth = WriteHealth()
    /// Encrypts build secrets at rest; without it, builds with secrets are refused.
    let secretsKey: SecretsKey?

    /// How commits reach the disk. `full` fsyncs every commit before it is acknowledged (the coordinator always
    /// runs so); `normal` fsyncs only at checkpoints and can lose the last commits on power loss — it exists so a
    /// benchmark can measure what durability costs.
    public enum Synchronous: String, Sendable {
        case full = "FULL"
        case normal = "NORMAL"
    }

    /// Opens (creating if needed) the database at `path` and runs pending migrations. `secretsKey` encrypts build
    /// secrets at rest (the coordinator passes the key of its state directory); a store without one refuses
    /// builds with secrets.
    public init(
        path: String, settings: StoreSettings = StoreSettings(), synchronous: Synchronous = .full,
        secretsKey: SecretsKey? = nil, now: @escaping @Sendable () -> Date = { Date() }
    ) throws {
        var configuration = Configuration()
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(synchronous.rawValue)")
            try db.execute(sql: "PRAGMA foreign_keys = ON")
            // Deleted rows are zeroed in their page (at no extra I/O); build secrets are also overwritten in place
            // before they are deleted (see Store+Secrets).
            try db.execute(sql: "PRAGMA secure_delete = FAST")
        }
        configuration.busyMode = .timeout(10)
        database = try DatabasePool(path: path, configuration: configuration)
        // GRDB switches the writer to `synchronous = NORMAL` when it enables WAL, after `prepareDatabase` ran:
        // set FULL again on the one writer connection, so every commit is fsync'd before it is acknowledged.
        try database.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = \(synchronous.rawValue)") }
        self.now = now
        self.settings = settings
        self.secretsKey = secretsKey
        try Schema.migrator.migrate(database)
        try sealLegacySecrets()
    }

    /// The store's clock: the one time source for leases, deadlines and backoff.
    public func currentTime() -> Date { now() }

    /// The file's journal mode, for checks and diagnostics (always `wal`).
    public func journalMode() throws -> String {
        try database.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") ?? "" }
    }

    /// `PRAGMA synchronous` of the writer and of a reader connection (2 = FULL), for checks and diagnostics.
    public func synchronousModes() throws -> (writer: Int, reader: Int) {
        let writer = try database.writeWithoutTransaction { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1 }
        let reader = try database.read { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1 }
        return (writer, reader)
    }

    /// One write transaction. A failure of the storage itself (disk full, I/O error, read-only file system) is
    /// recorded in ``writeHealth`` and thrown as ``StoreError/storageUnavailable(_:)``: the transaction was rolled
    /// back, nothing of it was kept.
    func write<T: Sendable>(_ updates: @Sendable (Database) throws -> T) async throws -> T {
        do {
            let value = try await database.write(updates)
            writeHealth.succeeded(at: now())
            return value
        } catch let error as DatabaseError where Self.isStorageFailure(error) {
            writeHealth.failed(at: now(), reason: error.message ?? "\(error.resultCode)")
            throw StoreError.storageUnavailable(
                "the coordinator cannot write its database (\(error.resultCode): \(error.message ?? "storage failure")); "
                    + "nothing was changed. Free space on the file system of its state directory and retry")
        }
    }

    static func isStorageFailure(_ error: DatabaseError) -> Bool {
        [.SQLITE_FULL, .SQLITE_IOERR, .SQLITE_READONLY, .SQLITE_CANTOPEN].contains(error.resultCode)
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
