import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension ChaosTests {
    /// The coordinator is killed with SIGKILL at random moments (at least eight times) while 20 three-platform
    /// builds run back to back, each job pushing an image of its own. The coordinator reaches the registry through
    /// the HTTP fault proxy (no rules), whose log shows every manifest PUT and its answer.
    ///
    /// Invariants: every build ends published; each list in the registry is the build's list and holds exactly the
    /// digests its jobs last reported, each pushed by a builder; no manifest PUT was refused (a list with a missing
    /// child gets 400); the database passes `PRAGMA integrity_check`; database and contexts stay bounded.
    ///
    /// Against replicas its twin is `replicaKillStorm` (ReplicaKillTests.swift), which kills random replicas instead
    /// and checks the same invariants on PostgreSQL (the SQLite integrity check and file sizes aside).
    @Test(
        .disabled(
            if: AgentHarness.replicatedByEnvironment,
            "replicated, this scenario is replicaKillStorm: random replicas are killed, not the one coordinator"))
    func coordinatorKillStorm() async throws {
        let registry = try TestRegistry.start(.http)
        let proxy = try registry.withFaultProxy()
        defer { proxy.stop() }
        let harness = try await AgentHarness(
            "kill-storm", leaseTTLSeconds: Chaos.leaseTTLSeconds, registry: registry,
            environment: Chaos.environment.merging(["MANIFOLD_INSECURE_REGISTRIES": "\(registry.host),\(proxy.host)"]) { $1 },
            platforms: Chaos.platforms)
        defer { harness.tearDown() }
        harness.registryHost = proxy.host
        let ledger = harness.scratch.file("ledger")
        var agents: [ManagedProcess] = []
        defer { agents.forEach { $0.stop() } }
        for index in 1...3 {
            #expect(try harness.join("storm-\(index)", platforms: Chaos.platforms).status == 0)
            agents.append(
                try harness.startAgent(
                    "storm-\(index)", script: Chaos.pushScript(ledger: ledger), platforms: Chaos.platforms))
        }

        let seed = UInt64.random(in: 0...UInt64.max)
        var random = SplitMix(seed: seed)
        Chaos.figure("kill storm: seed \(seed)")
        let started = ContinuousClock.now
        let deadline = started + .seconds(300)
        var submitted: [String] = []
        var kills = 0
        var sizes: [(builds: Int, database: Int64, contexts: Int64)] = []
        func allFinal() async -> Bool {
            guard submitted.count == 20 else { return false }
            for id in submitted {
                guard let view = try? await harness.build(id), view.state.isFinal else { return false }
            }
            return true
        }
        // Kills go on while builds run: at least 8, at most 16, then the builds get time to settle.
        while ContinuousClock.now < deadline && kills < 16 {
            // A random stretch of normal operation, in which up to three more builds are submitted...
            let window = Duration.milliseconds(Int64(800 + random.next() % 3_200))
            let windowEnd = ContinuousClock.now + window
            var perWindow = 0
            while submitted.count < 20 && perWindow < 3 {
                let index = submitted.count + 1
                let view = try await harness.submit(
                    files: ["Dockerfile": "FROM scratch\n", "build.txt": "storm build \(index)\n"], tags: ["storm-\(index)"],
                    platforms: Chaos.platforms, maxAttempts: 3)
                submitted.append(view.id)
                perWindow += 1
            }
            if ContinuousClock.now < windowEnd { try await Task.sleep(until: windowEnd) }
            if kills >= 8, submitted.count == 20 { break }
            // ...then SIGKILL, and a restart on the same state directory.
            harness.stopCoordinator(signal: SIGKILL)
            kills += 1
            try harness.startCoordinator()
            if kills % 4 == 0 {
                sizes.append(
                    (
                        submitted.count, Chaos.databaseBytes(state: harness.state),
                        Chaos.diskUsage("\(harness.state)/contexts")
                    ))
            }
        }
        let killsDone = ContinuousClock.now - started
        #expect(await ProcessProbe.waitUntil(.seconds(120)) { await allFinal() }, "builds still running after the storm")
        let elapsed = ContinuousClock.now - started
        Chaos.figure(
            "kill storm: \(kills) kills in \(Chaos.seconds(killsDone)), \(submitted.count) builds final after \(Chaos.seconds(elapsed))"
        )
        #expect(kills >= 8, "only \(kills) kills before the deadline")
        #expect(submitted.count == 20)

        let reader = try RegistryReader(host: registry.host)
        defer { reader.shutdown() }
        let pushed = Chaos.ledger(ledger)
        let pushedDigests = Set(pushed.map(\.digest))
        #expect(pushedDigests.count == pushed.count, "two attempts pushed the same digest: \(pushed)")
        var attempts = 0
        for (offset, id) in submitted.enumerated() {
            let view = try await harness.build(id)
            #expect(view.state == .published, "build \(offset + 1) \(id) ended \(view.state): \(view)")
            attempts += view.jobs.map(\.attempts).reduce(0, +)
            guard view.state == .published else { continue }
            let reported = view.jobs.compactMap(\.digest)
            #expect(reported.count == 3, "\(view)")
            for digest in reported {
                #expect(pushedDigests.contains(digest.description), "\(digest) of \(id) was never pushed by a builder")
            }
            let stored = try await reader.children("storm-\(offset + 1)")
            #expect(stored.list == view.listDigest, "tag storm-\(offset + 1) holds \(stored.list), the build says \(view)")
            #expect(
                Set(stored.children) == Set(reported) && stored.children.count == reported.count,
                "list of \(id) holds \(stored.children), its jobs last reported \(reported)")
            for child in stored.children {
                #expect(try await reader.digest(child.description) == child, "child \(child) of \(id) is missing")
            }
        }
        Chaos.figure("kill storm: \(attempts) attempts for \(submitted.count * 3) jobs")
        let refused = proxy.requestLog().filter { $0.method == "PUT" && $0.path.contains("/manifests/") && $0.status >= 400 }
        #expect(refused.isEmpty, "manifest PUTs refused by the registry: \(refused)")
        let listPuts = proxy.requestLog().filter { $0.method == "PUT" && $0.path.contains("/manifests/") }.count
        Chaos.figure("kill storm: \(listPuts) manifest PUTs through the proxy, \(refused.count) refused")

        harness.stopCoordinator()
        #expect(try Chaos.integrityCheck(state: harness.state) == "ok")
        let database = Chaos.databaseBytes(state: harness.state)
        let contexts = Chaos.diskUsage("\(harness.state)/contexts")
        sizes.append((submitted.count, database, contexts))
        Chaos.figure(
            "soak: database and contexts after kills "
                + sizes.map { "\($0.builds) builds: db \(Chaos.kib($0.database)), contexts \(Chaos.kib($0.contexts))" }
                .joined(separator: "; "))
        // Bounded: the database grows by at most 64 KiB per three-platform build (events, attempts, small logs),
        // and no more contexts are kept than builds were submitted.
        #expect(database <= 512 * 1024 + Int64(submitted.count) * 64 * 1024, "database: \(Chaos.kib(database))")
        let contextFiles = (try? FileManager.default.contentsOfDirectory(atPath: "\(harness.state)/contexts")) ?? []
        #expect(contextFiles.filter { $0.hasSuffix(".tar.gz") }.count <= submitted.count, "\(contextFiles)")
    }
}

/// A small seeded generator, so a failing storm can be described by its seed.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D4_9BB1_3311_EB
        return z ^ (z >> 31)
    }
}
