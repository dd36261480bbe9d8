import Foundation
import Logging
import ManifoldStore

/// Where a coordinator keeps its state: the embedded SQLite file of its state directory, or the PostgreSQL
/// database its replicas share (`database_url`).
struct CoordinatorDatabase: Sendable {
    let store: Store
    /// Held while serving on SQLite: a second coordinator on the same file refuses to start. Replicas on
    /// PostgreSQL may share a state directory, so they take none.
    let lock: StateDirectoryLock?
    /// How replicas wake each other; nil for the embedded database.
    let wakeups: (any WakeupChannel)?

    var isShared: Bool { wakeups != nil }

    /// Opens the configured database, creating nothing: `manifold init` creates it.
    static func open(
        state: StateDirectory, settings: CoordinatorSettings, storeSettings: StoreSettings,
        environment: [String: String], logger: Logger
    ) async throws -> CoordinatorDatabase {
        guard let url = settings.databaseURL else {
            guard FileManager.default.fileExists(atPath: state.database.path) else {
                throw CoordinatorError(
                    "\(state.root.path) is not an initialised state directory (no manifold.db); run `manifold init --state-dir \(state.root.path)` first"
                )
            }
            // Before the database is opened: a second coordinator must not touch it at all.
            let lock = try StateDirectoryLock.acquire(state)
            do {
                let secretsKey = try state.loadOrCreateSecretsKey()
                let store = try Store(path: state.database.path, settings: storeSettings, secretsKey: secretsKey)
                return CoordinatorDatabase(store: store, lock: lock, wakeups: nil)
            } catch {
                lock.release()
                throw error
            }
        }
        guard FileManager.default.fileExists(atPath: state.caCertificate.path) else {
            throw CoordinatorError(
                "\(state.root.path) has no CA certificate; prepare it with `manifold init --database …` (the first replica) "
                    + "or copy the state directory of an existing replica (see README, Replicas)")
        }
        // A replica never makes a key of its own: stored secrets are sealed with the one `init` made.
        guard FileManager.default.fileExists(atPath: state.secretsKey.path) else {
            throw CoordinatorError(
                "\(state.secretsKey.path) is missing: every replica needs the secrets key of the state directory "
                    + "`manifold init --database` made (it decrypts build secrets any replica stored); copy it from there")
        }
        let secretsKey = try state.loadOrCreateSecretsKey()
        let backend = try await connect(url: url, settings: settings, environment: environment, logger: logger)
        do {
            let store = try await Store.open(backend: backend, settings: storeSettings, secretsKey: secretsKey)
            return CoordinatorDatabase(store: store, lock: nil, wakeups: PostgresWakeups(backend: backend))
        } catch {
            await backend.close()
            throw error
        }
    }

    /// Connects to PostgreSQL with the password from `database_password_file` or `MANIFOLD_DATABASE_PASSWORD`.
    static func connect(
        url: String, settings: CoordinatorSettings, environment: [String: String], logger: Logger
    ) async throws -> PostgresBackend {
        let password = try PostgresConfiguration.readPassword(file: settings.databasePasswordFile, environment: environment)
        var configuration = try PostgresConfiguration(url: url, password: password)
        configuration.poolSize = settings.databasePoolSize
        return try await PostgresBackend.connect(configuration, logger: logger)
    }

    func close() async {
        await store.backend.close()
        lock?.release()
    }
}

/// Replica wake-ups over PostgreSQL's `LISTEN`/`NOTIFY`, on the channel `manifold`.
struct PostgresWakeups: WakeupChannel {
    static let channel = "manifold"
    let backend: PostgresBackend

    func publish(_ payload: String) async throws {
        try await backend.notify(channel: Self.channel, payload: payload)
    }

    func listen(_ receive: @escaping @Sendable (WakeupEvent) async -> Void) async throws {
        try await backend.listen(channel: Self.channel) { event in
            switch event {
            case .listening: await receive(.listening)
            case .message(let payload): await receive(.message(payload))
            }
        }
    }
}
