import Foundation
import ManifoldAPI
import ManifoldArchive
import ManifoldClient
import ManifoldCore
import ManifoldHTTP
import ManifoldRegistry
import Synchronization

/// Throughput over the real protocol and a real registry: `agents` instant agents build nothing. One small image per
/// platform is pushed before the run (blobs once); each lease is then served by one manifest PUT of that image under
/// the attempt's own tag, and the agent reports it succeeded with the digest. The manifest PUT carries the attempt in
/// an annotation, so each is a manifest of its own as real builds give: with the very same bytes under every tag,
/// every build's list would be the same too, and docker-registry's filesystem storage fails concurrent PUTs of one
/// manifest now and then (`DIGEST_INVALID`, `MANIFEST_BLOB_UNKNOWN`), which the coordinator retries with backoff. Two-platform builds are submitted
/// keeping `window` of them in flight, each followed on its events stream until it is final, so the coordinator's
/// whole path runs for every build: leases, reports, verification against the registry, child tags, the list push.
/// `idle` more agents hold polls for a platform no build asks for, to measure throughput with many polls held.
struct ThroughputBenchmark {
    let urls: [URL]
    let caFile: String
    let token: String
    let agents: Int
    let idle: Int
    let builds: Int
    let window: Int
    /// `HOST:PORT` of the registry the builds push to; the coordinator must hold credentials for it.
    let registry: String
    let registryCA: String?
    let registryCredential: RegistryCredential

    static let platforms = [Platform(os: "linux", architecture: "amd64"), Platform(os: "linux", architecture: "arm64")]
    /// Offered by the idle agents; no build asks for it.
    static let idlePlatform = Platform(os: "linux", architecture: "s390x")

    /// What the instant agents did, shared by all of them.
    final class Tally: Sendable {
        struct Counts {
            var accepted = 0
            var refused = 0
            var failures: [String] = []
            var registryPuts: [Duration] = []
            /// From the lease in an agent's hands to its report answered.
            var leaseTime: Duration = .zero
        }
        let counts = Mutex(Counts())
    }

    /// How one build ended, seen from the submitting side.
    struct Finished: Sendable {
        var state: BuildState
        var latency: Duration
        var reason: String?
    }

    func run() async throws {
        let tls = TLSConfiguration(caFile: caFile)
        let admin = CoordinatorClient(baseURLs: urls, token: token, tls: tls, userAgent: "manifold-bench")
        let run = String(UInt32.random(in: 0...UInt32.max), radix: 36)
        let repository = "bench/throughput-\(run)"
        let labels = ["bench": run]

        let registries = RegistryClientPool(
            configuration: RegistryConfiguration(
                caFiles: registryCA.map { [registry: [$0]] } ?? [:],
                credentials: StaticCredentials([registry: registryCredential]), userAgent: "manifold-bench"))
        let client = try registries.client(for: registry)
        var manifests: [String: ImageManifest] = [:]
        for platform in Self.platforms {
            manifests[platform.description] = try await Self.pushSeed(for: platform, to: client, repository: repository)
        }
        let seeds = manifests
        // In a repository of its own, so the registry's access log tells the probe's requests from the builds'.
        let probeRepository = "bench/probe-\(run)"
        let probeSeed = try await Self.pushSeed(for: Self.platforms[0], to: client, repository: probeRepository)
        let probe = try await Self.probeRegistry(client, repository: probeRepository, seed: probeSeed, width: window)
        print(
            "registry alone, \(window) requests at once for \(Int(seconds(Self.probeTime))) s each: "
                + String(format: "%.0f manifest HEADs/s, %.0f manifest PUTs/s", probe.heads, probe.puts))

        let context = try await SimulatedAgents.uploadContext(admin)
        let workers = try await SimulatedAgents.join(
            agents, name: "bench-\(run)", platforms: Self.platforms, labels: labels, admin: admin, urls: urls, tls: tls)
        let idlers = try await SimulatedAgents.join(
            idle, name: "bench-\(run)-idle", platforms: [Self.idlePlatform], labels: labels, admin: admin, urls: urls,
            tls: tls)
        // The coordinator holds at most `max_streams_per_token` (16 by default) event streams per token: builds are
        // followed with viewer tokens of their own, eight streams each, so none falls back to polling its state (which
        // once made this benchmark measure thousands of GETs instead of the pipeline).
        var followers: [CoordinatorClient] = []
        for number in 0..<max(1, (window + 7) / 8) {
            let created = try await admin.createToken(name: "bench-\(run)-follow-\(number)", role: .viewer)
            followers.append(CoordinatorClient(baseURLs: urls, token: created.secret, tls: tls, userAgent: "manifold-bench"))
        }
        let tally = Tally()
        let working = workers.run { agent, lease in
            await Self.serve(lease, agent: agent, registry: client, manifests: seeds, tally: tally)
        }
        let holding = idlers.run { agent, lease in
            tally.counts.withLock { $0.failures.append("an idle agent was given job \(lease.jobId)") }
            _ = try? await agent.complete(
                CompleteRequest(jobId: lease.jobId, epoch: lease.epoch, outcome: .released, reason: "idle agent"))
        }
        // Every agent is holding a poll before the first build.
        try await Task.sleep(for: .seconds(max(2, (agents + idle) / 500)))

        let started = ContinuousClock.now
        let finished = try await withThrowingTaskGroup(of: Finished.self) { group in
            var finished: [Finished] = []
            for sequence in 0..<builds {
                if sequence >= window, let done = try await group.next() { finished.append(done) }
                let spec = BuildSpec(
                    image: "\(registry)/\(repository)", tags: ["t\(sequence)"],
                    platforms: Self.platforms.map { PlatformSpec(platform: $0, agentLabels: labels) },
                    context: .upload(digest: context), maxAttempts: 1)
                let follower = followers[sequence % followers.count]
                group.addTask { try await Self.submitAndFollow(spec, admin: admin, follower: follower) }
            }
            for try await done in group { finished.append(done) }
            return finished
        }
        let elapsed = ContinuousClock.now - started
        working.cancel()
        holding.cancel()
        await working.value
        await holding.value
        await workers.leave()
        await idlers.leave()
        await workers.shutdown()
        await idlers.shutdown()

        let counts = tally.counts.withLock { $0 }
        let published = finished.filter { $0.state == .published }
        let wall = seconds(elapsed)
        let putTotal = counts.registryPuts.reduce(Duration.zero, +)
        let share = counts.leaseTime > .zero ? 100 * seconds(putTotal) / seconds(counts.leaseTime) : 0
        print(
            "throughput \(agents) agents" + (idle > 0 ? " + \(idle) idle" : "")
                + ", \(builds) two-platform builds, \(window) in flight: "
                + String(
                    format: "%.1f builds published/s, %.1f completions accepted/s; ", Double(published.count) / wall,
                    Double(counts.accepted) / wall)
                + "submit→published \(Latency(samples: published.map(\.latency))); "
                + "registry PUT \(Latency(samples: counts.registryPuts)), "
                + String(format: "%.0f%% of the agents' lease time; ", share)
                // Near 100 %, the agents (this process) limit the figure; far below, the coordinator does.
                + String(format: "agents busy %.0f%% of the run", 100 * seconds(counts.leaseTime) / (wall * Double(agents))))
        var problems = counts.failures.prefix(5).map { "  \($0)" }
        if counts.refused > 0 { problems.append("  \(counts.refused) reports were not accepted") }
        for build in finished where build.state != .published {
            problems.append("  a build ended \(build.state.rawValue): \(build.reason ?? "no reason given")")
            if problems.count >= 10 { break }
        }
        if !problems.isEmpty || published.count != builds {
            throw BenchError(
                "\(builds - published.count) of \(builds) builds were not published:\n"
                    + problems.joined(separator: "\n"))
        }
    }

    /// How long each registry probe runs.
    static let probeTime: Duration = .seconds(5)

    /// What the registry alone sustains with `width` requests at once, before any build: HEADs of one manifest (the
    /// cheapest read a build makes) and PUTs of manifests of their own under tags of their own (a build's writes).
    /// A build's registry requests (counted from the registry's access log by throughput.sh) over these rates bound
    /// how many builds per second any coordinator could publish through this registry on this machine.
    static func probeRegistry(
        _ registry: RegistryClient, repository: String, seed: ImageManifest, width: Int
    ) async throws -> (heads: Double, puts: Double) {
        let seedDigest = try RawManifest(bytes: try Self.encode(seed), mediaType: MediaType.ociImageManifest).digest
        func rate(_ request: @escaping @Sendable (Int) async throws -> Void) async throws -> Double {
            let counter = Tally()
            let deadline = ContinuousClock.now + probeTime
            let started = ContinuousClock.now
            try await withThrowingTaskGroup(of: Void.self) { group in
                for lane in 0..<width {
                    group.addTask {
                        var sequence = 0
                        while ContinuousClock.now < deadline {
                            try await request(lane * 1_000_000 + sequence)
                            sequence += 1
                            counter.counts.withLock { $0.accepted += 1 }
                        }
                    }
                }
                try await group.waitForAll()
            }
            return Double(counter.counts.withLock { $0.accepted }) / seconds(ContinuousClock.now - started)
        }
        let heads = try await rate { _ in
            _ = try await registry.headManifest(repository: repository, reference: seedDigest.description)
        }
        let puts = try await rate { number in
            var image = seed
            image.annotations = ["org.manifold.bench.probe": "\(number)"]
            let manifest = try RawManifest(bytes: try Self.encode(image), mediaType: MediaType.ociImageManifest)
            _ = try await registry.pushManifest(repository: repository, reference: "probe-\(number)", manifest: manifest)
        }
        return (heads, puts)
    }

    /// PUTs the seed manifest of the lease's platform under the attempt's tag, then reports it succeeded.
    static func serve(
        _ lease: Lease, agent: CoordinatorClient, registry: RegistryClient, manifests: [String: ImageManifest], tally: Tally
    ) async {
        let received = ContinuousClock.now
        let spec = lease.spec
        let report: CompleteRequest
        var put: Duration? = nil
        do {
            guard var image = manifests[Platform(os: spec.platform.os, architecture: spec.platform.architecture).description]
            else { throw BenchError("no seed image for \(spec.platform)") }
            image.annotations = ["org.manifold.bench.attempt": "\(lease.jobId)/\(lease.epoch)"]
            let manifest = try RawManifest(bytes: try Self.encode(image), mediaType: MediaType.ociImageManifest)
            let target = try ImageReference(parsing: spec.image)
            guard target.registry == registry.registry else {
                throw BenchError("the lease pushes to \(target.registry), not the benchmark's registry \(registry.registry)")
            }
            let before = ContinuousClock.now
            try await registry.pushManifest(repository: target.repository, reference: spec.tag, manifest: manifest)
            put = ContinuousClock.now - before
            report = CompleteRequest(
                jobId: lease.jobId, epoch: lease.epoch, outcome: .succeeded, imageReference: "\(spec.image):\(spec.tag)",
                digest: manifest.digest)
        } catch {
            tally.counts.withLock { $0.failures.append("job \(lease.jobId): \(error)") }
            report = CompleteRequest(
                jobId: lease.jobId, epoch: lease.epoch, outcome: .failed, exitCode: 1, reason: "\(error)")
        }
        let accepted: Bool
        do {
            accepted = try await agent.complete(report).accepted
        } catch {
            tally.counts.withLock { $0.failures.append("reporting job \(lease.jobId): \(error)") }
            accepted = false
        }
        let busy = ContinuousClock.now - received
        tally.counts.withLock { counts in
            if accepted && report.outcome == .succeeded { counts.accepted += 1 } else { counts.refused += 1 }
            if let put { counts.registryPuts.append(put) }
            counts.leaseTime += busy
        }
    }

    /// Submits one build and follows its events with `follower` until it is final (polling its state if the stream
    /// drops).
    static func submitAndFollow(
        _ spec: BuildSpec, admin: CoordinatorClient, follower: CoordinatorClient
    ) async throws
        -> Finished
    {
        let submitted = ContinuousClock.now
        let build = try await admin.submit(spec)
        do {
            for try await _ in try await follower.events(buildId: build.id) {}
        } catch {
            // Dropped: the state below says whether the build is final; if not, poll it.
        }
        while true {
            let view = try await follower.build(id: build.id)
            switch view.state {
            case .queued, .running, .publishing:
                try await Task.sleep(for: .milliseconds(100))
            default:
                return Finished(state: view.state, latency: ContinuousClock.now - submitted, reason: view.reason)
            }
        }
    }

    static func encode(_ manifest: ImageManifest) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(manifest)
    }

    /// Pushes a one-layer OCI image for `platform` (a real gzip'd tar layer and a config declaring the platform, as
    /// the coordinator checks) to `repository`, and returns its manifest; blobs the registry holds already are not
    /// sent again.
    static func pushSeed(
        for platform: Platform, to registry: RegistryClient, repository: String
    ) async throws
        -> ImageManifest
    {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("manifold-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let tar = directory.appendingPathComponent("layer.tar")
        let writer = try TarWriter(to: tar)
        try writer.append(data: Data("manifold throughput benchmark, \(platform)\n".utf8), at: "payload.txt")
        try writer.finish()
        let gzipped = directory.appendingPathComponent("layer.tar.gz")
        try Gzip.compress(file: tar, to: gzipped)
        let layer = try Data(contentsOf: gzipped)
        let diffID = Digest.compute(of: try Data(contentsOf: tar))
        let config = try JSONSerialization.data(
            withJSONObject: [
                "architecture": platform.architecture, "os": platform.os, "config": [String: String](),
                "rootfs": ["type": "layers", "diff_ids": [diffID.description]],
            ] as [String: Any], options: [.sortedKeys])
        var descriptors: [Descriptor] = []
        for (mediaType, blob) in [(MediaType.ociImageConfig, config), (MediaType.ociLayerTarGzip, layer)] {
            let digest = Digest.compute(of: blob)
            if try await registry.blobSize(repository: repository, digest: digest) == nil {
                try await registry.uploadBlob(repository: repository, digest: digest, data: blob)
            }
            descriptors.append(Descriptor(mediaType: mediaType, digest: digest, size: Int64(blob.count)))
        }
        let image = ImageManifest(config: descriptors[0], layers: [descriptors[1]])
        let manifest = try RawManifest(bytes: try encode(image), mediaType: MediaType.ociImageManifest)
        let key = "seed-\(platform.os)-\(platform.architecture)"
        try await registry.pushManifest(repository: repository, reference: key, manifest: manifest)
        return image
    }
}
