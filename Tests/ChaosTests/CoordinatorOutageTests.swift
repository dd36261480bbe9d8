import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension ChaosTests {
    /// The coordinator is killed (SIGKILL) and started again while an agent downloads a context of 12 MiB or more,
    /// slowed by the TCP fault proxy between them to about ten seconds. The context is three times the largest send
    /// buffer the kernel gives a socket (`net.ipv4.tcp_wmem`): what a killed process had handed its socket is still
    /// delivered, so a context that fits in the buffers would never be cut. Against replicas (`MANIFOLD_TEST_REPLICAS`), the coordinator killed is the
    /// replica serving the download: it is killed and restarted while the other replicas serve on, so the agent's
    /// retry reaches another replica (contexts are in the state directory the replicas share).
    ///
    /// Invariants: the download is retried within the lease, and the build publishes with one attempt.
    @Test func coordinatorRestartedDuringContextDownload() async throws {
        let harness = try await AgentHarness(
            "restart-fetch", leaseTTLSeconds: 10, environment: Chaos.environment)
        defer { harness.tearDown() }
        let link = try TCPFaultProxy.start(backendPort: harness.port)
        defer { link.stop() }
        let wmem = (try? String(contentsOfFile: "/proc/sys/net/ipv4/tcp_wmem", encoding: .utf8)) ?? ""
        let sendBuffer = wmem.split(whereSeparator: \.isWhitespace).last.flatMap { Int($0) } ?? (4 << 20)
        let noiseBytes = max(12 << 20, 3 * sendBuffer)
        // A delay per 16 KiB chunk from the coordinator that makes the download take about ten seconds. Set before
        // the agent connects: a rule takes new connections only, and the agent keeps its connections, so the
        // download may well go on the connection its poll came back on.
        try link.setRules([TCPFaultRule(delay: 10.0 * 16_384 / Double(noiseBytes), direction: .down)])
        let ledger = harness.scratch.file("ledger")
        #expect(try harness.join("fetcher", url: "https://127.0.0.1:\(link.port)").status == 0)
        let agent = try harness.startAgent("fetcher", script: Chaos.pushScript(ledger: ledger))
        defer { agent.stop() }

        let contextDirectory = harness.scratch.file("big-context")
        try FileManager.default.createDirectory(at: contextDirectory, withIntermediateDirectories: true)
        let random = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/dev/urandom"))
        defer { try? random.close() }
        try (try random.read(upToCount: noiseBytes) ?? Data()).write(to: contextDirectory.appendingPathComponent("noise.bin"))
        try Data("FROM scratch\nCOPY noise.bin /\n".utf8).write(to: contextDirectory.appendingPathComponent("Dockerfile"))
        let archive = harness.scratch.file("big-context.tar.gz")
        try await runChecked("tar", ["-czf", archive.path, "-C", contextDirectory.path, "."])
        let submitted = try await harness.submitArchive(archive)
        _ = try #require(
            try await harness.watch(submitted.id, timeout: .seconds(30)) { $0.jobs[0].phase == "fetching" },
            "the agent never reported fetching")
        try await Task.sleep(for: .seconds(1))
        if harness.isReplicated {
            let serving = try harness.replicaSendingTheMost(atLeast: 65_536)
            Chaos.figure("context download served by replica \(serving + 1): killed with SIGKILL")
            harness.stopReplica(serving, signal: SIGKILL)
            try await Task.sleep(for: .seconds(1))
            try harness.startReplica(serving)
        } else {
            harness.stopCoordinator(signal: SIGKILL)
            try await Task.sleep(for: .seconds(1))
            try harness.startCoordinator()
        }
        try link.clearRules()
        let final = try await harness.wait(submitted.id, timeout: .seconds(90))
        let contextBytes = try Data(contentsOf: archive).count
        let connections = link.connections()
        // The kill ended a download part-way: a connection that had carried more than 64 KiB but not the context.
        let interrupted = connections.filter { $0.down > 65_536 && $0.down < contextBytes }
        Chaos.figure(
            "coordinator kill -9 during a context download: \(final.state.rawValue), attempts \(final.jobs[0].attempts); downloads cut by the kill at \(interrupted.map { "\($0.down / 1024) KiB" }) of \(contextBytes / 1024) KiB"
        )
        #expect(!interrupted.isEmpty, "the kill did not land mid-download: \(connections)")
        #expect(final.state == .published, "\(final)\n\(agent.output().suffix(4_000))")
        #expect(final.jobs[0].attempts == 1, "the restart cost an attempt: \(final)")
    }

    /// The coordinator's state directory is on a 24 MiB tmpfs that fills up while a build runs, stays full past a
    /// lease TTL, and is freed again.
    ///
    /// Invariants: while full, writes are refused with 507 and a message naming the cause, and `/readyz` is not
    /// ready; once freed, `/readyz` is ready again and the build publishes with one attempt.
    ///
    /// SQLite only: what fills up is the disk under the SQLite database. Replicas keep their data in PostgreSQL, and
    /// PostgreSQL running out of disk is another scenario (not covered here).
    @Test(
        .disabled(
            if: AgentHarness.replicatedByEnvironment,
            "SQLite only: the full disk is the one under the coordinator's SQLite file; replicas keep their data in PostgreSQL"
        ))
    func stateDirectoryFillsUpMidBuild() async throws {
        try #require(getuid() == 0, "mounting a tmpfs needs root; run the chaos suite as root (as CI does)")
        let mountPoint = try ScratchDirectory(prefix: "chaos-statefs")
        try await runChecked("mount", ["-t", "tmpfs", "-o", "size=24m", "tmpfs", mountPoint.path])
        defer {
            _ = try? runCommand("umount", [mountPoint.path])
            mountPoint.remove()
        }
        let harness = try await AgentHarness(
            "full-disk", leaseTTLSeconds: Chaos.leaseTTLSeconds, environment: Chaos.environment,
            stateDirectory: mountPoint.file("state").path)
        defer { harness.tearDown() }
        let ledger = harness.scratch.file("ledger")
        let started = harness.scratch.file("started")
        let go = harness.scratch.file("go")
        #expect(try harness.join("builder").status == 0)
        let agent = try harness.startAgent(
            "builder", script: Chaos.pushScript(ledger: ledger, before: "touch '\(started.path)'\n\(Chaos.hold(until: go))"))
        defer { agent.stop() }
        let submitted = try await harness.submit(files: AgentHarness.context)
        #expect(await ProcessProbe.waitUntil(.seconds(30)) { FileManager.default.fileExists(atPath: started.path) })

        // Fill the filesystem, then let the build finish and report into a coordinator that cannot write.
        let filler = mountPoint.file("filler")
        _ = try await runCommand("dd", ["if=/dev/zero", "of=\(filler.path)", "bs=64k"])
        let fullAt = ContinuousClock.now
        try Data().write(to: go)
        var refusals: [Int] = []
        var message = ""
        var readiness: [Int] = []
        while ContinuousClock.now < fullAt + .seconds(Double(Chaos.leaseTTLSeconds) + 4) {
            let write = try await harness.probeWrite()
            refusals.append(write.status)
            if write.status != 201 && write.status != 200 { message = write.body }
            readiness.append(try await harness.readiness())
            try await Task.sleep(for: .milliseconds(500))
        }
        Chaos.figure(
            "full disk: writes answered \(Set(refusals).sorted()), /readyz \(Set(readiness).sorted()) while full; message: \(message)"
        )
        #expect(refusals.allSatisfy { $0 == 507 }, "writes on a full disk answered \(refusals)")
        let lowered = message.lowercased()
        #expect(
            ["space", "disk", "full", "storage"].contains { lowered.contains($0) }, "the 507 does not name the cause: \(message)")
        #expect(readiness.allSatisfy { $0 != 200 }, "/readyz said ready on a full disk: \(readiness)")

        try FileManager.default.removeItem(at: filler)
        let freedAt = ContinuousClock.now
        #expect(await ProcessProbe.waitUntil(.seconds(15)) { (try? await harness.readiness()) == 200 }, "/readyz never recovered")
        Chaos.figure("full disk: ready again \(Chaos.seconds(ContinuousClock.now - freedAt)) after space was freed")
        let final = try await harness.wait(submitted.id, timeout: .seconds(60))
        #expect(final.state == .published, "\(final)\n\(harness.coordinatorLogs().suffix(4_000))")
        #expect(final.jobs[0].attempts == 1, "the full disk cost an attempt: \(final)")
        #expect(try Chaos.integrityCheck(state: harness.state) == "ok")
    }
}
