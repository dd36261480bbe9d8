import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldStore

/// Durable completions per second: whole builds driven through the coordinator's store (submit, lease, confirm,
/// report, verify, publish), once with `synchronous = FULL` (every acknowledged write fsync'd, as the coordinator
/// runs) and once with `NORMAL` (the GRDB default, which loses the last commits on power loss). The ratio is what
/// durability costs on this disk.
func storeBenchmark(builds: Int) async throws {
    let full = try await storeRun(builds: builds, synchronous: .full)
    let normal = try await storeRun(builds: builds, synchronous: .normal)
    print(
        String(
            format:
                "store    FULL %7.1f builds/s (%7.1f completions/s)   NORMAL %7.1f builds/s   ratio FULL/NORMAL throughput = %.2f",
            full, full * 2, normal, full / normal))
}

/// Two-platform builds through the store, one after another; returns builds per second.
private func storeRun(builds: Int, synchronous: Store.Synchronous) async throws -> Double {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("manifold-bench-store-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let store = try Store(path: directory.appendingPathComponent("manifold.db").path, synchronous: synchronous)
    let platforms = [Platform(os: "linux", architecture: "amd64"), Platform(os: "linux", architecture: "arm64")]
    var agents: [AgentView] = []
    for platform in platforms {
        agents.append(
            try await store.joinAgent(
                JoinRequest(
                    name: "bench-\(platform.architecture)", platforms: [platform], labels: [:], builders: ["command"],
                    version: "bench"),
                secretHash: "hash-\(platform.architecture)"))
    }
    let context = Digest.compute(of: Data("bench context".utf8))
    try await store.recordContext(digest: context, size: 13)
    let started = ContinuousClock.now
    for number in 0..<builds {
        let build = try await store.submitBuild(
            BuildSpec(
                image: "registry.bench:5000/team/app", tags: ["\(number)"],
                platforms: platforms.map { PlatformSpec(platform: $0) },
                context: .upload(digest: context)), submittedBy: "bench")
        for (agent, platform) in zip(agents, platforms) {
            let poll = PollRequest(platforms: [platform], labels: [:], builders: ["command"], version: "bench")
            guard let lease = try await store.lease(agentId: agent.id, poll: poll) else {
                throw BenchError("no lease for \(platform) of build \(build.id)")
            }
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
    let elapsed = ContinuousClock.now - started
    return Double(builds) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
}
