import Foundation
import Logging
import ManifoldAPI
import ManifoldCore
import ManifoldStore

/// Durable completions per second: whole builds driven through the coordinator's store (submit, lease, confirm,
/// report, verify, claim, publish), with `synchronous = FULL` (every acknowledged write fsync'd, as the coordinator
/// runs) against `NORMAL` (the GRDB default, which loses the last commits on power loss): the ratio is what
/// durability costs on this disk. With `postgres`, the same builds on PostgreSQL, once through one store (one
/// replica) and once through three stores on the same database driving builds at the same time (three replicas);
/// each figure also gives the lease latency (one `lease` call, which is what a held poll waits for once woken).
/// `lanes` pairs of agents drive builds at the same time (split across the replicas), as a busy coordinator's
/// agents do: SQLite has one writer for all of them, PostgreSQL runs them side by side.
func storeBenchmark(builds: Int, lanes: Int, postgres: String?) async throws {
    print("store    \(builds) two-platform builds, \(lanes) lanes of agents at once")
    let full = try await sqliteRun(builds: builds, lanes: lanes, synchronous: .full)
    let normal = try await sqliteRun(builds: builds, lanes: lanes, synchronous: .normal)
    print(
        String(
            format:
                "store    FULL %7.1f builds/s (%7.1f completions/s)   NORMAL %7.1f builds/s   ratio FULL/NORMAL throughput = %.2f",
            full.buildsPerSecond, full.buildsPerSecond * 2, normal.buildsPerSecond,
            full.buildsPerSecond / normal.buildsPerSecond))
    print("store    SQLite FULL lease latency \(full.latency)")
    guard let postgres else { return }
    try await contextBenchmark(url: postgres, megabytes: 64)
    let one = try await postgresRun(url: postgres, builds: builds, lanes: lanes, replicas: 1)
    let three = try await postgresRun(url: postgres, builds: builds, lanes: lanes, replicas: 3)
    for (name, run) in [("PostgreSQL, 1 replica ", one), ("PostgreSQL, 3 replicas", three)] {
        print(
            String(
                format: "store    %@ %7.1f builds/s (%7.1f completions/s)   ratio to SQLite FULL = %.2f   lease latency %@",
                name, run.buildsPerSecond, run.buildsPerSecond * 2, run.buildsPerSecond / full.buildsPerSecond,
                run.latency.description))
    }
}

struct StoreRun {
    var buildsPerSecond: Double
    var latency: Latency
}

/// p50 and p99 of a set of durations.
struct Latency: CustomStringConvertible {
    var samples: [Duration]
    func percentile(_ p: Double) -> Double {
        let sorted = samples.sorted()
        guard !sorted.isEmpty else { return 0 }
        let value = sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
        return Double(value.components.seconds) * 1e3 + Double(value.components.attoseconds) / 1e15
    }
    var description: String { String(format: "p50 %.2f ms, p99 %.2f ms", percentile(0.5), percentile(0.99)) }
}

private func sqliteRun(builds: Int, lanes: Int, synchronous: Store.Synchronous) async throws -> StoreRun {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("manifold-bench-store-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let store = try Store(path: directory.appendingPathComponent("manifold.db").path, synchronous: synchronous)
    let started = ContinuousClock.now
    let (done, latency) = try await driveLanes(Array(repeating: store, count: lanes), builds: builds)
    return StoreRun(buildsPerSecond: Double(done) / seconds(ContinuousClock.now - started), latency: latency)
}

/// `replicas` stores on one fresh schema of `url`, each driving its share of the lanes at the same time.
private func postgresRun(url: String, builds: Int, lanes: Int, replicas: Int) async throws -> StoreRun {
    let schema = try await BenchSchema(url: url)
    var stores: [Store] = []
    for _ in 0..<replicas { stores.append(try await schema.store()) }
    let started = ContinuousClock.now
    let (done, latency) = try await driveLanes(
        (0..<max(lanes, replicas)).map { stores[$0 % replicas] }, builds: builds)
    let elapsed = ContinuousClock.now - started
    for store in stores { await store.backend.close() }
    try await schema.drop()
    return StoreRun(buildsPerSecond: Double(done) / seconds(elapsed), latency: latency)
}

/// One lane per element of `stores` (a store may appear several times), all at once, sharing `builds`; returns
/// how many builds ran and every lease latency.
private func driveLanes(_ stores: [Store], builds: Int) async throws -> (builds: Int, latency: Latency) {
    let share = max(1, builds / stores.count)
    let samples = try await withThrowingTaskGroup(of: Latency.self) { group in
        for (index, store) in stores.enumerated() {
            group.addTask { try await drive(store, builds: share, lane: "lane\(index)") }
        }
        var all: [Duration] = []
        for try await latency in group { all += latency.samples }
        return all
    }
    return (share * stores.count, Latency(samples: samples))
}

/// Two-platform builds through `store`, one after another, by agents of their own `lane` (a label the builds ask
/// for, so lanes on one database never take each other's jobs); returns the lease latencies.
private func drive(_ store: Store, builds: Int, lane: String) async throws -> Latency {
    let platforms = [Platform(os: "linux", architecture: "amd64"), Platform(os: "linux", architecture: "arm64")]
    var agents: [AgentView] = []
    for platform in platforms {
        agents.append(
            try await store.joinAgent(
                JoinRequest(
                    name: "bench-\(lane)-\(platform.architecture)", platforms: [platform], labels: ["lane": lane],
                    builders: ["command"], version: "bench"),
                secretHash: "hash-\(lane)-\(platform.architecture)"))
    }
    let context = Digest.compute(of: Data("bench context \(lane)".utf8))
    try await store.recordContext(digest: context, size: 13)
    var samples: [Duration] = []
    for number in 0..<builds {
        let build = try await store.submitBuild(
            BuildSpec(
                image: "registry.bench:5000/team/\(lane)", tags: ["\(number)"],
                platforms: platforms.map { PlatformSpec(platform: $0, agentLabels: ["lane": lane]) },
                context: .upload(digest: context)), submittedBy: "bench")
        for (agent, platform) in zip(agents, platforms) {
            let poll = PollRequest(platforms: [platform], labels: ["lane": lane], builders: ["command"], version: "bench")
            let asked = ContinuousClock.now
            guard let lease = try await store.lease(agentId: agent.id, poll: poll) else {
                throw BenchError("no lease for \(platform) of build \(build.id)")
            }
            samples.append(ContinuousClock.now - asked)
            _ = try await store.heartbeat(agentId: agent.id, HeartbeatRequest(jobId: lease.jobId, epoch: lease.epoch))
            try await store.complete(
                agentId: agent.id,
                CompleteRequest(
                    jobId: lease.jobId, epoch: lease.epoch, outcome: .succeeded,
                    imageReference: "\(lease.spec.image):\(lease.spec.tag)",
                    digest: Digest.compute(of: Data("\(build.id) \(platform)".utf8))))
            try await store.recordVerification(jobId: lease.jobId, epoch: lease.epoch, outcome: .verified)
        }
        guard let publication = try await store.duePublications().ready.first(where: { $0.buildId == build.id }) else {
            throw BenchError("build \(build.id) queued no list")
        }
        let list = Digest.compute(of: Data("list \(build.id)".utf8))
        guard
            case .push(let tags) = try await store.claimPublication(id: publication.id, listDigest: list, tags: publication.tags)
        else { throw BenchError("build \(build.id): publishing was abandoned") }
        try await store.publicationSucceeded(id: publication.id, listDigest: list, mediaType: MediaType.ociImageIndex, tags: tags)
    }
    return Latency(samples: samples)
}

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

/// What keeping uploaded contexts in PostgreSQL costs, against the local file copy a single coordinator makes: a
/// context of `megabytes` of random bytes (gzip does not shrink a packed context further) stored in 1 MiB rows
/// and read back, each as one replica would on upload and on an agent's download from another replica.
private func contextBenchmark(url: String, megabytes: Int) async throws {
    let schema = try await BenchSchema(url: url)
    let store = try await schema.store()
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("manifold-bench-ctx-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    // Eight random bytes per call: one getrandom(2) per byte would take the kernel longer than the benchmark.
    var generator = SystemRandomNumberGenerator()
    let words = (0..<(megabytes << 17)).map { _ in generator.next() }
    let bytes = words.withUnsafeBytes { Data($0) }
    let source = directory.appendingPathComponent("context.tar.gz")
    try bytes.write(to: source)
    let digest = Digest.compute(of: bytes)

    var started = ContinuousClock.now
    let copy = directory.appendingPathComponent("copy.tar.gz")
    try FileManager.default.copyItem(at: source, to: copy)
    let handle = try FileHandle(forWritingTo: copy)
    try handle.synchronize()
    try handle.close()
    let local = seconds(ContinuousClock.now - started)
    started = ContinuousClock.now
    try await store.storeSharedContext(digest: digest, file: source)
    try await store.recordContext(digest: digest, size: Int64(bytes.count))
    let stored = seconds(ContinuousClock.now - started)
    started = ContinuousClock.now
    let loaded = directory.appendingPathComponent("loaded.tar.gz")
    guard try await store.loadSharedContext(digest: digest, into: loaded) else {
        throw BenchError("the context stored in PostgreSQL could not be read back")
    }
    let load = seconds(ContinuousClock.now - started)
    guard try Data(contentsOf: loaded) == bytes else { throw BenchError("the context read back differs") }
    await store.backend.close()
    try await schema.drop()
    let size = Double(megabytes)
    print(
        String(
            format:
                "context  %d MiB: into PostgreSQL %.0f MB/s, out of it %.0f MB/s; local copy + fsync %.0f MB/s (ratio %.2f / %.2f)",
            megabytes, size / stored, size / load, size / local, local / stored, local / load))
}

/// A schema of its own in the benchmark's database (password in MANIFOLD_DATABASE_PASSWORD), dropped afterwards.
private struct BenchSchema {
    let admin: PostgresBackend
    let name = "bench_\(UInt32.random(in: 0...UInt32.max))"
    var configuration: PostgresConfiguration
    let logger = Logger(label: "manifold.bench")

    init(url: String) async throws {
        let password = ProcessInfo.processInfo.environment[PostgresConfiguration.passwordEnvironmentVariable]
        admin = try await PostgresBackend.connect(try PostgresConfiguration(url: url, password: password), logger: logger)
        try await admin.execute("CREATE SCHEMA \(name)")
        configuration = try PostgresConfiguration(url: url, password: password)
        configuration.schema = name
    }

    /// A store on the schema, as one replica opens it.
    func store() async throws -> Store {
        try await Store.open(backend: try await PostgresBackend.connect(configuration, logger: logger))
    }

    func drop() async throws {
        try await admin.execute("DROP SCHEMA \(name) CASCADE")
        await admin.close()
    }
}
