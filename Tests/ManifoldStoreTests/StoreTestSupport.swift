import Foundation
import Logging
import ManifoldAPI
import ManifoldCore
import ManifoldStoreTestSupport
import ManifoldTestSupport
import Synchronization
import Testing

@testable import ManifoldStore

/// A clock tests move by hand.
final class TestClock: Sendable {
    private let current = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
    var now: Date { current.withLock { $0 } }
    func advance(_ seconds: TimeInterval) { current.withLock { $0 = $0.addingTimeInterval(seconds) } }
}

/// The engine a store test runs on. The store suite runs once per engine: `MANIFOLD_TEST_STORE=postgres` selects
/// PostgreSQL (a real server, see `TestPostgres`); anything else, SQLite. A test about one engine's own behaviour
/// (the SQLite file's pages, its old migrations) names that engine instead of taking the selected one.
enum TestBackend: String, Sendable {
    case sqlite
    case postgres

    static let selected: TestBackend =
        ProcessInfo.processInfo.environment["MANIFOLD_TEST_STORE"].flatMap(TestBackend.init(rawValue:)) ?? .sqlite
}

/// A store on a real database — a SQLite file in a fresh directory, or a fresh schema of the test PostgreSQL
/// server — removed at the end.
final class StoreFixture: Sendable {
    let directory: URL
    let clock = TestClock()
    let store: Store
    let kind: TestBackend
    /// The key the store seals build secrets with.
    let secretsKey = SecretsKey.generate()
    /// Opens another store on the same database, as a restarted coordinator (or a second replica) would.
    private let open: @Sendable (StoreSettings, SecretsKey?, String?, @escaping @Sendable () -> Date) async throws -> Store

    init(
        settings: StoreSettings = StoreSettings(leaseTTL: 60, defaultMaxAttempts: 3, retryBackoff: 5),
        backend: TestBackend = .selected
    ) async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("manifold-store-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        kind = backend
        let path = directory.appendingPathComponent("manifold.db").path
        switch backend {
        case .sqlite:
            open = { settings, key, replica, now in
                try Store(path: path, settings: settings, secretsKey: key, replica: replica ?? "embedded", now: now)
            }
        case .postgres:
            let configuration = try await TestPostgres.shared.freshSchema()
            open = { settings, key, replica, now in
                try await Store.open(
                    backend: try await PostgresBackend.connect(configuration, logger: Logger(label: "manifold.test.store")),
                    settings: settings, secretsKey: key, replica: replica, now: now)
            }
        }
        let clock = clock
        store = try await open(settings, secretsKey, nil, { clock.now })
    }

    deinit { try? FileManager.default.removeItem(at: directory) }

    /// The SQLite file (for tests about SQLite itself, which create their fixture with `backend: .sqlite`).
    var databasePath: String { directory.appendingPathComponent("manifold.db").path }

    /// Opens the same database again, as a restarted coordinator would.
    func reopen() async throws -> Store {
        let clock = clock
        return try await open(store.settings, secretsKey, nil, { clock.now })
    }

    /// Another store on the same database with its own settings, key or clock.
    /// `replica` names it among the processes on the database (default: a new replica on PostgreSQL, the one
    /// embedded coordinator on SQLite).
    func another(
        settings: StoreSettings? = nil, secretsKey: SecretsKey? = nil, replica: String? = nil,
        now: (@Sendable () -> Date)? = nil
    ) async throws -> Store {
        let clock = clock
        return try await open(settings ?? store.settings, secretsKey ?? self.secretsKey, replica, now ?? { clock.now })
    }

    func join(_ name: String, platforms: [String], labels: [String: String] = [:]) async throws -> AgentView {
        try await store.joinAgent(
            JoinRequest(
                name: name, platforms: try platforms.map { try Platform(parsing: $0) }, labels: labels, builders: ["buildah"],
                version: "test"),
            secretHash: "hash-\(name)")
    }

    /// Records a list as published the way the publisher does: the claim right before the tag PUTs (which
    /// decides the tags), then the success with the claimed tags.
    @discardableResult
    func publish(id: Int64, listDigest: Digest, mediaType: String) async throws -> PublicationClaim {
        let row = try #require(try await store.duePublications().ready.first { $0.id == id }, "outbox row \(id) is not due")
        let claim = try await store.claimPublication(id: id, listDigest: listDigest, tags: row.tags)
        if case .push(let tags) = claim {
            try await store.publicationSucceeded(id: id, listDigest: listDigest, mediaType: mediaType, tags: tags)
        }
        return claim
    }

    /// Polls like an agent; `confirm` sends the first heartbeat a real agent sends at once, which makes the lease
    /// the agent's for the full TTL (without it the grant lasts only the acknowledge window).
    func poll(_ agent: AgentView, labels: [String: String] = [:], confirm: Bool = true) async throws -> Lease? {
        let lease = try await store.lease(
            agentId: agent.id,
            poll: PollRequest(
                platforms: agent.platforms, labels: labels.isEmpty ? agent.labels : labels, builders: ["buildah"], version: "test"
            ))
        if let lease, confirm {
            _ = try await store.heartbeat(agentId: agent.id, HeartbeatRequest(jobId: lease.jobId, epoch: lease.epoch))
        }
        return lease
    }

    func submit(
        platforms: [String], tags: [String] = ["1.0"], maxAttempts: Int? = nil, allowPartial: Bool = false,
        agentLabels: [String: String]? = nil
    ) async throws -> BuildView {
        let digest = Digest.compute(of: Data("context \(UUID())".utf8))
        try await store.recordContext(digest: digest, size: 10)
        let spec = BuildSpec(
            image: "registry.local:5000/team/app", tags: tags,
            platforms: try platforms.map { PlatformSpec(platform: try Platform(parsing: $0), agentLabels: agentLabels) },
            context: .upload(digest: digest), buildArgs: ["VERSION": "1"], maxAttempts: maxAttempts, allowPartial: allowPartial)
        return try await store.submitBuild(spec, submittedBy: "tester")
    }

    func succeed(_ lease: Lease, agent: AgentView, digest: Digest? = nil) async throws -> Digest {
        let digest = digest ?? Digest.compute(of: Data("image \(lease.jobId) \(lease.epoch)".utf8))
        try await store.complete(
            agentId: agent.id,
            CompleteRequest(
                jobId: lease.jobId, epoch: lease.epoch, outcome: .succeeded,
                imageReference: "\(lease.spec.image):\(lease.spec.tag)", digest: digest))
        return digest
    }

    func verifyAll() async throws {
        for pending in try await store.pendingVerifications().ready {
            try await store.recordVerification(jobId: pending.jobId, epoch: pending.epoch, outcome: .verified)
        }
    }
}
