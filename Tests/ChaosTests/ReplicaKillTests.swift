import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension ChaosTests {
    /// Three replicas on one PostgreSQL database behind HAProxy; agents and clients reach them only through the
    /// proxy. A random replica is killed with SIGKILL every few seconds (at least eight times, each restarted a
    /// moment later) while 12 three-platform builds run, so replicas die while they hold polls, verify reports and
    /// publish lists.
    ///
    /// Invariants: every build ends published, with exactly the digests its jobs last reported, each pushed by a
    /// builder; no build's digest set was published twice (one `done` outbox row per build and digest set); no
    /// manifest PUT was refused; no job counts more attempts than it had.
    @Test func replicaKillStorm() async throws {
        let registry = try TestRegistry.start(.http)
        let proxy = try registry.withFaultProxy()
        defer { proxy.stop() }
        let harness = try await AgentHarness(
            "replica-storm", leaseTTLSeconds: Chaos.leaseTTLSeconds, registry: registry,
            environment: Chaos.environment.merging(["MANIFOLD_INSECURE_REGISTRIES": "\(registry.host),\(proxy.host)"]) { $1 },
            platforms: Chaos.platforms, replicas: 3)
        defer { harness.tearDown() }
        harness.registryHost = proxy.host
        let ledger = harness.scratch.file("ledger")
        var agents: [ManagedProcess] = []
        defer { agents.forEach { $0.stop() } }
        for index in 1...3 {
            #expect(try harness.join("replica-agent-\(index)", platforms: Chaos.platforms).status == 0)
            agents.append(
                try harness.startAgent(
                    "replica-agent-\(index)", script: Chaos.pushScript(ledger: ledger), platforms: Chaos.platforms))
        }

        let seed = UInt64.random(in: 0...UInt64.max)
        var random = SplitMix(seed: seed)
        Chaos.figure("replica storm: seed \(seed)")
        let started = ContinuousClock.now
        let deadline = started + .seconds(240)
        let total = 12
        var submitted: [String] = []
        var kills = 0
        func allFinal() async -> Bool {
            guard submitted.count == total else { return false }
            for id in submitted {
                guard let view = try? await harness.build(id), view.state.isFinal else { return false }
            }
            return true
        }
        while ContinuousClock.now < deadline && kills < 14 {
            let window = Duration.milliseconds(Int64(1_000 + random.next() % 2_500))
            let windowEnd = ContinuousClock.now + window
            var perWindow = 0
            while submitted.count < total && perWindow < 2 {
                let index = submitted.count + 1
                let view = try await Self.retrying {
                    try await harness.submit(
                        files: ["Dockerfile": "FROM scratch\n", "build.txt": "replica build \(index)\n"],
                        tags: ["replica-\(index)"], platforms: Chaos.platforms, maxAttempts: 3)
                }
                submitted.append(view.id)
                perWindow += 1
            }
            if ContinuousClock.now < windowEnd { try await Task.sleep(until: windowEnd) }
            if kills >= 8, submitted.count == total { break }
            let victim = Int(random.next() % 3)
            harness.stopReplica(victim, signal: SIGKILL)
            kills += 1
            try await Task.sleep(for: .milliseconds(Int64(200 + random.next() % 1_000)))
            try harness.startReplica(victim)
        }
        let killsDone = ContinuousClock.now - started
        let settled = await ProcessProbe.waitUntil(.seconds(120)) { await allFinal() }
        #expect(settled, "builds still running after the storm:\n\(harness.replicaLogs().suffix(6_000))")
        Chaos.figure(
            "replica storm: \(kills) kills in \(Chaos.seconds(killsDone)), \(submitted.count) builds final after "
                + Chaos.seconds(ContinuousClock.now - started))
        #expect(kills >= 8)

        let reader = try RegistryReader(host: registry.host)
        defer { reader.shutdown() }
        let pushedDigests = Set(Chaos.ledger(ledger).map(\.digest))
        for (offset, id) in submitted.enumerated() {
            let view = try await Self.retrying { try await harness.build(id) }
            #expect(view.state == .published, "build \(offset + 1) \(id) ended \(view.state): \(view)")
            guard view.state == .published else { continue }
            let reported = view.jobs.compactMap(\.digest)
            #expect(reported.count == 3, "\(view)")
            for digest in reported {
                #expect(pushedDigests.contains(digest.description), "\(digest) of \(id) was never pushed by a builder")
            }
            let stored = try await reader.children("replica-\(offset + 1)")
            #expect(stored.list == view.listDigest, "tag replica-\(offset + 1) holds \(stored.list), the build says \(view)")
            #expect(Set(stored.children) == Set(reported), "list of \(id) holds \(stored.children), jobs reported \(reported)")
        }
        // One decision, one publication: no build's digest set was published twice by two replicas.
        let twice = try await harness.query(
            "SELECT buildId, digestSet, COUNT(*) FROM outbox WHERE state = 'done' GROUP BY buildId, digestSet HAVING COUNT(*) > 1"
        )
        #expect(twice.isEmpty, "published more than once: \(twice)")
        // No attempt counted twice: a job's attempt count never exceeds its attempts.
        let overCounted = try await harness.query(
            "SELECT id, attempts FROM job WHERE attempts > (SELECT COUNT(*) FROM attempt WHERE attempt.jobId = job.id)")
        #expect(overCounted.isEmpty, "jobs counting attempts they did not have: \(overCounted)")
        let refused = proxy.requestLog().filter { $0.method == "PUT" && $0.path.contains("/manifests/") && $0.status >= 400 }
        #expect(refused.isEmpty, "manifest PUTs refused by the registry: \(refused)")
    }

    /// `manifold build watch` through the proxy while every replica is killed in turn (so the one serving the
    /// watch's stream surely dies): the watch reconnects to another replica, resumes its events, and ends when the
    /// build is published, with the exit status and last line of a published build.
    @Test func aWatchOutlivesTheReplicaServingIt() async throws {
        let harness = try await AgentHarness(
            "replica-watch", leaseTTLSeconds: Chaos.leaseTTLSeconds, environment: Chaos.environment, replicas: 3)
        defer { harness.tearDown() }
        let ledger = harness.scratch.file("ledger")
        let release = harness.scratch.file("release")
        #expect(try harness.join("watched").status == 0)
        let agent = try harness.startAgent(
            "watched", script: Chaos.pushScript(ledger: ledger, before: Chaos.hold(until: release)))
        defer { agent.stop() }
        let build = try await harness.submit(files: ["Dockerfile": "FROM scratch\n"], tags: ["watched"])
        #expect(await ProcessProbe.waitUntil(.seconds(30)) { (try? await harness.build(build.id))?.state == .running })
        let watch = try ManagedProcess(
            name: "watch", executable: try manifoldBinary(), arguments: ["build", "watch", build.id],
            environment: [
                "MANIFOLD_COORDINATOR": harness.baseURL, "MANIFOLD_TOKEN": harness.submitter,
                "MANIFOLD_CA_FILE": "\(harness.state)/pki/ca.crt", "NO_COLOR": "1",
            ], logDirectory: harness.scratch.url)
        defer { watch.stop() }
        try await Task.sleep(for: .seconds(1))
        for replica in 0..<3 {
            harness.stopReplica(replica, signal: SIGKILL)
            try await Task.sleep(for: .seconds(1))
            try harness.startReplica(replica)
            try await Task.sleep(for: .seconds(1))
            #expect(watch.isRunning, "the watch gave up when replica \(replica + 1) died:\n\(watch.output())")
        }
        try Data().write(to: release)
        #expect(await AgentHarness.waitForExit(watch, timeout: .seconds(90)), "the watch never ended:\n\(watch.output())")
        #expect(watch.terminationStatus == 0, "\(watch.output())")
        #expect(watch.output().contains("published"), "\(watch.output())")
        #expect(try await harness.build(build.id).state == .published)
    }

    /// A call through the proxy can meet a replica as it dies; clients retry such calls, so the test does too.
    static func retrying<T>(_ call: () async throws -> T) async throws -> T {
        var lastError: (any Error)?
        for _ in 0..<20 {
            do { return try await call() } catch {
                lastError = error
                try await Task.sleep(for: .milliseconds(250))
            }
        }
        throw lastError!
    }
}
