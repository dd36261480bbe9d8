import Foundation

/// What the store needs from a database engine: snapshot reads, writes one at a time, its schema, and a clock.
/// ``SQLiteBackend`` (embedded, the default) and ``PostgresBackend`` (shared by replicas) implement it; the
/// store's rules are written once over ``SQLTransaction``.
public protocol StoreBackend: Sendable {
    var dialect: SQLDialect { get }

    /// Runs `body` in a read-only transaction that sees one consistent snapshot.
    func read<T: Sendable>(_ body: @Sendable (SQLTransaction) throws -> T) async throws -> T

    /// Runs `body` in a write transaction whose effect is as if no other write ran at the same time. A backend
    /// may run `body` again after the engine aborted it for a conflict (PostgreSQL's deadlocks or serialization
    /// failures), so `body` changes nothing outside the database.
    func write<T: Sendable>(_ body: @Sendable (SQLTransaction) throws -> T) async throws -> T

    /// Runs `body` in a write transaction that need not wait for other writes: for idempotent inserts of
    /// content-addressed rows that no rule uses until the caller, having stored them all, records that with an
    /// ordinary write (the chunks of an uploaded context, then the context's row). Same retry contract as
    /// ``write(_:)``.
    func writeContentAddressed<T: Sendable>(_ body: @Sendable (SQLTransaction) throws -> T) async throws -> T

    /// Runs `body` in a write transaction whose effect is as if no other write ran at the same time, where `body`
    /// reads and changes only rows of the build of job `jobId`, the tags of an image once it locked them
    /// (``SQLTransaction/lockImage(_:)``), and at most blindly updates others (rows it does not read, which such a write
    /// of their own build does not read either). A backend may run it beside such writes of other builds; never beside
    /// an ordinary write, one of the same build, or one holding the same image's tags. Same retry contract as
    /// ``write(_:)``.
    func write<T: Sendable>(buildOfJob jobId: String, _ body: @Sendable (SQLTransaction) throws -> T) async throws -> T

    /// ``write(buildOfJob:_:)`` for the build of publishing run (outbox row) `id`.
    func write<T: Sendable>(buildOfPublication id: Int64, _ body: @Sendable (SQLTransaction) throws -> T) async throws -> T

    /// Runs `body` in a write transaction for a poll of agent `agentId`, whose effect is as if no other write ran at
    /// the same time, where `body` reads and changes the agent's rows (its row, its attempts) and the rows of builds it
    /// locks first with ``SQLTransaction/lockBuild(_:)``, in the order the queue hands them out, and at most reads rows
    /// of other builds that it checks again under their build's lock before it acts on them. A backend may run it
    /// beside writes of other agents and builds; never beside an ordinary write, another of the same agent, or one of
    /// a build it locked. Same retry contract as ``write(_:)``.
    func write<T: Sendable>(agent agentId: String, _ body: @Sendable (SQLTransaction) throws -> T) async throws -> T

    /// Runs `body` in a write transaction that submits a build: it inserts the new build's rows (no other write knows
    /// them before it commits), touches rows that only ordinary writes remove, and, with `token`, counts that token's
    /// unfinished builds. A backend may run it beside any write but an ordinary one or another submission for
    /// `token`. Same retry contract as ``write(_:)``.
    func write<T: Sendable>(submittingFor token: String?, _ body: @Sendable (SQLTransaction) throws -> T) async throws -> T

    /// Brings the schema up to date under a lock every process on the database shares, and refuses a database
    /// whose schema is newer than this build knows (``SQLError/other(_:)`` naming both versions).
    func migrate() async throws

    /// The time every process using this database agrees on, for leases and deadlines: the engine's clock for a
    /// shared database, the local clock for an embedded one.
    var clock: @Sendable () -> Date { get }

    /// Ends the backend's connections; the store is not used afterwards.
    func close() async
}

extension StoreBackend {
    /// One writer at a time is all an engine like SQLite has: there, such a write is an ordinary one.
    public func writeContentAddressed<T: Sendable>(_ body: @Sendable (SQLTransaction) throws -> T) async throws -> T {
        try await write(body)
    }

    /// One writer at a time: a write scoped to one build is an ordinary one there too.
    public func write<T: Sendable>(buildOfJob jobId: String, _ body: @Sendable (SQLTransaction) throws -> T) async throws -> T {
        try await write(body)
    }

    /// One writer at a time: a publishing run's write is an ordinary one there too.
    public func write<T: Sendable>(buildOfPublication id: Int64, _ body: @Sendable (SQLTransaction) throws -> T) async throws -> T
    {
        try await write(body)
    }

    /// One writer at a time: a submission is an ordinary write there too.
    public func write<T: Sendable>(
        submittingFor token: String?, _ body: @Sendable (SQLTransaction) throws -> T
    ) async throws -> T {
        try await write(body)
    }

    /// One writer at a time: a poll's write is an ordinary one there too.
    public func write<T: Sendable>(agent agentId: String, _ body: @Sendable (SQLTransaction) throws -> T) async throws -> T {
        try await write(body)
    }
}

/// The schema versions this build knows, in order; a database that has applied any other is newer than this build.
enum SchemaVersions {
    static let known = ["v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11", "v12", "v13"]

    static func refuseNewer(applied: [String], database: String) throws {
        let unknown = applied.filter { !known.contains($0) }
        guard unknown.isEmpty else {
            throw SQLError.other(
                "the database \(database) has schema \(unknown.joined(separator: ", ")), newer than this manifold "
                    + "knows (up to \(known.last ?? "none")): upgrade this replica to the version that migrated it")
        }
    }
}
