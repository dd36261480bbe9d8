import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The user's whole journey as separate processes: a registry, a coordinator, real agents building with buildah
/// (and `command` builders for the failing and never-ending cases), and the `manifold` CLI submitting, watching,
/// showing, retrying and cancelling builds.
@Suite(.serialized) struct StackJourneyTests {
    /// The stack of one test: the agent harness's registry and coordinator, plus agents and CLI helpers.
    final class Stack: @unchecked Sendable {
        // Safe: each test owns its stack and uses it from one task.
        let harness: AgentHarness
        var agents: [ManagedProcess] = []
        var cliEnvironment: [String: String]

        init(_ name: String) async throws {
            harness = try await AgentHarness(name, leaseTTLSeconds: 10)
            cliEnvironment = [
                "MANIFOLD_COORDINATOR": harness.baseURL, "MANIFOLD_TOKEN": harness.admin,
                "MANIFOLD_CA_FILE": "\(harness.state)/pki/ca.crt",
                "XDG_CONFIG_HOME": harness.scratch.file("cli-config").path, "HOME": harness.scratch.file("home").path,
            ]
        }

        /// Joins and starts an agent offering `platform`, building with buildah (vfs + chroot).
        func startBuildahAgent(_ name: String, platform: String) throws {
            let state = try join(name, platform: platform)
            agents.append(
                try ManagedProcess(
                    name: name, executable: try manifoldAgentBinary(),
                    arguments: [
                        "run", "--state-dir", state, "--platform", platform, "--builder", "buildah",
                        "--global-arg=--root=\(state)/storage", "--global-arg=--runroot=\(state)/run",
                        "--global-arg=--storage-driver=vfs", "--builder-arg=--isolation=chroot", "--push-arg=--tls-verify=false",
                        "--kill-grace", "2",
                    ], logDirectory: harness.scratch.url))
        }

        /// Joins and starts an agent offering `platform` whose builder is `script` (a shell script).
        func startCommandAgent(_ name: String, platform: String, script: String) throws {
            let state = try join(name, platform: platform)
            let file = harness.scratch.file("\(name).sh")
            try Data(script.utf8).write(to: file)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: file.path)
            agents.append(
                try ManagedProcess(
                    name: name, executable: try manifoldAgentBinary(),
                    arguments: [
                        "run", "--state-dir", state, "--platform", platform, "--builder", "command", "--command", file.path,
                        "--kill-grace", "2",
                    ], logDirectory: harness.scratch.url))
        }

        private func join(_ name: String, platform: String) throws -> String {
            let state = harness.scratch.file(name).path
            let joined = try runCommand(
                try manifoldAgentBinary(),
                [
                    "join", harness.baseURL, "--token", harness.joinToken, "--ca-fingerprint", harness.fingerprint,
                    "--state-dir", state, "--name", name, "--platform", platform,
                ])
            guard joined.status == 0 else { throw TestEnvironmentError("join \(name) failed: \(joined.stderr)") }
            return state
        }

        /// Runs a short CLI command.
        func cli(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
            try manifold(arguments, environment: cliEnvironment)
        }

        /// Starts a long-running CLI command (watch) as a process; the caller awaits it with `finish`.
        func startCLI(_ name: String, _ arguments: [String]) throws -> ManagedProcess {
            try ManagedProcess(
                name: name, executable: try manifoldBinary(), arguments: arguments,
                environment: cliEnvironment.merging(["DOCKER_CONFIG": harness.scratch.file("docker").path]) { $1 },
                logDirectory: harness.scratch.url)
        }

        /// Waits for `process` to exit and returns its status and output.
        func finish(_ process: ManagedProcess, timeout: Duration = .seconds(120)) async -> (Int32, String) {
            _ = await AgentHarness.waitForExit(process, timeout: timeout)
            if process.isRunning { process.stop() }
            return (process.terminationStatus, process.output())
        }

        func rawList(_ tag: String) throws -> String {
            try runChecked("skopeo", ["inspect", "--raw", "--tls-verify=false", "docker://\(harness.image):\(tag)"])
        }

        func tearDown() {
            for agent in agents { agent.stop() }
            harness.tearDown()
        }
    }

    /// A context directory with the copy-only Containerfile, a .dockerignore'd secret and an optional build file.
    static func makeContext(_ stack: Stack, name: String, buildFile: String? = nil) throws -> URL {
        let directory = stack.harness.scratch.file(name)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try Data("FROM scratch\nCOPY hello.txt /hello.txt\n".utf8).write(to: directory.appendingPathComponent("Containerfile"))
        try Data("hello from the journey\n".utf8).write(to: directory.appendingPathComponent("hello.txt"))
        try Data("do not ship me\n".utf8).write(to: directory.appendingPathComponent("secret.env"))
        try Data("*.env\n".utf8).write(to: directory.appendingPathComponent(".dockerignore"))
        if let buildFile { try Data(buildFile.utf8).write(to: directory.appendingPathComponent("manifold.yaml")) }
        return directory
    }

    static func buildID(in output: String) throws -> String {
        guard let match = output.firstMatch(of: /bld_[0-9a-f]+/) else {
            throw TestEnvironmentError("no build id in the CLI's output:\n\(output)")
        }
        return String(match.output)
    }

    @Test func threeAgentsBuildWatchRetryAndPublish() async throws {
        let stack = try await Stack("journey")
        defer { stack.tearDown() }
        try stack.startBuildahAgent("amd64-host", platform: "linux/amd64")
        try stack.startBuildahAgent("arm64-host", platform: "linux/arm64")
        try stack.startBuildahAgent("ltsc2022-host", platform: "windows/amd64:10.0.20348.2227")
        let context = try Self.makeContext(stack, name: "app")

        // Submit from a context directory and watch (not a terminal: one line per event) until published.
        let submit = try stack.startCLI(
            "submit",
            [
                "build", "submit", stack.harness.image, "--tag", "1.0", "--tag", "latest", "--platform", "linux/amd64",
                "--platform", "linux/arm64", "--platform", "windows/amd64:10.0.20348", "--context", context.path, "--file",
                "Containerfile", "--watch",
            ])
        let (status, watched) = await stack.finish(submit)
        #expect(status == 0, "\(watched)")
        let id = try Self.buildID(in: watched)
        #expect(watched.contains("published"), "\(watched)")
        #expect(watched.contains("windows/amd64"), "\(watched)")

        // The list: three platforms, Windows os.version kept, both tags the same bytes as the coordinator recorded.
        let view = try await stack.harness.build(id)
        #expect(view.state == .published)
        let list = try stack.rawList("1.0")
        #expect(try stack.rawList("latest") == list)
        #expect(Digest.compute(of: Data(list.utf8)) == view.listDigest)
        for platform in ["\"amd64\"", "\"arm64\"", "\"windows\"", "10.0.20348"] { #expect(list.contains(platform), "\(list)") }
        // The .dockerignore'd file never reached an agent.
        for agent in stack.agents { #expect(!agent.output().contains("do not ship me")) }

        // `build show` names every platform with its digest, and the list.
        let shown = try stack.cli(["build", "show", id])
        #expect(shown.status == 0, "\(shown.stderr)")
        for job in view.jobs {
            #expect(shown.stdout.contains(job.platform.os), "\(shown.stdout)")
            if let digest = job.digest { #expect(shown.stdout.contains(String(digest.hex.prefix(12))), "\(shown.stdout)") }
        }
        #expect(shown.stdout.contains(String(view.listDigest?.hex.prefix(12) ?? "missing")), "\(shown.stdout)")

        // Rebuild one platform: the list is re-published with its new child digest.
        let armBefore = try #require(view.jobs.first { $0.platform.architecture == "arm64" }?.digest)
        let retry = try stack.startCLI("retry", ["build", "retry", id, "--platform", "linux/arm64", "--watch"])
        let (retryStatus, retried) = await stack.finish(retry)
        #expect(retryStatus == 0, "\(retried)")
        let after = try await stack.harness.build(id)
        let armAfter = try #require(after.jobs.first { $0.platform.architecture == "arm64" }?.digest)
        #expect(armAfter != armBefore)
        #expect(after.listDigest != view.listDigest)
        let republished = try stack.rawList("1.0")
        #expect(republished.contains(armAfter.description))
        #expect(!republished.contains(armBefore.description))

        // The same build from a build file in the context: image, tags and platforms come from it.
        let fileContext = try Self.makeContext(
            stack, name: "with-build-file",
            buildFile: """
                image: \(stack.harness.image)
                tags: [from-file]
                dockerfile: Containerfile
                platforms:
                  - linux/amd64
                  - linux/arm64
                """)
        let fromFile = try stack.startCLI("submit-file", ["build", "submit", "--context", fileContext.path, "--watch"])
        let (fileStatus, fileOutput) = await stack.finish(fromFile)
        #expect(fileStatus == 0, "\(fileOutput)")
        let fileList = try stack.rawList("from-file")
        #expect(fileList.contains("\"arm64\"") && !fileList.contains("\"windows\""), "\(fileList)")
    }

    @Test func waitingFailingAndCancelledBuildsPublishNothing() async throws {
        let stack = try await Stack("journey-failures")
        defer { stack.tearDown() }
        let marker = stack.harness.scratch.file("sleeper.pid").path
        try stack.startCommandAgent(
            "failing-host", platform: "linux/riscv64",
            script: "#!/bin/sh\necho 'compiling for riscv64'\necho 'error: no space left' >&2\nexit 3\n")
        // A build that never ends on its own: a child that ignores SIGTERM, whose pid is recorded.
        try stack.startCommandAgent(
            "slow-host", platform: "linux/ppc64le",
            script:
                "#!/bin/sh\necho 'still building'\nsh -c 'trap \"\" TERM; echo $$ > \(marker); while true; do sleep 1; done' &\nwait\n"
        )
        try stack.startBuildahAgent("amd64-host", platform: "linux/amd64")
        let context = try Self.makeContext(stack, name: "app")

        // A platform no agent offers: the watch says which kind of host it waits for.
        let submitted = try stack.cli([
            "build", "submit", stack.harness.image, "--tag", "waiting", "--platform", "linux/s390x", "--context", context.path,
            "--file", "Containerfile", "--quiet",
        ])
        #expect(submitted.status == 0, "\(submitted.stderr)")
        let waitingID = try Self.buildID(in: submitted.stdout)
        let watch = try stack.startCLI("watch-waiting", ["build", "watch", waitingID])
        let deadline = ContinuousClock.now + .seconds(30)
        while !watch.output().contains("s390x") || !watch.output().lowercased().contains("agent"),
            ContinuousClock.now < deadline
        {
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(watch.output().contains("linux/s390x"), "\(watch.output())")
        #expect(try stack.cli(["build", "cancel", waitingID]).status == 0)
        let (watchStatus, _) = await stack.finish(watch, timeout: .seconds(30))
        #expect(watchStatus == 1)

        // One platform fails: the build fails, exit code 1, and no list is pushed.
        let failing = try stack.startCLI(
            "submit-failing",
            [
                "build", "submit", stack.harness.image, "--tag", "broken", "--platform", "linux/amd64", "--platform",
                "linux/riscv64", "--context", context.path, "--file", "Containerfile", "--max-attempts", "1", "--watch",
            ])
        let (failStatus, failOutput) = await stack.finish(failing)
        #expect(failStatus == 1, "\(failOutput)")
        #expect(failOutput.contains("riscv64"), "\(failOutput)")
        #expect(throws: (any Error).self) { _ = try stack.rawList("broken") }

        // The same with --allow-partial: a list of the platform that succeeded.
        let partial = try stack.startCLI(
            "submit-partial",
            [
                "build", "submit", stack.harness.image, "--tag", "partial", "--platform", "linux/amd64", "--platform",
                "linux/riscv64", "--context", context.path, "--file", "Containerfile", "--max-attempts", "1",
                "--allow-partial", "--watch",
            ])
        let (partialStatus, partialOutput) = await stack.finish(partial)
        #expect(partialStatus == 0, "\(partialOutput)")
        let partialList = try stack.rawList("partial")
        #expect(partialList.contains("\"amd64\"") && !partialList.contains("riscv64"), "\(partialList)")

        // Cancel a running build: no list, and the builder's whole process tree is gone.
        let running = try stack.cli([
            "build", "submit", stack.harness.image, "--tag", "cancelled", "--platform", "linux/ppc64le", "--context",
            context.path, "--file", "Containerfile", "--quiet",
        ])
        let runningID = try Self.buildID(in: running.stdout)
        let started = ContinuousClock.now + .seconds(30)
        while (try? String(contentsOfFile: marker, encoding: .utf8)) == nil, ContinuousClock.now < started {
            try await Task.sleep(for: .milliseconds(200))
        }
        let sleeper = try #require(
            Int32((try String(contentsOfFile: marker, encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(kill(sleeper, 0) == 0)
        // `build logs --follow` prints the running attempt's log and ends when the attempt does.
        let follow = try stack.startCLI("follow", ["build", "logs", runningID, "--platform", "linux/ppc64le", "--follow"])
        let shown = ContinuousClock.now + .seconds(30)
        while !follow.output().contains("still building"), ContinuousClock.now < shown {
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(follow.isRunning)
        #expect(try stack.cli(["build", "cancel", runningID]).status == 0)
        let (followStatus, followed) = await stack.finish(follow, timeout: .seconds(60))
        #expect(followStatus == 0, "\(followed)")
        #expect(followed.contains("still building"), "\(followed)")
        let gone = ContinuousClock.now + .seconds(30)
        while kill(sleeper, 0) == 0, ContinuousClock.now < gone { try await Task.sleep(for: .milliseconds(200)) }
        #expect(kill(sleeper, 0) != 0, "the builder's child \(sleeper) survived the cancel")
        let cancelled = try await stack.harness.wait(runningID) { $0.state.isFinal }
        #expect(cancelled.state == .cancelled)
        #expect(cancelled.listDigest == nil)
        #expect(throws: (any Error).self) { _ = try stack.rawList("cancelled") }
    }
}
