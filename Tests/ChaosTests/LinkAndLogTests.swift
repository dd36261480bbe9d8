import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldTestSupport
import Testing

extension ChaosTests {
    /// A successful build prints about 200 KB of log against a coordinator that keeps 64 KiB per attempt.
    ///
    /// Invariants: the build publishes with one attempt; the stored log is within the cap, holds a prefix of what
    /// the builder printed, and ends with a marker line that says the log was cut at the limit.
    ///
    /// Against replicas the same: the agent's log chunks reach different replicas, which must share one cap.
    @Test func logCapExceededBySuccessfulBuild() async throws {
        let cap = 65_536
        let harness = try await AgentHarness(
            "log-cap", leaseTTLSeconds: Chaos.leaseTTLSeconds,
            environment: Chaos.environment.merging(["MANIFOLD_MAX_LOG_BYTES_PER_ATTEMPT": "\(cap)"]) { $1 })
        defer { harness.tearDown() }
        let ledger = harness.scratch.file("ledger")
        let printed = harness.scratch.file("printed")
        try FileManager.default.createDirectory(at: printed, withIntermediateDirectories: true)
        #expect(try harness.join("chatty").status == 0)
        let agent = try harness.startAgent(
            "chatty",
            script: Chaos.pushScript(
                ledger: ledger, printed: printed,
                before:
                    #"i=1; while [ $i -le 2000 ]; do say "chatty line $i of a build that talks far more than the coordinator keeps"; i=$((i+1)); done"#
            ))
        defer { agent.stop() }
        let submitted = try await harness.submit(files: AgentHarness.context, buildArgs: ["NAME": "chatty"])
        let final = try await harness.wait(submitted.id, timeout: .seconds(90))
        #expect(final.state == .published, "\(final)\n\(agent.output().suffix(4_000))")
        #expect(final.jobs[0].attempts == 1, "\(final)")
        let log = try await harness.log(submitted.id)
        let builderOutput = try String(contentsOf: printed.appendingPathComponent("chatty.log"), encoding: .utf8)
        let lines = log.split(separator: "\n", omittingEmptySubsequences: false)
        let builderLines = lines.filter { $0.hasPrefix("chatty line ") }
        let marker = lines.last { !$0.hasPrefix("chatty line ") && !$0.isEmpty }
        Chaos.figure(
            "log cap \(cap) B: builder printed \(builderOutput.utf8.count) B, coordinator keeps \(log.utf8.count) B; last other line: \(marker.map(String.init) ?? "none")"
        )
        #expect(log.utf8.count <= cap + 1_024, "the stored log is \(log.utf8.count) bytes, the cap \(cap)")
        // The cap may fall mid-line: the last stored builder line may be a part of one.
        let kept = builderLines.joined(separator: "\n")
        #expect(builderOutput.hasPrefix(kept), "the stored builder lines are not what the builder printed")
        #expect(
            lines.contains { !$0.hasPrefix("chatty line ") && $0.lowercased().contains("limit") },
            "no marker line in the stored log says it was cut at the limit:\n\(log.suffix(1_000))")
    }

    /// Ten builds over a lossy, slow link between the agent and the coordinator: the TCP fault proxy delays
    /// every chunk by 5 ms, refuses one new connection in ten, and cuts every other one after 8, 30 or at most 120 kB
    /// (in either direction, so mid-request or mid-answer). More builds follow, five at a time, until the link has
    /// cut at least two connections.
    ///
    /// Invariants: every build publishes; each stored log is byte-identical to what the builder printed (agent
    /// lines aside); no attempt fails (one attempt per build).
    ///
    /// Against replicas the same, the link in front of HAProxy: a request retried after a cut may reach another
    /// replica than the first try.
    @Test func lossyLinkBetweenAgentAndCoordinator() async throws {
        let harness = try await AgentHarness("lossy", leaseTTLSeconds: 8, environment: Chaos.environment)
        defer { harness.tearDown() }
        let link = try TCPFaultProxy.start(backendPort: harness.port)
        defer { link.stop() }
        let ledger = harness.scratch.file("ledger")
        let printed = harness.scratch.file("printed")
        try FileManager.default.createDirectory(at: printed, withIntermediateDirectories: true)
        #expect(try harness.join("remote", url: "https://127.0.0.1:\(link.port)").status == 0)
        // Agents keep connections alive (a job's requests go on the connections of the jobs before), so every
        // connection is cut somewhere, after 120 KB at most: a link that drops every few requests, not one that
        // fails once. Set before the agent starts, since a rule takes new connections only: a connection without
        // one, or one no rule cuts, would carry the rest of the scenario (one run opened 2 connections for 40 builds
        // and saw 1 cut).
        try link.setRules([
            TCPFaultRule(action: .refuse, probability: 0.1),
            TCPFaultRule(delay: 0.005, cutAfterBytes: 8_000, probability: 0.25),
            TCPFaultRule(delay: 0.005, cutAfterBytes: 30_000, probability: 0.35),
            TCPFaultRule(delay: 0.005, cutAfterBytes: 120_000),
        ])
        let agent = try harness.startAgent(
            "remote",
            script: Chaos.pushScript(
                ledger: ledger, printed: printed,
                before:
                    #"i=1; while [ $i -le 1000 ]; do say "$MANIFOLD_BUILD_ARG_NAME line $i: $i$i$i$i$i$i$i$i $i$i$i$i$i$i$i$i"; i=$((i+1)); done"#
            ))
        defer { agent.stop() }
        // The cuts are random (per new connection, by probability), so builds go on in rounds until the link has
        // cut at least two connections mid-stream: the scenario is only proven once the link really dropped
        // requests more than once.
        let started = ContinuousClock.now
        var published = 0
        var submitted = 0
        var logLag = Duration.zero
        while submitted < 10 || (link.connections().filter(\.cut).count < 2 && submitted < 40) {
            var builds: [(name: String, id: String)] = []
            for index in (submitted + 1)...(submitted + (submitted < 10 ? 10 : 5)) {
                let name = "lossy-\(index)"
                let view = try await harness.submit(
                    files: ["Dockerfile": "FROM scratch\n", "id.txt": "\(name)\n"], buildArgs: ["NAME": name],
                    tags: [name], maxAttempts: 3)
                builds.append((name, view.id))
            }
            submitted += builds.count
            for build in builds {
                let final = try await harness.wait(build.id, timeout: .seconds(150))
                #expect(final.state == .published, "\(build.name): \(final)")
                #expect(final.jobs[0].attempts == 1, "\(build.name) needed \(final.jobs[0].attempts) attempts: \(final)")
                if final.state == .published { published += 1 }
                // The agent reports before it sends the rest of the log (a report must never wait behind a
                // backlog), so the log may complete after the build is published: it must, within the agent's 60 s
                // log flush limit (uploads retried with backoff through the cuts).
                let expected = try String(
                    contentsOf: printed.appendingPathComponent("\(build.name).log"), encoding: .utf8)
                let publishedAt = ContinuousClock.now
                var stored = ""
                let complete = await ProcessProbe.waitUntil(.seconds(60)) {
                    guard let log = try? await harness.log(build.id) else { return false }
                    stored = log.split(separator: "\n", omittingEmptySubsequences: false).filter {
                        !$0.hasPrefix("[manifold-agent] ")
                    }.joined(separator: "\n")
                    return stored == expected
                }
                logLag = max(logLag, ContinuousClock.now - publishedAt)
                #expect(
                    complete,
                    "\(build.name): the stored log differs from what the builder printed (\(stored.utf8.count) of \(expected.utf8.count) bytes)"
                )
            }
        }
        let elapsed = ContinuousClock.now - started
        let connections = link.connections()
        Chaos.figure(
            "lossy link: \(published)/\(submitted) published in \(Chaos.seconds(elapsed)), logs complete at most \(Chaos.seconds(logLag)) after publication; \(connections.count) connections, \(connections.filter(\.cut).count) cut mid-stream, \(connections.filter(\.refused).count) refused"
        )
        let databaseBytes = try await Chaos.databaseBytes(of: harness)
        Chaos.figure(
            "soak: after \(submitted) lossy builds db \(Chaos.kib(databaseBytes)), contexts \(Chaos.kib(Chaos.diskUsage("\(harness.state)/contexts")))"
        )
        #expect(
            connections.filter { $0.cut }.count >= 2,
            "fewer than two connections were cut in \(submitted) builds: \(connections)")
    }
}
