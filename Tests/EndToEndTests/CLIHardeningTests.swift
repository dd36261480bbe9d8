import Foundation
import ManifoldAPI
import ManifoldClient
import ManifoldCore
import ManifoldTestSupport
import Testing

/// The CLI and the agent as a careful user expects them: no token on a command line or over plain HTTP unless
/// asked for, and no terminal control sequences from a build's log or reasons reaching the terminal.
@Suite struct CLIHardeningTests {
    static let linux = try! Platform(parsing: "linux/amd64")

    @Test func logsReasonsAndWatchLinesLoseTerminalControlSequencesUnlessRaw() async throws {
        let harness = try await BuildCLIHarness("controls")
        let agent = try await ScriptedAgent("esc-1", platform: Self.linux, harness: harness)
        let submitted = try await harness.cli([
            "build", "submit", harness.image, "-t", "esc", "-p", "linux/amd64", "--max-attempts", "1", "--git",
            "https://git.example.com/app.git#main", "--quiet",
        ])
        #expect(submitted.status == 0, "\(submitted.stderr)")
        let id = submitted.stdout.trimmingCharacters(in: .whitespacesAndNewlines)

        // The log retitles the window, clears the screen, rewrites a line with \r and rings the bell; the reason
        // carries a C1 CSI (U+009B) and a colour.
        let log = "step 1\u{1b}]0;pwned title\u{07}\n\u{1b}[2Jstep 2\rfake\u{07}\n\u{1b}[31mred\u{1b}[0m\tdone\n"
        let reason = "compiler \u{9b}2Jerror \u{1b}[1mhere\u{1b}[0m"
        let lease = try await agent.take()
        _ = try await agent.client.heartbeat(HeartbeatRequest(jobId: lease.jobId, epoch: lease.epoch, phase: "building"))
        _ = try await agent.client.appendLog(jobId: lease.jobId, epoch: lease.epoch, offset: 0, data: Data(log.utf8))
        _ = try await agent.client.complete(
            CompleteRequest(jobId: lease.jobId, epoch: lease.epoch, outcome: .failed, exitCode: 1, reason: reason))

        let logs = try await harness.cli(["build", "logs", id, "--platform", "linux/amd64"])
        #expect(logs.status == 0, "\(logs.stderr)")
        #expect(logs.stdout == "step 1\nstep 2fake\nred\tdone\n", "\(logs.stdout.debugDescription)")

        let raw = try await harness.cli(["build", "logs", id, "--platform", "linux/amd64", "--raw"])
        #expect(raw.stdout == log, "--raw prints the log byte for byte")

        let followed = try await harness.cli(["build", "logs", id, "--platform", "linux/amd64", "--follow"])
        #expect(followed.stdout == "step 1\nstep 2fake\nred\tdone\n", "\(followed.stdout.debugDescription)")

        let show = try await harness.cli(["build", "show", id])
        #expect(show.stdout.contains("linux/amd64: compiler error here"), "\(show.stdout.debugDescription)")
        #expect(!show.stdout.contains("\u{1b}") && !show.stdout.contains("\u{9b}"), "\(show.stdout.debugDescription)")
        let showRaw = try await harness.cli(["build", "show", id, "--raw"])
        #expect(showRaw.stdout.contains(reason))

        let watch = try await harness.cli(["build", "watch", id, "--plain"])
        #expect(watch.status == 1)
        #expect(watch.stdout.contains("failed after 1 attempt: compiler error here"), "\(watch.stdout.debugDescription)")
        #expect(!watch.stdout.contains("\u{1b}") && !watch.stdout.contains("\u{9b}") && !watch.stdout.contains("\u{07}"))
    }

    @Test func loginRefusesPlainHTTPAndReadsTheTokenFromAFileOrStandardInput() async throws {
        let harness = try await BuildCLIHarness("login-token")
        let viewer = try await harness.client().createToken(name: "viewer", role: .viewer).secret
        let environment = ["XDG_CONFIG_HOME": harness.scratch.file("user").path]

        let plain = try await harness.cli(
            ["login", "http://127.0.0.1:\(harness.port)", "--token-file", "-", "--ca-file", harness.caFile],
            environment: environment, input: viewer + "\n")
        #expect(plain.status == 1)
        #expect(plain.stderr.contains("is plain HTTP") && plain.stderr.contains("--insecure"), "\(plain.stderr)")
        #expect(!FileManager.default.fileExists(atPath: harness.scratch.file("user/manifold/contexts.json").path))

        let tokenFile = harness.scratch.file("viewer-token")
        try Data("\(viewer)\r\n".utf8).write(to: tokenFile)
        let fromFile = try await harness.cli(
            ["login", harness.url, "--token-file", tokenFile.path, "--ca-fingerprint", harness.fingerprint],
            environment: environment)
        #expect(fromFile.status == 0, "\(fromFile.stderr)")
        let stored = try String(contentsOf: harness.scratch.file("user/manifold/contexts.json"), encoding: .utf8)
        #expect(stored.contains(viewer))

        let fromStandardInput = try await harness.cli(
            ["login", harness.url, "--token-file", "-", "--ca-fingerprint", harness.fingerprint, "--context", "stdin"],
            environment: environment, input: viewer + "\n")
        #expect(fromStandardInput.status == 0, "\(fromStandardInput.stderr)")

        try Data("\(viewer)\nsomething else\n".utf8).write(to: tokenFile)
        let twoLines = try await harness.cli(
            ["login", harness.url, "--token-file", tokenFile.path, "--ca-fingerprint", harness.fingerprint],
            environment: environment)
        #expect(twoLines.status != 0)
        #expect(twoLines.stderr.contains("has 2 non-empty lines"), "\(twoLines.stderr)")

        let both = try await harness.cli(
            ["login", harness.url, "--token", viewer, "--token-file", tokenFile.path], environment: environment)
        #expect(both.status == 2)
        #expect(both.stderr.contains("only one of --token, --token-file and --token-stdin"), "\(both.stderr)")
    }

    @Test func joinRefusesPlainHTTPAndReadsTheTokenFromAFile() async throws {
        let harness = try await BuildCLIHarness("join-token")
        let agentState = harness.scratch.file("agent")
        let plain = try await runCommand(
            try manifoldAgentBinary(),
            [
                "join", "http://127.0.0.1:\(harness.port)", "--token-file", "-", "--ca-fingerprint", harness.fingerprint,
                "--state-dir", agentState.path,
            ], input: Data((harness.joinToken + "\n").utf8))
        #expect(plain.status != 0)
        #expect(plain.stderr.contains("is plain HTTP") && plain.stderr.contains("--insecure"), "\(plain.stderr)")
        #expect(!FileManager.default.fileExists(atPath: agentState.appendingPathComponent("credential.json").path))

        let tokenFile = harness.scratch.file("join-token")
        try Data("\(harness.joinToken)\n".utf8).write(to: tokenFile)
        let joined = try await runCommand(
            try manifoldAgentBinary(),
            [
                "join", harness.url, "--token-file", tokenFile.path, "--ca-fingerprint", harness.fingerprint,
                "--state-dir", agentState.path, "--name", "from-file", "--platform", "linux/amd64",
            ])
        #expect(joined.status == 0, "\(joined.stderr)")
        let agents = try await harness.client().agents()
        #expect(agents.contains { $0.name == "from-file" })

        let neither = try await runCommand(
            try manifoldAgentBinary(),
            ["join", harness.url, "--ca-fingerprint", harness.fingerprint, "--state-dir", agentState.path])
        #expect(neither.status == 64 || neither.status == 2, "\(neither.stderr)")
        #expect(neither.stderr.contains("--token-file"), "\(neither.stderr)")
    }
}
