import Foundation
import ManifoldAPI
import ManifoldCoordinator
import ManifoldCore
import ManifoldTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension ChaosTests {
    /// An agent is killed with SIGKILL mid-build while a second agent offers the platform.
    ///
    /// Invariants: the job goes to the second agent within lease TTL + reaper period of the last heartbeat (the
    /// kill), with no retry backoff between the lost lease and the next grant; the build publishes the second
    /// agent's image.
    ///
    /// Against replicas the same, with the same bound: any replica may reap the lease, and the second agent's poll,
    /// held by any replica, must be woken across replicas (LISTEN/NOTIFY) as at once as within one process.
    @Test func agentKilledMidBuildIsRedispatched() async throws {
        try await redispatchAfterKill(leaseTTLSeconds: Chaos.leaseTTLSeconds, heartbeatSeconds: 1)
    }

    /// The same at the shipped defaults (60 s lease TTL, 10 s heartbeats), for the figure the README promises: at
    /// most TTL + reaper period after the kill, about 62 s.
    @Test func agentKilledMidBuildIsRedispatchedAtTheDefaultLeaseTTL() async throws {
        let defaults = CoordinatorSettings.defaults
        try await redispatchAfterKill(
            leaseTTLSeconds: defaults.leaseTTLSeconds, heartbeatSeconds: defaults.heartbeatIntervalSeconds)
    }

    private func redispatchAfterKill(leaseTTLSeconds: Int, heartbeatSeconds: Int) async throws {
        // A retry backoff far above the second that event times resolve (they are whole seconds in the API), so a
        // lost lease that waited one instead of going back to the queue at once cannot pass for a quick re-grant.
        let harness = try await AgentHarness(
            "redispatch-\(leaseTTLSeconds)", leaseTTLSeconds: leaseTTLSeconds,
            environment: Chaos.environment.merging([
                "MANIFOLD_HEARTBEAT_INTERVAL_SECONDS": "\(heartbeatSeconds)", "MANIFOLD_RETRY_BACKOFF_SECONDS": "10",
                "MANIFOLD_MAX_RETRY_BACKOFF_SECONDS": "20",
            ]) { $1 })
        defer { harness.tearDown() }
        let ledger = harness.scratch.file("ledger")
        let go = harness.scratch.file("go")
        var agents: [String: ManagedProcess] = [:]
        defer { agents.values.forEach { $0.stop() } }
        for name in ["first", "second"] {
            let pids = harness.scratch.file("pids-\(name)")
            #expect(try harness.join(name).status == 0)
            agents[name] = try harness.startAgent(
                name, script: Chaos.pushScript(ledger: ledger, before: "echo $$ >> '\(pids.path)'\n\(Chaos.hold(until: go))"))
        }
        let submitted = try await harness.submit(files: AgentHarness.context, maxAttempts: 2)
        let assigned = try #require(
            try await harness.watch(submitted.id, timeout: .seconds(20)) {
                $0.jobs[0].agent != nil && $0.jobs[0].state == .assigned
            })
        let holder = try #require(assigned.view.jobs[0].agent)
        let other = holder == "first" ? "second" : "first"
        let holderPids = harness.scratch.file("pids-\(holder)")
        #expect(await ProcessProbe.waitUntil(.seconds(20)) { !ProcessProbe.pids(in: holderPids).isEmpty })
        // Let a heartbeat land, so the lease is fresh when its agent dies.
        try await Task.sleep(for: .milliseconds(heartbeatSeconds * 1_000 + 1_500))
        let agent = try #require(agents[holder])
        kill(agent.processIdentifier, SIGKILL)
        let killedAt = ContinuousClock.now
        _ = await AgentHarness.waitForExit(agent)
        // The dead agent's builder would push on; end it as a reboot would, and let the next build run through.
        for pid in ProcessProbe.pids(in: holderPids) { kill(pid, SIGKILL) }
        try Data().write(to: go)

        let moved = try #require(
            try await harness.watch(submitted.id, timeout: .seconds(Double(leaseTTLSeconds) + 60)) { $0.jobs[0].agent == other },
            "the job never reached \(other)\n\(harness.coordinatorLogs())")
        let redispatch = moved.at - killedAt
        let bound = Double(leaseTTLSeconds) + Chaos.reaperSeconds
        Chaos.figure(
            "re-dispatch after kill -9: \(Chaos.seconds(redispatch)) (TTL \(leaseTTLSeconds) s, heartbeats every \(heartbeatSeconds) s, reaper \(Int(Chaos.reaperSeconds)) s)"
        )
        #expect(redispatch <= .milliseconds(Int64(bound * 1000) + 500), "re-dispatch took \(Chaos.seconds(redispatch))")

        let final = try await harness.wait(submitted.id, timeout: .seconds(60))
        #expect(final.state == .published, "\(final)")
        let events = try await harness.events(submitted.id)
        let lost = try #require(events.last { $0.type == "job.lost" }, "no job.lost event: \(events.map(\.type))")
        let regranted = try #require(
            events.first { $0.type == "job.assigned" && $0.id > lost.id }, "no grant after the lost lease: \(events.map(\.type))")
        // Whole-second event times: a re-grant within milliseconds reads 1 s when a second boundary falls between.
        let gap = regranted.time.timeIntervalSince(lost.time)
        Chaos.figure("re-dispatch: lease lost -> next grant \(Chaos.seconds(gap)) (event times are whole seconds)")
        #expect(gap <= 1.0, "the lost lease waited \(Chaos.seconds(gap)) before the next grant (a retry backoff?)")
        #expect(!events.contains { $0.type == "job.retrying" && $0.id > lost.id && $0.id < regranted.id })
        let winner = Chaos.ledger(ledger)
        #expect(winner.count == 1 && final.jobs[0].digest?.description == winner.first?.digest, "\(winner) \(final)")
    }

    /// A zombie agent: frozen with SIGSTOP past its lease while another agent does the job, its builder pushes
    /// anyway, then it is resumed with SIGCONT.
    ///
    /// Invariants: the coordinator refuses the zombie (the build stays published with the other agent's image and
    /// list); the zombie stops its build; its image is in no list and under no stable tag, only under its own
    /// `-attempt-N` tag.
    ///
    /// Against replicas the same: the zombie's late calls reach whichever replica HAProxy picks, and every replica
    /// must refuse them by the lease epoch in the shared database.
    @Test func zombieAgentChangesNothing() async throws {
        let harness = try await AgentHarness("zombie", leaseTTLSeconds: Chaos.leaseTTLSeconds, environment: Chaos.environment)
        defer { harness.tearDown() }
        let ledger = harness.scratch.file("ledger")
        let goZombie = harness.scratch.file("go-zombie")
        let pushedZombie = harness.scratch.file("pushed-zombie")
        let zombiePids = harness.scratch.file("pids-zombie")
        #expect(try harness.join("zombie").status == 0)
        #expect(try harness.join("healthy").status == 0)
        // The zombie's builder pushes once released, then keeps running: only its agent can stop it.
        let zombie = try harness.startAgent(
            "zombie",
            script: Chaos.pushScript(
                ledger: ledger, before: "echo $$ >> '\(zombiePids.path)'\n\(Chaos.hold(until: goZombie))",
                after: "touch '\(pushedZombie.path)'\nwhile true; do sleep 0.1; done"))
        defer { zombie.stop() }
        let submitted = try await harness.submit(files: AgentHarness.context, maxAttempts: 2)
        _ = try #require(
            try await harness.watch(submitted.id, timeout: .seconds(20)) { $0.jobs[0].agent == "zombie" })
        #expect(await ProcessProbe.waitUntil(.seconds(20)) { !ProcessProbe.pids(in: zombiePids).isEmpty })
        kill(zombie.processIdentifier, SIGSTOP)
        let frozenAt = ContinuousClock.now

        let healthy = try harness.startAgent("healthy", script: Chaos.pushScript(ledger: ledger))
        defer { healthy.stop() }
        let published = try await harness.wait(submitted.id, timeout: .seconds(60))
        #expect(published.state == .published, "\(published)\n\(harness.coordinatorLogs())")
        #expect(published.jobs[0].agent == "healthy", "\(published)")
        Chaos.figure("zombie: the healthy agent published \(Chaos.seconds(ContinuousClock.now - frozenAt)) after the freeze")

        // The zombie's builder pushes while its agent is still frozen; then the agent wakes up.
        try Data().write(to: goZombie)
        #expect(await ProcessProbe.waitUntil(.seconds(20)) { FileManager.default.fileExists(atPath: pushedZombie.path) })
        kill(zombie.processIdentifier, SIGCONT)
        let resumedAt = ContinuousClock.now
        let builder = ProcessProbe.pids(in: zombiePids)
        #expect(
            await ProcessProbe.waitUntil(.seconds(Double(Chaos.leaseTTLSeconds) + 10)) {
                !builder.contains(where: ProcessProbe.alive)
            }, "the zombie's build still runs\n\(zombie.output())")
        Chaos.figure("zombie: build stopped \(Chaos.seconds(ContinuousClock.now - resumedAt)) after SIGCONT")
        // The agent may stop its build on its own clock (no acknowledged heartbeat for a TTL) before the answers to
        // its next calls arrive: wait for those answers.
        #expect(
            await ProcessProbe.waitUntil(.seconds(10)) {
                let output = zombie.output().lowercased()
                return ["409", "401", "lost", "gone"].contains { output.contains($0) }
            }, "the zombie's agent never says its lease was refused:\n\(zombie.output())")
        // Give a late report every chance to land, then check nothing moved.
        try await Task.sleep(for: .seconds(3))
        let after = try await harness.build(submitted.id)
        #expect(after.state == .published && after.listDigest == published.listDigest, "\(after)")
        #expect(after.jobs[0].digest == published.jobs[0].digest && after.jobs[0].agent == "healthy", "\(after)")

        let reader = try RegistryReader(host: harness.registry.host)
        defer { reader.shutdown() }
        let pushes = Chaos.ledger(ledger)
        let zombiePush = try #require(
            pushes.first { $0.digest != published.jobs[0].digest?.description }, "the zombie pushed nothing: \(pushes)")
        #expect(zombiePush.tag.range(of: #"-attempt-\d+$"#, options: .regularExpression) != nil, "\(zombiePush)")
        let list = try await reader.children("1.0")
        #expect(!list.children.map(\.description).contains(zombiePush.digest), "the zombie's image is in the list")
        #expect(list.list == after.listDigest)
        for tag in try await reader.tags() {
            let digest = try await reader.digest(tag)?.description
            if tag == zombiePush.tag {
                #expect(digest == zombiePush.digest)
            } else {
                #expect(digest != zombiePush.digest, "tag \(tag) points at the zombie's image")
            }
        }
        #expect(try await reader.digest("1.0-linux-amd64")?.description == published.jobs[0].digest?.description)
    }

    /// An idle agent is stopped (SIGTERM, then in a second round SIGKILL) just before a build is submitted, while
    /// a healthy agent waits for work.
    ///
    /// Invariants: the job is granted once, to the healthy agent (never to the stopped agent's dead poll); no
    /// attempt is counted against the stopped agent (one attempt, `max_attempts: 1` publishes). The wait after the
    /// submit is printed as a figure.
    ///
    /// Against replicas the same: the stopped agent's poll may have been held by another replica than the one the
    /// submit reaches; that replica must not hand the job to the dead poll.
    @Test func idleAgentStoppedJustBeforeSubmit() async throws {
        let harness = try await AgentHarness("idle-stop", leaseTTLSeconds: Chaos.leaseTTLSeconds, environment: Chaos.environment)
        defer { harness.tearDown() }
        let ledger = harness.scratch.file("ledger")
        #expect(try harness.join("healthy").status == 0)
        let healthy = try harness.startAgent("healthy", script: Chaos.pushScript(ledger: ledger))
        defer { healthy.stop() }
        for (round, signal) in [("SIGTERM", SIGTERM), ("kill -9", SIGKILL)] {
            let name = signal == SIGTERM ? "idle-term" : "idle-kill"
            #expect(try harness.join(name).status == 0)
            let idle = try harness.startAgent(name, script: Chaos.pushScript(ledger: ledger))
            defer { idle.stop() }
            // Both agents hold a poll open.
            try await Task.sleep(for: .seconds(2))
            kill(idle.processIdentifier, signal)
            #expect(await AgentHarness.waitForExit(idle, timeout: .seconds(20)), "\(idle.output())")
            let submittedAt = ContinuousClock.now
            let submitted = try await harness.submit(files: AgentHarness.context, tags: [name], maxAttempts: 1)
            let assigned = try #require(
                try await harness.watch(submitted.id, timeout: .seconds(30)) { $0.jobs[0].agent != nil })
            let latency = assigned.at - submittedAt
            Chaos.figure(
                "idle agent stopped with \(round): job to \(assigned.view.jobs[0].agent ?? "?") \(Chaos.seconds(latency)) after submit"
            )
            #expect(assigned.view.jobs[0].agent == "healthy", "\(round): the job went to the stopped agent: \(assigned.view)")
            let final = try await harness.wait(submitted.id, timeout: .seconds(Double(Chaos.leaseTTLSeconds) * 4 + 20))
            // The coordinator's own view of the wait (event times), apart from the upload, the submit call and this
            // test's polling: which grants went to whom, and how long after the submit.
            let events = final.state.isFinal ? try await harness.events(submitted.id) : []
            let grants = events.filter { $0.type == "job.assigned" }.compactMap { grant in
                events.first { $0.type == "build.submitted" }.map {
                    "\(grant.data["agent"] ?? "?") after \(Chaos.seconds(grant.time.timeIntervalSince($0.time)))"
                }
            }
            Chaos.figure("idle agent stopped with \(round): the coordinator granted the job to \(grants)")
            // Never offered to the stopped agent's dead poll (which would cost a grant, then an acknowledge window):
            // the coordinator granted it once, to the healthy agent, within a second of the submit by its own event
            // times (the client's figure above also holds the upload, the submit call and this test's polling). Event
            // times are whole seconds, so a grant within milliseconds reads 1 s when a second boundary falls between;
            // a dead poll's grant would cost an acknowledge window (the lease TTL, 5 s) on top.
            #expect(
                events.filter { $0.type == "job.assigned" }.map { $0.data["agent"] } == ["healthy"],
                "\(round): the healthy agent waited \(Chaos.seconds(latency)); grants: \(grants)")
            if let submittedEvent = events.first(where: { $0.type == "build.submitted" }),
                let grant = events.first(where: { $0.type == "job.assigned" })
            {
                let wait = grant.time.timeIntervalSince(submittedEvent.time)
                #expect(wait <= 1.0, "\(round): the coordinator granted the job \(Chaos.seconds(wait)) after the submit")
            } else {
                Issue.record("\(round): no build.submitted or job.assigned event: \(events.map(\.type))")
            }
            #expect(final.state == .published, "\(round): \(final)")
            #expect(final.jobs[0].attempts == 1, "\(round): \(final.jobs[0].attempts) attempts")
        }
    }
}
