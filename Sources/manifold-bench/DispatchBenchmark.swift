import Foundation
import ManifoldAPI
import ManifoldClient
import ManifoldCore
import ManifoldHTTP
import Synchronization

/// Dispatch latency over the real protocol: `agents` simulated agents join a running coordinator (or replicas
/// behind a proxy) and hold long polls, idle; one-platform builds are submitted one after another, and each
/// latency runs from just before the submit request to the moment an agent holds the lease. The agent that gets
/// a job reports it failed at once (one attempt), so no registry is involved and the next build finds every agent
/// idle again.
struct DispatchBenchmark {
    let urls: [URL]
    let caFile: String
    let token: String
    let agents: Int
    let dispatches: Int

    /// When each build's lease reached an agent, by the build's sequence number (carried as a build argument).
    final class Arrivals: Sendable {
        private enum Slot {
            case waiting(CheckedContinuation<ContinuousClock.Instant, Never>)
            case arrived(ContinuousClock.Instant)
        }
        private let slots = Mutex<[Int: Slot]>([:])

        func wait(for sequence: Int) async -> ContinuousClock.Instant {
            await withCheckedContinuation { continuation in
                let arrived = slots.withLock { slots -> ContinuousClock.Instant? in
                    if case .arrived(let instant) = slots[sequence] {
                        slots[sequence] = nil
                        return instant
                    }
                    slots[sequence] = .waiting(continuation)
                    return nil
                }
                if let arrived { continuation.resume(returning: arrived) }
            }
        }

        func arrived(_ sequence: Int, at instant: ContinuousClock.Instant) {
            let waiting = slots.withLock { slots -> CheckedContinuation<ContinuousClock.Instant, Never>? in
                if case .waiting(let continuation) = slots[sequence] {
                    slots[sequence] = nil
                    return continuation
                }
                slots[sequence] = .arrived(instant)
                return nil
            }
            waiting?.resume(returning: instant)
        }
    }

    func run() async throws {
        let tls = TLSConfiguration(caFile: caFile)
        let admin = CoordinatorClient(baseURLs: urls, token: token, tls: tls, userAgent: "manifold-bench")
        let run = String(UInt32.random(in: 0...UInt32.max), radix: 36)
        let platform = Platform(os: "linux", architecture: "amd64")
        let labels = ["bench": run]
        let context = try await SimulatedAgents.uploadContext(admin)
        let swarm = try await SimulatedAgents.join(
            agents, name: "bench-\(run)", platforms: [platform], labels: labels, admin: admin, urls: urls, tls: tls)
        let arrivals = Arrivals()
        let pollers = swarm.run { client, lease in
            let instant = ContinuousClock.now
            if let sequence = lease.spec.buildArgs["BENCH_SEQUENCE"].flatMap(Int.init) {
                arrivals.arrived(sequence, at: instant)
            }
            _ = try? await client.complete(
                CompleteRequest(
                    jobId: lease.jobId, epoch: lease.epoch, outcome: .failed, exitCode: 1, reason: "dispatch benchmark"))
        }
        // Every agent is holding a poll before the first build: the figure is for idle agents, not for a
        // coordinator still taking a thousand agents' first TLS handshakes and polls.
        let held = try await waitForHeldPolls(admin)
        let warmUp = min(10, dispatches / 10)
        var samples: [Duration] = []
        for sequence in 0..<(warmUp + dispatches) {
            let spec = BuildSpec(
                image: "registry.bench.invalid/dispatch/\(run)", tags: ["d\(sequence)"],
                platforms: [PlatformSpec(platform: platform, agentLabels: labels)], context: .upload(digest: context),
                buildArgs: ["BENCH_SEQUENCE": "\(sequence)"], maxAttempts: 1)
            let submitted = ContinuousClock.now
            _ = try await admin.submit(spec)
            let received = await arrivals.wait(for: sequence)
            if sequence >= warmUp { samples.append(received - submitted) }
        }
        pollers.cancel()
        await pollers.value
        await swarm.leave()
        await swarm.shutdown()
        let latency = Latency(samples: samples)
        print(
            "dispatch \(agents) idle agents (\(held) polls held at the first build), \(samples.count) builds one after another: \(latency)"
        )
    }

    /// Waits until the coordinator's `manifold_held_polls` gauge counts every agent's poll, or, behind a proxy that
    /// spreads the reads over replicas (each counts only its own), until the highest reading has not grown for 3 s;
    /// at most 120 s. Returns the highest reading.
    func waitForHeldPolls(_ admin: CoordinatorClient) async throws -> Int {
        let started = ContinuousClock.now
        var highest = 0
        var grew = started
        while ContinuousClock.now - started < .seconds(120) {
            let response = try await admin.send("GET", "/metrics")
            let text = String(decoding: response.body, as: UTF8.self)
            let reading =
                text.split(separator: "\n").first { $0.hasPrefix("manifold_held_polls ") }
                .flatMap { Double($0.split(separator: " ").last ?? "") }.map { Int($0) } ?? 0
            if reading > highest {
                highest = reading
                grew = .now
            }
            if highest >= agents || (highest > 0 && ContinuousClock.now - grew > .seconds(3)) { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        // A poll that was just answered is on its way back; let the last arrivals settle.
        try await Task.sleep(for: .seconds(1))
        return highest
    }
}
