import Foundation
import ManifoldTestSupport
import Testing

@testable import ManifoldAgent

@Suite struct ProcessRunnerTests {
    @Test func outputIsSpooledAndExitCodesReported() async throws {
        let scratch = try ScratchDirectory(prefix: "runner")
        defer { scratch.remove() }
        let spool = try LogSpool(file: scratch.file("log"), secrets: [])
        let outcome = try await ProcessRunner.run(
            "sh", ["-c", "echo out; echo err >&2; exit 3"], environment: ProcessInfo.processInfo.environment,
            workingDirectory: scratch.url, log: spool, stop: StopSignal(), grace: .seconds(1))
        spool.close()
        #expect(outcome.exitCode == 3)
        let text = try String(contentsOf: scratch.file("log"), encoding: .utf8)
        #expect(text.contains("out\n") && text.contains("err\n"))
    }

    @Test func stopKillsChildrenThatIgnoreSIGTERM() async throws {
        let scratch = try ScratchDirectory(prefix: "runner")
        defer { scratch.remove() }
        let pids = scratch.file("pids")
        let spool = try LogSpool(file: scratch.file("log"), secrets: [])
        let stop = StopSignal()
        let script = """
            trap '' TERM
            sh -c "trap '' TERM; echo \\$\\$ >> '\(pids.path)'; exec sleep 1000" &
            echo $$ >> '\(pids.path)'
            wait
            """
        async let outcome = ProcessRunner.run(
            "sh", ["-c", script], environment: ProcessInfo.processInfo.environment, workingDirectory: scratch.url,
            log: spool, stop: stop, grace: .milliseconds(500))
        while AgentLifecyclePids.read(pids).count < 2 { try await Task.sleep(for: .milliseconds(50)) }
        let started = ContinuousClock.now
        stop.request(.cancelled)
        let result = try await outcome
        #expect(result.stoppedFor == .cancelled)
        #expect(result.exitCode == 128 + 9)
        // Long before `sleep 1000` would end on its own. Generous: the whole library suite runs in parallel on two
        // cores with registries and database servers, and the grace's timer waits its turn like everything else.
        #expect(ContinuousClock.now - started < .seconds(300))
        try await Task.sleep(for: .milliseconds(200))
        for pid in AgentLifecyclePids.read(pids) {
            let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
            #expect(stat.isEmpty || stat.contains(") Z"), "process \(pid) survived: \(stat)")
        }
    }

    @Test func missingExecutablesAreNamed() async throws {
        let scratch = try ScratchDirectory(prefix: "runner")
        defer { scratch.remove() }
        let spool = try LogSpool(file: scratch.file("log"), secrets: [])
        await #expect(throws: AgentError.self) {
            try await ProcessRunner.run(
                "no-such-builder-xyz", [], environment: ["PATH": "/usr/bin"], workingDirectory: nil, log: spool,
                stop: StopSignal(), grace: .seconds(1))
        }
    }
}

enum AgentLifecyclePids {
    static func read(_ file: URL) -> [Int32] {
        ((try? String(contentsOf: file, encoding: .utf8)) ?? "").split(separator: "\n").compactMap { Int32($0) }
    }
}
