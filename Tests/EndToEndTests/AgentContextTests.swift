import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Git contexts, `doctor` and `--drain-timeout`, against the real coordinator.
@Suite struct AgentContextTests {
    @Test func gitContextIsClonedAtTheRef() async throws {
        let harness = try await AgentHarness("git")
        defer { harness.tearDown() }
        // A repository whose tag points at the first commit, not the branch tip.
        let repositories = harness.scratch.file("repos")
        let repository = repositories.appendingPathComponent("app")
        try FileManager.default.createDirectory(at: repository, withIntermediateDirectories: true)
        func git(_ arguments: String...) throws {
            try runChecked(
                "git", ["-C", repository.path, "-c", "user.name=t", "-c", "user.email=t@example.com"] + arguments)
        }
        try git("init", "-q", "-b", "main")
        for (name, content) in AgentHarness.context {
            try Data(content.utf8).write(to: repository.appendingPathComponent(name))
        }
        try git("add", ".")
        try git("commit", "-q", "-m", "first")
        try git("tag", "v1")
        try Data("changed after the tag\n".utf8).write(to: repository.appendingPathComponent("hello.txt"))
        try git("commit", "-q", "-am", "second")
        // Served over git's "dumb" HTTP protocol by a static file server on loopback.
        let bare = repositories.appendingPathComponent("app.git")
        try await runChecked("git", ["clone", "-q", "--bare", repository.path, bare.path])
        try await runChecked("git", ["-C", bare.path, "update-server-info"])
        let port = try Loopback.freePort()
        let daemon = try ManagedProcess(
            name: "git-http", executable: "python3",
            arguments: ["-m", "http.server", "--bind", "127.0.0.1", "\(port)", "--directory", repositories.path],
            logDirectory: harness.scratch.url)
        defer { daemon.stop() }
        try Loopback.waitUntilListening(port: port, process: daemon)

        #expect(try harness.join("cloner").status == 0)
        // The repository is served over plain http on loopback, which the agent clones only when allowed.
        let agent = try harness.startAgent(
            "cloner", script: AgentHarness.buildahScript(before: "cat \"$MANIFOLD_CONTEXT_DIR/hello.txt\""),
            extra: ["--allow-http-git"])
        defer { agent.stop() }
        let spec = BuildSpec(
            image: harness.image, tags: ["git"], platforms: [PlatformSpec(platform: harness.platform)],
            context: .git(url: "http://127.0.0.1:\(port)/app.git", ref: "v1"), timeoutSeconds: 300, maxAttempts: 1)
        let response = try await CoordinatorProcess.call(
            harness.coordinator, "POST", "/api/v1/builds", token: harness.submitter, json: spec)
        #expect(response.status == 201, "\(String(decoding: response.body, as: UTF8.self))")
        let submitted = try APICoding.decoder().decode(BuildView.self, from: response.body)
        let final = try await harness.wait(submitted.id, timeout: .seconds(90))
        #expect(final.state == .published, "\(final)\n\(agent.output())")
        let log = try await harness.log(submitted.id)
        #expect(log.contains("hello from manifold"), "\(log)")
        #expect(!log.contains("changed after the tag"))
    }

    @Test func aCheckoutWhoseDockerfileLinksToTheCredentialIsRefused() async throws {
        let harness = try await AgentHarness("git-escape")
        defer { harness.tearDown() }
        let joined = try harness.join("checked-out")
        #expect(joined.status == 0)
        let credential = URL(fileURLWithPath: joined.state).appendingPathComponent("credential.json")
        let secret = try #require(
            (try JSONSerialization.jsonObject(with: Data(contentsOf: credential)) as? [String: Any])?["secret"] as? String)
        // The attack: a repository whose Dockerfile is a symlink to the agent's own credential.
        let served = try GitRepositoryServer(harness: harness) { repository in
            try FileManager.default.createSymbolicLink(
                at: repository.appendingPathComponent("Dockerfile"), withDestinationURL: credential)
            try Data("hello\n".utf8).write(to: repository.appendingPathComponent("hello.txt"))
        }
        defer { served.stop() }
        let agent = try harness.startAgent(
            "checked-out", script: "#!/bin/sh\ncat \"$MANIFOLD_CONTEXT_DIR/Dockerfile\"\nexit 1\n", extra: ["--allow-http-git"])
        defer { agent.stop() }
        let final = try await submitGit(harness, url: served.url)
        #expect(final.state == .failed, "\(final)\n\(agent.output())")
        let reason = final.jobs.first?.reason ?? ""
        #expect(reason.contains("the git checkout was refused"), "\(reason)")
        #expect(reason.contains("Dockerfile") && reason.contains("absolute path"), "\(reason)")
        let log = try await harness.log(final.id)
        #expect(!log.contains(secret), "the builder must never run on the checkout")
    }

    @Test func sshGitURLsAreRefusedUnlessTheHostIsAllowed() async throws {
        let harness = try await AgentHarness("git-ssh")
        defer { harness.tearDown() }
        #expect(try harness.join("no-ssh").status == 0)
        // git would authenticate with this host's ssh keys: refused before git runs, naming the setting.
        let agent = try harness.startAgent(
            "no-ssh", script: "#!/bin/sh\nexit 1\n",
            extra: ["--allow-ssh-git-host", "git.example.com"])
        defer { agent.stop() }
        for url in ["git@127.0.0.1:team/app.git", "ssh://git@127.0.0.1:22/team/app.git"] {
            let final = try await submitGit(harness, url: url)
            #expect(final.state == .failed, "\(final)\n\(agent.output())")
            let reason = final.jobs.first?.reason ?? ""
            #expect(reason.contains("allow_ssh_git_host") && reason.contains("allowed: git.example.com"), "\(reason)")
        }
    }

    /// Submits a one-platform build of the git repository at `url` and waits until it is final.
    private func submitGit(_ harness: AgentHarness, url: String) async throws -> BuildView {
        let spec = BuildSpec(
            image: harness.image, tags: ["git"], platforms: [PlatformSpec(platform: harness.platform)],
            context: .git(url: url, ref: "main"), timeoutSeconds: 120, maxAttempts: 1)
        let response = try await CoordinatorProcess.call(
            harness.coordinator, "POST", "/api/v1/builds", token: harness.submitter, json: spec)
        #expect(response.status == 201, "\(String(decoding: response.body, as: UTF8.self))")
        let submitted = try APICoding.decoder().decode(BuildView.self, from: response.body)
        return try await harness.wait(submitted.id, timeout: .seconds(90))
    }

    @Test func doctorChecksCoordinatorCredentialAndBuilder() async throws {
        let harness = try await AgentHarness("doctor")
        defer { harness.tearDown() }
        let joined = try harness.join("checked")
        #expect(joined.status == 0)
        let good = try await runCommand(
            try manifoldAgentBinary(),
            ["doctor", "--state-dir", joined.state], environment: ["MANIFOLD_AGENT_BUILDER": "buildah"])
        #expect(good.status == 0, "\(good.stdout)\(good.stderr)")
        #expect(good.stdout.contains("ok   credential accepted"), "\(good.stdout)")
        #expect(good.stdout.contains("ok   builder buildah"), "\(good.stdout)")
        // Tests run as root: exactly what doctor must warn about, without failing.
        #expect(good.stdout.contains("user: root (uid 0)"), "\(good.stdout)")
        #expect(good.stdout.contains("WARN the agent runs as root (uid 0)"), "\(good.stdout)")
        #expect(!good.stdout.contains("WARN buildah uses --isolation=chroot"), "\(good.stdout)")
        let chroot = try await runCommand(
            try manifoldAgentBinary(), ["doctor", "--state-dir", joined.state],
            environment: ["MANIFOLD_AGENT_BUILDER": "buildah", "MANIFOLD_AGENT_BUILDER_ARG": "--isolation=chroot"])
        #expect(chroot.stdout.contains("WARN buildah uses --isolation=chroot"), "\(chroot.stdout)")
        #expect(chroot.stdout.contains("here they run as root"), "\(chroot.stdout)")
        let bad = try await runCommand(
            try manifoldAgentBinary(),
            ["doctor", "--state-dir", joined.state, "--builder", "command"],
            environment: ["MANIFOLD_AGENT_COMMAND": "/nonexistent/build.sh"])
        #expect(bad.status != 0)
        #expect(bad.stdout.contains("FAIL builder command"), "\(bad.stdout)")
        #expect(bad.stdout.contains("fix:"))
    }

    @Test func drainTimeoutStopsAJobThatDoesNotFinishAndGivesItBack() async throws {
        let harness = try await AgentHarness("drain-timeout")
        defer { harness.tearDown() }
        #expect(try harness.join("slow").status == 0)
        let pidFile = harness.scratch.file("pids")
        let agent = try harness.startAgent(
            "slow", script: AgentLifecycleTests.stubbornScript(pids: pidFile), extra: ["--drain-timeout", "1"])
        defer { agent.stop() }
        let submitted = try await harness.submit(files: AgentHarness.context)
        #expect(await ProcessProbe.waitUntil { ProcessProbe.pids(in: pidFile).count == 3 })
        kill(agent.processIdentifier, SIGTERM)
        #expect(await AgentHarness.waitForExit(agent, timeout: .seconds(30)), "\(agent.output())")
        let view = try await harness.wait(submitted.id, timeout: .seconds(20)) {
            $0.jobs.first?.reason == "the agent is shutting down"
        }
        #expect(view.jobs.first?.state == .queued, "\(view)\n\(agent.output())")
        #expect(agent.output().contains("as released"), "\(agent.output())")
        #expect(!ProcessProbe.pids(in: pidFile).contains(where: ProcessProbe.alive))
    }
}

/// A git repository with one commit on `main`, served over git's "dumb" HTTP protocol by a static file server on
/// loopback.
struct GitRepositoryServer {
    let url: String
    let process: ManagedProcess

    init(harness: AgentHarness, content: (URL) throws -> Void) throws {
        let repositories = harness.scratch.file("repos-\(UUID().uuidString.prefix(8))")
        let repository = repositories.appendingPathComponent("work")
        try FileManager.default.createDirectory(at: repository, withIntermediateDirectories: true)
        let identity = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
        try runChecked("git", ["-C", repository.path, "init", "-q", "-b", "main"])
        try content(repository)
        try runChecked("git", ["-C", repository.path] + identity + ["add", "-A"])
        try runChecked("git", ["-C", repository.path] + identity + ["commit", "-q", "-m", "content"])
        let bare = repositories.appendingPathComponent("app.git")
        try runChecked("git", ["clone", "-q", "--bare", repository.path, bare.path])
        try runChecked("git", ["-C", bare.path, "update-server-info"])
        let port = try Loopback.freePort()
        process = try ManagedProcess(
            name: "git-http-\(port)", executable: "python3",
            arguments: ["-m", "http.server", "--bind", "127.0.0.1", "\(port)", "--directory", repositories.path],
            logDirectory: harness.scratch.url)
        try Loopback.waitUntilListening(port: port, process: process)
        url = "http://127.0.0.1:\(port)/app.git"
    }

    func stop() { process.stop() }
}
