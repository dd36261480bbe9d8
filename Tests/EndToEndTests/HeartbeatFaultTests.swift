import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldTestSupport
import Testing

/// Heartbeats with real processes: one heartbeat the network swallows costs neither the lease nor an attempt (each
/// heartbeat has its own deadline of a third of the TTL), and the cadence follows the lease expiry the coordinator
/// answers with, not the TTL the agent was told at join.
@Suite struct HeartbeatFaultTests {
    /// Points the joined agent in `state` at another address (a proxy in front of the coordinator) and, when given,
    /// replaces the lease TTL and heartbeat interval it was told at join.
    static func rewriteCredential(
        state: String, coordinatorURL: String? = nil, leaseTTLSeconds: Int? = nil, heartbeatIntervalSeconds: Int? = nil
    ) throws {
        let file = URL(fileURLWithPath: state + "/credential.json")
        var credential = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any])
        if let coordinatorURL { credential["coordinatorURL"] = coordinatorURL }
        if let leaseTTLSeconds { credential["leaseTTLSeconds"] = leaseTTLSeconds }
        if let heartbeatIntervalSeconds { credential["heartbeatIntervalSeconds"] = heartbeatIntervalSeconds }
        try JSONSerialization.data(withJSONObject: credential).write(to: file)
    }

    /// A build script that touches `started`, waits (printing nothing) until `release` exists, then builds.
    static func heldScript(started: URL, release: URL) -> String {
        AgentHarness.buildahScript(
            before: "touch '\(started.path)'\nwhile [ ! -e '\(release.path)' ]; do sleep 0.1; done")
    }

    static func heartbeatAnswers(_ output: Substring) -> Int {
        output.split(separator: "\n").filter { $0.contains("status=200") && $0.contains("/api/v1/agent/heartbeat") }.count
    }

    /// The seconds of lease the agent says it had left in each "heartbeat … failed" line of `output`.
    static func leaseLeftAtFailures(_ output: Substring) -> [(line: Substring, secondsLeft: Int?)] {
        output.split(separator: "\n").filter { $0.contains(#/heartbeat for job \S+ failed/#) }.map { line in
            (line, line.firstMatch(of: #/the lease has about (-?\d+) s left/#).flatMap { Int($0.1) })
        }
    }

    /// Partitions the link at `proxy` until the agent gives the heartbeat under way up (on its deadline, `deadline`
    /// in words), then heals it, and checks that the agent gave it up on its deadline with most of the lease left and
    /// that the next heartbeats are answered without a 409.
    ///
    /// The agent's own words carry the timing: its failure line says how much of the lease was left when it gave up.
    /// The test process only notices the line when its pool gets to it (seconds late on a loaded machine), so the
    /// partition may outlast a second heartbeat too; that one must also be a timeout with lease left.
    static func swallowOneHeartbeat(
        agent: ManagedProcess, proxy: TCPFaultProxy, deadline: String, minimumSecondsLeft: Int
    ) async throws {
        // Heartbeats are flowing through the proxy.
        let before = agent.output().count
        #expect(
            await ProcessProbe.waitUntil(.seconds(30)) { Self.heartbeatAnswers(agent.output().dropFirst(before)) >= 2 },
            "\(agent.output())")
        // A partition: the heartbeat under way gets no answer. The rule takes no new connection (times 0), so a
        // heartbeat on a new connection only waits for the partition's end instead of being dropped with it. (What
        // the partition held reaches the coordinator once it ends, after the agent gave up on it.) The partition ends
        // by itself the moment the agent gives that heartbeat up and closes its connection: a starved test process
        // once noticed the give-up too late to heal the link before the next heartbeat, which then cost the lease.
        let cut = agent.output().count
        try proxy.setRules([TCPFaultRule(action: .blackhole, times: 0, healsWhenAClientGivesUp: true)])
        // The agent gives that heartbeat up at its deadline, well before the lease runs out; without a deadline it
        // would wait on it far longer than the TTL.
        let gaveUp = await ProcessProbe.waitUntil(.seconds(40)) {
            agent.output().dropFirst(cut).contains(#/heartbeat for job \S+ failed/#)
        }
        try proxy.clearRules()
        #expect(gaveUp, "no heartbeat was given up within 40 s of the partition:\n\(agent.output())")
        // The next heartbeat gets through, and the lease is the agent's still.
        let healed = agent.output().count
        #expect(
            await ProcessProbe.waitUntil(.seconds(30)) { Self.heartbeatAnswers(agent.output().dropFirst(healed)) >= 2 },
            "\(agent.output())")
        let afterCut = agent.output().dropFirst(cut)
        #expect(!afterCut.contains("409"), "\(afterCut)")
        let failures = Self.leaseLeftAtFailures(afterCut)
        let first = try #require(failures.first, "\(afterCut)")
        // The swallowed heartbeat was given up on its own deadline, with most of the lease still to go.
        #expect(
            first.line.contains("timed out") && (first.secondsLeft ?? -1) >= minimumSecondsLeft,
            "given up with less than \(minimumSecondsLeft) s of the lease left (deadline \(deadline)): \(first.line)")
        // Any heartbeat the partition caught after it also timed out, never a refusal (the caller checks that the
        // lease held).
        for failure in failures.dropFirst() {
            #expect(failure.line.contains("timed out"), "a later heartbeat in the partition: \(failure.line)")
        }
        print(
            "a swallowed heartbeat was given up with \(first.secondsLeft ?? -1) s of the lease left"
                + " (deadline \(deadline)); \(failures.count) heartbeat(s) failed in the partition")
    }

    @Test func oneSwallowedHeartbeatCostsNeitherTheLeaseNorAnAttempt() async throws {
        // TTL 24 s: each heartbeat's deadline is 8 s, and the agent heartbeats every second.
        let harness = try await AgentHarness("heartbeat-blackhole", leaseTTLSeconds: 24, replicas: 0)
        defer { harness.tearDown() }
        let joined = try harness.join("steady")
        #expect(joined.status == 0)
        let proxy = try TCPFaultProxy.start(backendPort: harness.port)
        defer { proxy.stop() }
        try Self.rewriteCredential(state: joined.state, coordinatorURL: "https://127.0.0.1:\(proxy.port)")
        let started = harness.scratch.file("started")
        let release = harness.scratch.file("release")
        let agent = try harness.startAgent("steady", script: Self.heldScript(started: started, release: release))
        defer { agent.stop() }
        let submitted = try await harness.submit(files: AgentHarness.context)
        #expect(await ProcessProbe.waitUntil(.seconds(90)) { FileManager.default.fileExists(atPath: started.path) })
        // Heartbeats every second keep about 23 s of the lease; one given up at 8 s leaves about 15.
        try await Self.swallowOneHeartbeat(
            agent: agent, proxy: proxy, deadline: "8 s, a third of the 24 s TTL", minimumSecondsLeft: 11)

        try Data().write(to: release)
        let final = try await harness.wait(submitted.id, timeout: .seconds(120))
        #expect(final.state == .published, "\(final)\n\(agent.output())")
        let job = try #require(final.jobs.first)
        #expect(job.attempts == 1 && AgentFaultTests.countedAttempts(job) == 1, "\(job)")
        let events = try await AgentFaultTests.eventTypes(harness, submitted.id)
        #expect(!events.contains("job.lost") && !events.contains("job.retrying"), "\(events)")
    }

    @Test func theHeartbeatCadenceFollowsTheLeaseExpiryTheCoordinatorAnswers() async throws {
        // The coordinator leases for 12 s; the agent was told 60 s and a 30 s interval at join (as if the
        // coordinator's TTL was shortened since). Heartbeats at the join-time cadence (20-30 s) would lose the lease.
        let harness = try await AgentHarness(
            "heartbeat-cadence", leaseTTLSeconds: 12, environment: ["MANIFOLD_HEARTBEAT_INTERVAL_SECONDS": "10"],
            replicas: 0)
        defer { harness.tearDown() }
        let joined = try harness.join("follower")
        #expect(joined.status == 0)
        try Self.rewriteCredential(state: joined.state, leaseTTLSeconds: 60, heartbeatIntervalSeconds: 30)
        let started = harness.scratch.file("started")
        let release = harness.scratch.file("release")
        let agent = try harness.startAgent("follower", script: Self.heldScript(started: started, release: release))
        defer { agent.stop() }
        let submitted = try await harness.submit(files: AgentHarness.context)
        #expect(await ProcessProbe.waitUntil(.seconds(90)) { FileManager.default.fileExists(atPath: started.path) })
        // Three of the coordinator's TTLs with a quiet build: only heartbeats keep the lease.
        let quietFrom = agent.output().count
        try await Task.sleep(for: .seconds(36))
        let heartbeats = Self.heartbeatAnswers(agent.output().dropFirst(quietFrom))
        // About one every 4 s (a third of the 12 s left); the join-time cadence would give one or two.
        #expect(heartbeats >= 5, "\(heartbeats) heartbeats answered in 36 s:\n\(agent.output())")
        try Data().write(to: release)
        let final = try await harness.wait(submitted.id, timeout: .seconds(120))
        #expect(final.state == .published, "\(final)\n\(agent.output())")
        let job = try #require(final.jobs.first)
        #expect(job.attempts == 1 && AgentFaultTests.countedAttempts(job) == 1, "\(job)")
        let events = try await AgentFaultTests.eventTypes(harness, submitted.id)
        #expect(!events.contains("job.lost"), "\(events)")
    }

    @Test func aHeartbeatsDeadlineFollowsTheLeaseTheCoordinatorAnswers() async throws {
        // The coordinator leases for 24 s; the agent was told 120 s and a 60 s interval at join. A heartbeat's
        // deadline of a third of the join-time TTL (40 s) would outlast the lease; a third of the answered one is 8 s.
        let harness = try await AgentHarness(
            "heartbeat-deadline", leaseTTLSeconds: 24, environment: ["MANIFOLD_HEARTBEAT_INTERVAL_SECONDS": "20"],
            replicas: 0)
        defer { harness.tearDown() }
        let joined = try harness.join("shortened")
        #expect(joined.status == 0)
        let proxy = try TCPFaultProxy.start(backendPort: harness.port)
        defer { proxy.stop() }
        try Self.rewriteCredential(
            state: joined.state, coordinatorURL: "https://127.0.0.1:\(proxy.port)", leaseTTLSeconds: 120,
            heartbeatIntervalSeconds: 60)
        let started = harness.scratch.file("started")
        let release = harness.scratch.file("release")
        let agent = try harness.startAgent("shortened", script: Self.heldScript(started: started, release: release))
        defer { agent.stop() }
        let submitted = try await harness.submit(files: AgentHarness.context)
        #expect(await ProcessProbe.waitUntil(.seconds(90)) { FileManager.default.fileExists(atPath: started.path) })
        // A heartbeat every 8 s (a third of the answered lease) is sent with about 16 s left; given up at 8 s, about 8
        // are left. With the join-time deadline of 40 s the lease would be gone first.
        try await Self.swallowOneHeartbeat(
            agent: agent, proxy: proxy, deadline: "8 s, a third of the answered 24 s lease", minimumSecondsLeft: 4)

        try Data().write(to: release)
        let final = try await harness.wait(submitted.id, timeout: .seconds(120))
        #expect(final.state == .published, "\(final)\n\(agent.output())")
        let job = try #require(final.jobs.first)
        #expect(job.attempts == 1 && AgentFaultTests.countedAttempts(job) == 1, "\(job)")
        let events = try await AgentFaultTests.eventTypes(harness, submitted.id)
        #expect(!events.contains("job.lost"), "\(events)")
    }
}
