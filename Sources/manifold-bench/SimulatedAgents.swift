import Foundation
import ManifoldAPI
import ManifoldClient
import ManifoldCore
import ManifoldHTTP

/// Agents simulated over the real protocol, shared by the benchmarks that drive running coordinators: each joins
/// with the admin token and holds long polls as `manifold-agent` does; what happens to a lease is the benchmark's.
struct SimulatedAgents {
    let clients: [CoordinatorClient]
    let poll: PollRequest

    /// Joins `count` agents named `name-0`, `name-1`, … offering `platforms` and `labels`, a few joins at a time.
    static func join(
        _ count: Int, name: String, platforms: [Platform], labels: [String: String], admin: CoordinatorClient,
        urls: [URL], tls: TLSConfiguration
    ) async throws -> SimulatedAgents {
        let clients = try await withThrowingTaskGroup(of: CoordinatorClient.self) { group in
            var joined: [CoordinatorClient] = []
            for index in 0..<count {
                if index >= 8, let client = try await group.next() { joined.append(client) }
                group.addTask {
                    let answer = try await admin.join(
                        JoinRequest(
                            name: "\(name)-\(index)", platforms: platforms, labels: labels, builders: ["command"],
                            version: "bench"))
                    return CoordinatorClient(baseURLs: urls, token: answer.secret, tls: tls, userAgent: "manifold-bench")
                }
            }
            for try await client in group { joined.append(client) }
            return joined
        }
        return SimulatedAgents(
            clients: clients,
            poll: PollRequest(platforms: platforms, labels: labels, builders: ["command"], version: "bench"))
    }

    /// Every agent polls in a loop until the returned task is cancelled; a lease goes to `handle`, which reports it
    /// before the agent polls again. A failed poll is tried again after a short pause.
    func run(_ handle: @escaping @Sendable (CoordinatorClient, Lease) async -> Void) -> Task<Void, Never> {
        let clients = clients
        let poll = poll
        return Task {
            await withDiscardingTaskGroup { group in
                for client in clients {
                    group.addTask {
                        while !Task.isCancelled {
                            guard let answer = try? await client.poll(poll) else {
                                try? await Task.sleep(for: .milliseconds(100))
                                continue
                            }
                            if let lease = answer.lease { await handle(client, lease) }
                        }
                    }
                }
            }
        }
    }

    /// Removes every agent from the coordinator.
    func leave() async {
        for client in clients {
            _ = try? await client.leave()
        }
    }

    /// Shuts every agent's HTTP client down and waits until their threads are done with libcurl, all of them
    /// stopping at once.
    func shutdown() async {
        for client in clients { client.http.shutdown() }
        for client in clients { await client.http.shutdownAndWait() }
    }

    /// A one-file context (`FROM scratch`), uploaded once for every build of a run.
    static func uploadContext(_ client: CoordinatorClient) async throws -> Digest {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("manifold-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try Data("FROM scratch\n".utf8).write(to: directory.appendingPathComponent("Dockerfile"))
        let archive = directory.appendingPathComponent("context.tar.gz")
        try manifold_bench.run("/usr/bin/tar", ["-czf", archive.path, "-C", directory.path, "Dockerfile"])
        let digest = Digest.compute(of: try Data(contentsOf: archive))
        if try await !client.hasContext(digest) { _ = try await client.uploadContext(digest, file: archive.path) }
        return digest
    }
}
