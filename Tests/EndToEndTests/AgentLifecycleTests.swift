import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Stopping builds, shutting the agent down, and surviving coordinator and agent restarts — all with real
/// processes.
@Suite struct AgentLifecycleTests {
    /// A builder (and its children) that ignore SIGTERM, writing their pids to `pids`.
    static func stubbornScript(pids: URL) -> String {
        """
        #!/bin/sh
        trap '' TERM
        echo $$ >> '\(pids.path)'
        sh -c "trap '' TERM; echo \\$\\$ >> '\(pids.path)'; exec sleep 1000" &
        sh -c "trap '' TERM; echo \\$\\$ >> '\(pids.path)'; exec sleep 1000" &
        echo started
        wait
        """
    }

    @Test func cancelKillsTheWholeProcessTree() async throws {
        let harness = try await AgentHarness("cancel")
        defer { harness.tearDown() }
        #expect(try harness.join("stubborn").status == 0)
        let pidFile = harness.scratch.file("pids")
        let agent = try harness.startAgent("stubborn", script: Self.stubbornScript(pids: pidFile))
        defer { agent.stop() }
        let submitted = try await harness.submit(files: AgentHarness.context)
        #expect(await ProcessProbe.waitUntil { ProcessProbe.pids(in: pidFile).count == 3 }, "\(agent.output())")
        let pids = ProcessProbe.pids(in: pidFile)
        #expect(pids.allSatisfy(ProcessProbe.alive))
        try await harness.cancel(submitted.id)
        let final = try await harness.wait(submitted.id, timeout: .seconds(30))
        #expect(final.state == .cancelled, "\(final)")
        // SIGTERM is ignored by all three; the kill after the 2 s grace period ends them.
        #expect(
            await ProcessProbe.waitUntil(.seconds(15)) { !pids.contains(where: ProcessProbe.alive) }, "\(pids) \(agent.output())")
        #expect(agent.isRunning)
    }

    @Test func firstSignalDrainsTheRunningJobThenExits() async throws {
        let harness = try await AgentHarness("drain")
        defer { harness.tearDown() }
        #expect(try harness.join("drainer").status == 0)
        let marker = harness.scratch.file("building")
        let signalled = harness.scratch.file("signalled")
        // The build holds until the agent has been signalled, so the signal always lands mid-build.
        let agent = try harness.startAgent(
            "drainer",
            script: AgentHarness.buildahScript(
                before: "touch '\(marker.path)'; while [ ! -e '\(signalled.path)' ]; do sleep 0.1; done"))
        defer { agent.stop() }
        let submitted = try await harness.submit(files: AgentHarness.context)
        #expect(await ProcessProbe.waitUntil { FileManager.default.fileExists(atPath: marker.path) })
        kill(agent.processIdentifier, SIGTERM)
        try await Task.sleep(for: .milliseconds(300))
        #expect(agent.isRunning)
        try Data().write(to: signalled)
        #expect(await AgentHarness.waitForExit(agent, timeout: .seconds(60)), "\(agent.output())")
        #expect(agent.terminationStatus == 0, "\(agent.output())")
        let final = try await harness.wait(submitted.id, timeout: .seconds(30))
        #expect(final.state == .published, "\(final)\n\(agent.output())")
    }

    @Test func secondSignalStopsTheJobAndGivesItBack() async throws {
        let harness = try await AgentHarness("second-signal")
        defer { harness.tearDown() }
        #expect(try harness.join("impatient").status == 0)
        let pidFile = harness.scratch.file("pids")
        let agent = try harness.startAgent("impatient", script: Self.stubbornScript(pids: pidFile))
        defer { agent.stop() }
        let submitted = try await harness.submit(files: AgentHarness.context)
        #expect(await ProcessProbe.waitUntil { ProcessProbe.pids(in: pidFile).count == 3 })
        kill(agent.processIdentifier, SIGTERM)
        try await Task.sleep(for: .milliseconds(500))
        #expect(agent.isRunning)
        kill(agent.processIdentifier, SIGTERM)
        #expect(await AgentHarness.waitForExit(agent, timeout: .seconds(30)), "\(agent.output())")
        // The agent gives the job back (`released`) with its reason: the coordinator re-queues it uncounted.
        let view = try await harness.wait(submitted.id, timeout: .seconds(20)) {
            $0.jobs.first?.reason == "the agent is shutting down"
        }
        let job = try #require(view.jobs.first)
        #expect(job.state == .queued && job.attempts == 1 && job.maxAttempts == 2, "\(view)\n\(agent.output())")
        #expect(agent.output().contains("as released"), "\(agent.output())")
        #expect(!ProcessProbe.pids(in: pidFile).contains(where: ProcessProbe.alive))
    }

    @Test func logUploadSurvivesACoordinatorRestartWithoutLossOrDuplicates() async throws {
        let harness = try await AgentHarness("log-restart", leaseTTLSeconds: 20)
        defer { harness.tearDown() }
        #expect(try harness.join("chatty").status == 0)
        let lines = 80
        func file(_ name: String) -> String { harness.scratch.file(name).path }
        func waitFor(_ name: String) -> String { "while [ ! -e '\(file(name))' ]; do sleep 0.1; done" }
        func printLines(_ range: ClosedRange<Int>) -> String {
            "i=\(range.lowerBound); while [ $i -le \(range.upperBound) ]; do echo \"line $i of the build\"; i=$((i+1)); sleep 0.02; done"
        }
        // Lines 1–40 before the coordinator goes away, 41–60 while it is down, 61–80 after it is back.
        let steps = [
            printLines(1...40), "touch '\(file("half"))'", waitFor("down"), printLines(41...60),
            "touch '\(file("printed"))'", waitFor("back"), printLines(61...lines),
        ]
        let agent = try harness.startAgent(
            "chatty", script: AgentHarness.buildahScript(before: steps.joined(separator: "\n")))
        defer { agent.stop() }
        let submitted = try await harness.submit(files: AgentHarness.context)
        #expect(await ProcessProbe.waitUntil { FileManager.default.fileExists(atPath: file("half")) })
        try await Task.sleep(for: .milliseconds(1500))
        harness.stopCoordinator()
        try Data().write(to: URL(fileURLWithPath: file("down")))
        #expect(await ProcessProbe.waitUntil { FileManager.default.fileExists(atPath: file("printed")) })
        try await Task.sleep(for: .seconds(1))
        try harness.startCoordinator()
        try Data().write(to: URL(fileURLWithPath: file("back")))
        let final = try await harness.wait(submitted.id, timeout: .seconds(90))
        #expect(final.state == .published, "\(final)\n\(agent.output())")
        let log = try await harness.log(submitted.id)
        let numbered = log.split(separator: "\n").filter { $0.hasPrefix("line ") && $0.hasSuffix(" of the build") }
        #expect(numbered == (1...lines).map { "line \($0) of the build"[...] }, "\(log)")
        #expect(log.components(separatedBy: "job ").count >= 2)
    }

    @Test func aReportSavedBeforeAnAgentCrashIsDeliveredAfterRestart() async throws {
        let harness = try await AgentHarness("report-restart", leaseTTLSeconds: 30)
        defer { harness.tearDown() }
        let joined = try harness.join("crashy")
        #expect(joined.status == 0)
        let marker = harness.scratch.file("building")
        let down = harness.scratch.file("down")
        // The build holds until the coordinator is down, so the report cannot be delivered...
        let script = AgentHarness.buildahScript(
            before: "touch '\(marker.path)'; while [ ! -e '\(down.path)' ]; do sleep 0.1; done")
        let agent = try harness.startAgent("crashy", script: script)
        defer { agent.stop() }
        let submitted = try await harness.submit(files: AgentHarness.context)
        #expect(await ProcessProbe.waitUntil { FileManager.default.fileExists(atPath: marker.path) })
        harness.stopCoordinator()
        try Data().write(to: down)
        let reports = URL(fileURLWithPath: joined.state).appendingPathComponent("reports")
        #expect(
            await ProcessProbe.waitUntil(.seconds(60)) {
                ((try? FileManager.default.contentsOfDirectory(atPath: reports.path)) ?? []).contains { $0.hasSuffix(".json") }
            }, "\(agent.output())")
        // ...and the agent dies before it could be.
        kill(agent.processIdentifier, SIGKILL)
        _ = await AgentHarness.waitForExit(agent)
        try harness.startCoordinator()
        let restarted = try harness.startAgent("crashy", script: script, runName: "agent-crashy-2")
        defer { restarted.stop() }
        let final = try await harness.wait(submitted.id, timeout: .seconds(60))
        #expect(final.state == .published, "\(final)\n\(restarted.output())")
        #expect(final.jobs.first?.attempts == 1)
        #expect(restarted.output().contains("delivering the saved report"))
    }

    @Test func aBuildPastItsTimeoutIsStoppedAndFailed() async throws {
        let harness = try await AgentHarness("timeout")
        defer { harness.tearDown() }
        #expect(try harness.join("slowpoke").status == 0)
        let pidFile = harness.scratch.file("pids")
        let agent = try harness.startAgent("slowpoke", script: Self.stubbornScript(pids: pidFile))
        defer { agent.stop() }
        let submitted = try await harness.submit(files: AgentHarness.context, timeoutSeconds: 3)
        let final = try await harness.wait(submitted.id, timeout: .seconds(40))
        #expect(final.state == .failed, "\(final)")
        #expect(final.jobs.first?.reason?.contains("timeout") == true, "\(final)\n\(agent.output())")
        #expect(!ProcessProbe.pids(in: pidFile).contains(where: ProcessProbe.alive))
        #expect(agent.isRunning)
    }

    @Test func aLostLeaseStopsTheBuildWithoutAReport() async throws {
        let harness = try await AgentHarness("lease-lost", leaseTTLSeconds: 5)
        defer { harness.tearDown() }
        #expect(try harness.join("orphaned").status == 0)
        let pidFile = harness.scratch.file("pids")
        let agent = try harness.startAgent("orphaned", script: Self.stubbornScript(pids: pidFile))
        defer { agent.stop() }
        _ = try await harness.submit(files: AgentHarness.context)
        #expect(await ProcessProbe.waitUntil { ProcessProbe.pids(in: pidFile).count == 3 })
        let pids = ProcessProbe.pids(in: pidFile)
        // The agent is frozen (its builder keeps running) for longer than the lease: the coordinator expires it,
        // and the agent's next heartbeat is refused with 409.
        kill(agent.processIdentifier, SIGSTOP)
        try await Task.sleep(for: .seconds(9))
        kill(agent.processIdentifier, SIGCONT)
        #expect(
            await ProcessProbe.waitUntil(.seconds(40)) { !pids.contains(where: ProcessProbe.alive) }, "\(agent.output())")
        #expect(agent.output().contains("is gone"), "\(agent.output())")
        #expect(agent.isRunning)
    }

    @Test func buildsLeftByAKilledAgentAreKilledWhenItRestarts() async throws {
        let harness = try await AgentHarness("leftovers")
        defer { harness.tearDown() }
        #expect(try harness.join("phoenix").status == 0)
        let pidFile = harness.scratch.file("pids")
        let script = Self.stubbornScript(pids: pidFile)
        let agent = try harness.startAgent("phoenix", script: script)
        defer { agent.stop() }
        _ = try await harness.submit(files: AgentHarness.context)
        #expect(await ProcessProbe.waitUntil { ProcessProbe.pids(in: pidFile).count == 3 })
        let pids = ProcessProbe.pids(in: pidFile)
        // SIGKILL cannot be caught: the builder's process group outlives the agent...
        kill(agent.processIdentifier, SIGKILL)
        _ = await AgentHarness.waitForExit(agent)
        #expect(pids.allSatisfy(ProcessProbe.alive))
        // ...until the agent starts again.
        let restarted = try harness.startAgent("phoenix", script: script, runName: "agent-phoenix-2")
        defer { restarted.stop() }
        #expect(await ProcessProbe.waitUntil(.seconds(20)) { !pids.contains(where: ProcessProbe.alive) }, "\(restarted.output())")
        #expect(restarted.output().contains("left by a previous run"), "\(restarted.output())")
    }
}
