import Foundation
import ManifoldAPI
import ManifoldClient
import ManifoldCore
import ManifoldTestSupport
import Testing

/// The user's journey through the `manifold` CLI against a real coordinator process and a real registry; the agents
/// are played by the test through the real agent protocol (they push real images).
@Suite struct BuildJourneyTests {
    static let linux = Platform(os: "linux", architecture: "amd64")
    static let windows = Platform(os: "windows", architecture: "amd64", osVersion: "10.0.20348")

    /// How many times the coordinator answered a read of one build (`GET /api/v1/builds/{id}`), from its `/metrics`;
    /// scraped again for up to a second, since a request is counted once its answer is written.
    static func buildReads(_ harness: BuildCLIHarness) async throws -> Double {
        let route = ["route": "/api/v1/builds/{id}", "method": "GET", "status": "200"]
        var reads = 0.0
        for _ in 0..<5 {
            let reply = try await harness.client().send("GET", "/metrics")
            reads =
                try PrometheusExposition(parsing: String(decoding: reply.body, as: UTF8.self)).value(
                    "manifold_http_requests_total", route) ?? 0
            if reads >= 2 { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        return reads
    }

    /// Lines of `text` with the build id replaced by `BUILD`, without the lines that vary between runs.
    static func snapshot(_ text: String, buildId: String) -> [String] {
        text.replacingOccurrences(of: buildId, with: "BUILD").split(separator: "\n").map(String.init)
    }

    @Test func submitAContextWatchItPublishedThenRetryOnePlatform() async throws {
        let harness = try await BuildCLIHarness("journey")
        let linuxAgent = try await ScriptedAgent("lin-1", platform: Self.linux, harness: harness)
        let windowsAgent = try await ScriptedAgent("win-1", platform: Self.windows, harness: harness)
        let context = try harness.directory(
            "app",
            [
                "Dockerfile": "FROM scratch\nCOPY app.txt /\n", "Dockerfile.windows": "FROM scratch\nCOPY app.txt /\n",
                "app.txt": "hello\n", "secret.env": "do not ship me", "logs/a.log": "x",
                ".dockerignore": "*.env\nlogs\nDockerfile*\n",
            ])
        let submit = try harness.start(
            [
                "build", "submit", harness.image, "--tag", "1.0", "--tag", "latest", "--platform", "linux/amd64", "--platform",
                "windows/amd64:10.0.20348", "--context", context.path, "--file", "windows/amd64:10.0.20348=Dockerfile.windows",
                "--build-arg", "VERSION=1.0", "--secret-build-arg", "TOKEN=hunter2", "--label", "team=e2e", "--watch",
            ], name: "submit-watch")

        // Each agent gets its platform's job with the settings the CLI sent.
        let linuxLease = try await linuxAgent.take()
        let windowsLease = try await windowsAgent.take()
        #expect(linuxLease.spec.dockerfile == "Dockerfile")
        #expect(windowsLease.spec.dockerfile == "Dockerfile.windows")
        // A secret build arg reaches the agent as a build secret, not as a build arg.
        #expect(linuxLease.spec.buildArgs == ["VERSION": "1.0"])
        #expect(linuxLease.spec.secrets == ["TOKEN": "hunter2"])
        #expect(linuxLease.spec.secretBuildArgs.isEmpty)
        #expect(linuxLease.spec.labels == ["team": "e2e"])
        // The context holds what .dockerignore lets through, plus the Dockerfiles it excludes.
        guard case .upload(let contextDigest) = linuxLease.spec.context else {
            Issue.record("not an uploaded context: \(linuxLease.spec.context)")
            return
        }
        let downloaded = harness.scratch.file("downloaded.tar.gz")
        do {
            try await linuxAgent.client.downloadContext(contextDigest, to: downloaded)
        } catch {
            // Seen once in CI (403: the job was no longer leased to the agent): say what the coordinator thought.
            let view = try? await harness.client().build(id: linuxLease.spec.buildId)
            Issue.record("the agent could not download its leased context: \(error); the build: \(String(describing: view))")
            throw error
        }
        let listing = try await runChecked("tar", ["-tzf", downloaded.path]).split(separator: "\n").sorted()
        #expect(listing == [".dockerignore", "Dockerfile", "Dockerfile.windows", "app.txt"])

        let linuxDigest = try await linuxAgent.succeed(linuxLease, layer: "linux v1", logLines: ["STEP 1/2: FROM scratch"])
        let windowsDigest = try await windowsAgent.succeed(windowsLease, layer: "windows v1", logLines: ["windows step"])
        #expect(try await exitStatus(of: submit) == 0, "\(submit.output())")
        // The plain watch read the build when it started, after the events that came while a platform was queued
        // (here at most the submission, the linux assignment and its first phase: the windows lease was taken right
        // after), and once its stream ended: not after each of the build's 15 events other than log lines.
        let reads = try await Self.buildReads(harness)
        #expect(reads >= 2 && reads <= 5, "\(reads) reads of the build; the watch printed:\n\(submit.output())")
        let build = try #require(try await harness.client().builds(limit: 1).builds.first)
        #expect(build.state == .published)
        let listDigest = try #require(build.listDigest)

        // The plain watch: one line per event, and the published list at the end.
        let watched = Self.snapshot(submit.output(), buildId: build.id)
        let expectedInOrder = [
            "Submitted build BUILD: \(harness.image) for linux/amd64, windows/amd64:10.0.20348 → 1.0, latest",
            "build BUILD submitted: \(harness.image) for linux/amd64, windows/amd64:10.0.20348 → tags 1.0, latest",
            "[linux/amd64] assigned to lin-1 (attempt 1 of 3)", "[linux/amd64] building", "[linux/amd64] pushing",
            "[linux/amd64] verifying \(linuxDigest) in the registry", "[linux/amd64] done: \(linuxDigest)",
            "[windows/amd64:10.0.20348] done: \(windowsDigest)", "publishing the list (2 of 2 platforms)",
            "published \(listDigest) to 1.0, latest",
        ]
        var position = watched.startIndex
        for line in expectedInOrder {
            guard let found = watched[position...].firstIndex(of: line) else {
                Issue.record("missing or out of order: \(line)\n\(watched.joined(separator: "\n"))")
                break
            }
            position = found + 1
        }
        #expect(watched.contains { $0.hasPrefix("context sha256:") && $0.hasSuffix("; uploaded") }, "\(watched)")
        #expect(!submit.output().contains("hunter2"))

        // Every tag points at the list, whose children are the reported images.
        #expect(try await harness.manifest("1.0")?.digest == listDigest)
        #expect(try await harness.manifest("latest")?.digest == listDigest)
        #expect(Set(try await harness.children("latest")) == [linuxDigest.description, windowsDigest.description])

        // On a terminal the watch is a table redrawn in place (here: already final, so it draws and exits).
        let replay = try await harness.cli(["build", "watch", build.id])
        #expect(replay.status == 0, "\(replay.stderr)")
        #expect(replay.stdout.hasSuffix("published \(listDigest) to 1.0, latest\n"), "\(replay.stdout)")
        let pty = try await runCommand(
            "script", ["-qec", "\(try manifoldBinary()) build watch \(build.id)", "/dev/null"], environment: harness.environment)
        #expect(pty.status == 0, "\(pty.stdout)")
        #expect(pty.stdout.contains("\u{1B}[2K"), "\(pty.stdout)")
        #expect(pty.stdout.contains("PLATFORM                  STATE  AGENT  ELAPSED  ATTEMPT  DIGEST"), "\(pty.stdout)")
        #expect(pty.stdout.contains("list: published \(listDigest) to 1.0, latest"), "\(pty.stdout)")

        // build show and build logs.
        let show = try await harness.cli(["build", "show", build.id])
        #expect(show.status == 0, "\(show.stderr)")
        #expect(show.stdout.contains("State      published"))
        #expect(show.stdout.contains("List       \(listDigest)"))
        #expect(show.stdout.contains(windowsDigest.description))
        #expect(show.stdout.contains("windows/amd64:10.0.20348  done   1/3       win-1"), "\(show.stdout)")
        let logs = try await harness.cli(["build", "logs", build.id, "--platform", "linux/amd64"])
        #expect(logs.status == 0, "\(logs.stderr)")
        #expect(logs.stdout == "STEP 1/2: FROM scratch\n")

        // Paging.
        let page = try await harness.cli(["build", "list", "--limit", "1"])
        #expect(page.stdout.contains(build.id), "\(page.stdout)")
        #expect(page.stderr.contains("More: manifold build list --before \(build.id)"), "\(page.stderr)")

        // The same context again is not uploaded again.
        let again = try await harness.cli([
            "build", "submit", harness.image, "-t", "again", "-p", "linux/amd64", "-p", "windows/amd64:10.0.20348",
            "--file", "windows/amd64:10.0.20348=Dockerfile.windows", "--context", context.path, "--output", "json",
        ])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.stderr.contains("the coordinator already has it"), "\(again.stderr)")
        let againBuild = try APICoding.decoder().decode(BuildView.self, from: Data(again.stdout.utf8))
        _ = try await harness.cli(["build", "cancel", againBuild.id])

        // Retry the linux platform: a new image, and the list is re-published with the new child. The published
        // build's secrets were erased, so the retry gives them again.
        let refused = try await harness.cli(["build", "retry", build.id, "--platform", "linux/amd64"])
        #expect(refused.status != 0 && refused.stderr.contains("TOKEN"), "\(refused.stderr)")
        let retry = try harness.start(
            [
                "build", "retry", build.id, "--platform", "linux/amd64", "--secret", "TOKEN=hunter3", "--watch", "--output",
                "json",
            ], name: "retry-watch")
        let retried = try await linuxAgent.take()
        #expect(retried.attempt == 2)
        #expect(retried.spec.secrets == ["TOKEN": "hunter3"])
        let newLinuxDigest = try await linuxAgent.succeed(retried, layer: "linux v2")
        #expect(try await exitStatus(of: retry) == 0, "\(retry.output())")
        let events = retry.output().split(separator: "\n").dropFirst().compactMap {
            try? APICoding.decoder().decode(BuildEvent.self, from: Data($0.utf8))
        }
        let republished = try #require(events.last { $0.type == "list.published" })
        let newList = try #require(republished.data["digest"])
        #expect(newList != listDigest.description)
        #expect(try await harness.manifest("latest")?.digest.description == newList)
        #expect(Set(try await harness.children("1.0")) == [newLinuxDigest.description, windowsDigest.description])
        // The first attempt's log is still there.
        let firstLog = try await harness.cli(["build", "logs", build.id, "--platform", "linux/amd64", "--attempt", "1"])
        #expect(firstLog.stdout == "STEP 1/2: FROM scratch\n")
    }

    @Test func aBuildFileAWaitingPlatformAFailureAndAPartialList() async throws {
        let harness = try await BuildCLIHarness("buildfile")
        let linuxAgent = try await ScriptedAgent("lin-1", platform: Self.linux, harness: harness)
        let windowsAgent = try await ScriptedAgent("win-1", platform: Self.windows, harness: harness)
        let context = try harness.directory(
            "app",
            [
                "Dockerfile": "FROM scratch\n", "Dockerfile.windows": "FROM scratch\n",
                "manifold.yaml": """
                # the build, kept with the code
                image: \(harness.image)
                tags: [file]
                max_attempts: 1
                platforms:
                  - linux/amd64
                  - platform: windows/amd64:10.0.20348
                    dockerfile: Dockerfile.windows
                    build_args: {FLAVOUR: servercore}
                  - linux/s390x
                """,
            ])

        // A platform no agent offers: the watch says which kind of host it waits for.
        let submitted = try await harness.cli(["build", "submit", "--context", context.path, "--quiet"])
        #expect(submitted.status == 0, "\(submitted.stderr)")
        let id = submitted.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let watch = try harness.start(["build", "watch", id], name: "watch-waiting")
        try await waitForOutput(
            watch,
            containing: "[linux/s390x] waiting for a linux/s390x host: no agent offers it "
                + "(agents offer linux/amd64, windows/amd64:10.0.20348)")
        let windowsLease = try await windowsAgent.take()
        #expect(windowsLease.spec.dockerfile == "Dockerfile.windows")
        #expect(windowsLease.spec.buildArgs == ["FLAVOUR": "servercore"])
        try await linuxAgent.succeed(try await linuxAgent.take(), layer: "file linux")
        try await windowsAgent.succeed(windowsLease, layer: "file windows")
        let cancel = try await harness.cli(["build", "cancel", id])
        #expect(cancel.status == 0, "\(cancel.stderr)")
        #expect(try await exitStatus(of: watch) == 1, "\(watch.output())")
        #expect(watch.output().contains("build cancelled by initial admin"), "\(watch.output())")
        #expect(try await harness.manifest("file") == nil)

        // A platform that fails: exit 1 and no list.
        let failing = try harness.start(
            ["build", "submit", "--context", context.path, "-p", "linux/amd64", "-p", "windows/amd64:10.0.20348", "--watch"],
            name: "watch-failing")
        try await linuxAgent.succeed(try await linuxAgent.take(), layer: "fail linux")
        try await windowsAgent.fail(try await windowsAgent.take(), reason: "exit code 1: compiler error")
        #expect(try await exitStatus(of: failing) == 1, "\(failing.output())")
        #expect(failing.output().contains("[windows/amd64:10.0.20348] failed after 1 attempt: exit code 1: compiler error"))
        #expect(failing.output().contains("build failed: 1 of 2 platform(s) failed; no list was published"))
        #expect(try await harness.manifest("file") == nil)

        // The same with --allow-partial publishes the platforms that worked, and exits 0.
        let partial = try harness.start(
            [
                "build", "submit", "--context", context.path, "-p", "linux/amd64", "-p", "windows/amd64:10.0.20348", "--watch",
                "--allow-partial", "--tag", "partial",
            ], name: "watch-partial")
        let linuxDigest = try await linuxAgent.succeed(try await linuxAgent.take(), layer: "partial linux")
        try await windowsAgent.fail(try await windowsAgent.take(), reason: "out of disk")
        #expect(try await exitStatus(of: partial) == 0, "\(partial.output())")
        #expect(partial.output().contains("partially published sha256:"), "\(partial.output())")
        #expect(try await harness.children("partial") == [linuxDigest.description])

        // A broken build file is reported with its line, column and key, before anything is sent (exit 2).
        try "image: \(harness.image)\ntags: [x]\nplatforms:\n  - platform: linux/amd64\n    dockerfle: D\n".write(
            to: context.appendingPathComponent("manifold.yaml"), atomically: true, encoding: .utf8)
        let broken = try await harness.cli(["build", "submit", "--context", context.path])
        #expect(broken.status == 2)
        #expect(broken.stderr.contains("manifold.yaml:5:5: platforms[0].dockerfle: unknown key"), "\(broken.stderr)")
    }

    @Test func loginPinsTheCoordinatorCA() async throws {
        let harness = try await BuildCLIHarness("login")
        let configHome = harness.scratch.file("user-config")
        let environment = ["XDG_CONFIG_HOME": configHome.path]
        let viewer = try await harness.client().createToken(name: "dashboards", role: .viewer).secret

        let wrong = "sha256:" + String(repeating: "0", count: 64)
        let refused = try await harness.cli(
            ["login", harness.url, "--token", viewer, "--ca-fingerprint", wrong], environment: environment)
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("refusing to trust it"), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: configHome.appendingPathComponent("manifold/contexts.json").path))

        let badToken = try await harness.cli(
            ["login", harness.url, "--token", "mfd_nope", "--ca-fingerprint", harness.fingerprint], environment: environment)
        #expect(badToken.status == 1)
        #expect(badToken.stderr.contains("rejected the token"), "\(badToken.stderr)")

        let login = try await harness.cli(
            ["login", harness.url, "--token", viewer, "--ca-fingerprint", harness.fingerprint, "--context", "ci"],
            environment: environment)
        #expect(login.status == 0, "\(login.stderr)")
        let directory = configHome.appendingPathComponent("manifold")
        func permissions(_ url: URL) throws -> Int? {
            try FileManager.default.attributesOfItem(atPath: url.path)[.posixPermissions] as? Int
        }
        #expect(try permissions(directory) == 0o700)
        #expect(try permissions(directory.appendingPathComponent("contexts.json")) == 0o600)
        #expect(try permissions(directory.appendingPathComponent("ci.ca.crt")) == 0o600)
        let list = try await harness.cli(["build", "list"], environment: environment)
        #expect(list.status == 0, "\(list.stderr)")
        #expect(list.stdout.contains("No builds."))
        let contexts = try await harness.cli(["context", "list"], environment: environment)
        #expect(contexts.stdout.contains("*  ci    \(harness.url)"), "\(contexts.stdout)")

        // A viewer may read but not submit; the coordinator's refusal is one sentence.
        let submit = try await harness.cli(
            ["build", "submit", harness.image, "-t", "x", "-p", "linux/amd64", "--git", "https://git.example.com/a.git#main"],
            environment: environment)
        #expect(submit.status == 1)
        #expect(submit.stderr.hasPrefix("error: "), "\(submit.stderr)")
        #expect(submit.stderr.split(separator: "\n").count == 1, "\(submit.stderr)")
        #expect(submit.stderr.contains("(HTTP 403)"), "\(submit.stderr)")

        // The environment overrides any stored context.
        let fromEnvironment = try await harness.cli(
            ["agent", "list"],
            environment: [
                "XDG_CONFIG_HOME": harness.scratch.file("empty-config").path, "MANIFOLD_COORDINATOR": harness.url,
                "MANIFOLD_TOKEN": viewer, "MANIFOLD_CA_FILE": harness.caFile,
            ])
        #expect(fromEnvironment.status == 0, "\(fromEnvironment.stderr)")
        let nothing = try await harness.cli(
            ["build", "list"], environment: ["XDG_CONFIG_HOME": harness.scratch.file("empty-config").path])
        #expect(nothing.status == 1)
        #expect(nothing.stderr.contains("manifold login"), "\(nothing.stderr)")

        // init never replaces a context silently.
        let second = try await harness.cli(
            ["init", "--state-dir", harness.scratch.file("second").path, "--listen", "127.0.0.1:1"], environment: environment)
        #expect(second.status == 0, "\(second.stderr)")
        #expect(second.stdout.contains("Admin context \"default\""), "\(second.stdout)")
        let third = try await harness.cli(
            ["init", "--state-dir", harness.scratch.file("third").path, "--listen", "127.0.0.1:2"], environment: environment)
        #expect(third.stdout.contains("A context named \"default\" already exists"), "\(third.stdout)")
        let stored = try String(contentsOf: directory.appendingPathComponent("contexts.json"), encoding: .utf8)
        #expect(stored.contains("127.0.0.1:1\"") && !stored.contains("127.0.0.1:2\""))
    }

    @Test func agentAndTokenCommands() async throws {
        let harness = try await BuildCLIHarness("admin")
        _ = try await ScriptedAgent("win-1", platform: Self.windows, harness: harness)

        let agents = try await harness.cli(["agent", "list"])
        #expect(agents.status == 0, "\(agents.stderr)")
        let rows = agents.stdout.split(separator: "\n")
        #expect(
            rows.first?.hasPrefix("NAME   POOL     PLATFORMS                 BUILDERS  LABELS    STATE   JOB  LAST SEEN") == true,
            "\(agents.stdout)")
        #expect(
            rows.last?.hasPrefix("win-1  default  windows/amd64:10.0.20348  scripted  pool=e2e  active  -") == true,
            "\(agents.stdout)")
        for (command, state) in [("drain", "draining"), ("disable", "disabled"), ("enable", "active")] {
            let result = try await harness.cli(["agent", command, "win-1"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.hasPrefix("Agent win-1 is \(state)"), "\(result.stdout)")
        }
        let json = try await harness.cli(["agent", "list", "--output", "json"])
        let decoded = try APICoding.decoder().decode([AgentView].self, from: Data(json.stdout.utf8))
        #expect(decoded.map(\.state) == [.active])
        let unknown = try await harness.cli(["agent", "drain", "nobody"])
        #expect(unknown.status == 1)
        #expect(unknown.stderr.hasPrefix("error: ") && unknown.stderr.contains("(HTTP 404)"), "\(unknown.stderr)")

        let created = try await harness.cli(["token", "create", "--role", "submitter", "--name", "ci", "--output", "json"])
        #expect(created.status == 0, "\(created.stderr)")
        let token = try APICoding.decoder().decode(CreatedToken.self, from: Data(created.stdout.utf8))
        #expect(token.token.role == .submitter)
        let tokens = try await harness.cli(["token", "list"])
        #expect(tokens.stdout.contains("\(token.token.id)  ci"), "\(tokens.stdout)")
        #expect(!tokens.stdout.contains(token.secret))
        let revoke = try await harness.cli(["token", "revoke", token.token.id])
        #expect(revoke.status == 0, "\(revoke.stderr)")
        let afterRevoke = try await harness.cli(["build", "list"], environment: ["MANIFOLD_TOKEN": token.secret])
        #expect(afterRevoke.status == 1)
        #expect(afterRevoke.stderr.contains("(HTTP 401)"), "\(afterRevoke.stderr)")
    }

    /// Pools and scoped tokens through the real CLI against a real coordinator process: a pool with its join
    /// token, a scoped submitter refused outside its repositories, and a pool that cannot go while in use.
    @Test func poolAndScopedTokenCommands() async throws {
        let harness = try await BuildCLIHarness("pools")
        let pool = try await harness.cli([
            "pool", "create", "release", "--label", "pool=release", "--platform", "linux/amd64", "--platform", "linux/arm64",
        ])
        #expect(pool.status == 0, "\(pool.stderr)")
        #expect(pool.stdout.contains("Created pool release: labels pool=release, platforms linux/amd64,linux/arm64"))
        let join = try await harness.cli([
            "token", "create", "--role", "join", "--pool", "release", "--expires", "1h", "--uses", "1", "--output", "json",
        ])
        #expect(join.status == 0, "\(join.stderr)")
        let joinToken = try APICoding.decoder().decode(CreatedToken.self, from: Data(join.stdout.utf8))
        #expect(joinToken.token.pool == "release" && joinToken.token.usesLeft == 1)
        #expect(abs((joinToken.token.expiresAt ?? .distantPast).timeIntervalSinceNow - 3_600) < 120)
        let scoped = try await harness.cli([
            "token", "create", "--role", "submitter", "--name", "team", "--repository", "\(harness.registry.host)/team/*",
            "--output", "json",
        ])
        #expect(scoped.status == 0, "\(scoped.stderr)")
        let team = try APICoding.decoder().decode(CreatedToken.self, from: Data(scoped.stdout.utf8))
        let tokens = try await harness.cli(["token", "list"])
        #expect(tokens.stdout.contains("pool release"), "\(tokens.stdout)")
        #expect(tokens.stdout.contains("\(harness.registry.host)/team/*"), "\(tokens.stdout)")
        let pools = try await harness.cli(["pool", "list"])
        #expect(pools.stdout.contains("release  pool=release  linux/amd64,linux/arm64  0       1"), "\(pools.stdout)")

        // The scoped submitter cannot build into e2e/app.
        let context = try harness.directory("app", ["Dockerfile": "FROM scratch\n"])
        let outside = try await harness.cli(
            ["build", "submit", harness.image, "-t", "1.0", "-p", "linux/amd64", "--context", context.path, "--quiet"],
            environment: ["MANIFOLD_TOKEN": team.secret])
        #expect(outside.status == 1)
        #expect(outside.stderr.contains("\(harness.registry.host)/team/*"), "\(outside.stderr)")
        #expect(outside.stderr.contains("HTTP 403)"), "\(outside.stderr)")

        let inUse = try await harness.cli(["pool", "remove", "release"])
        #expect(inUse.status == 1)
        #expect(inUse.stderr.contains(joinToken.token.id), "\(inUse.stderr)")
        #expect(try await harness.cli(["token", "revoke", joinToken.token.id]).status == 0)
        let removed = try await harness.cli(["pool", "remove", "release"])
        #expect(removed.status == 0, "\(removed.stderr)")
    }

    @Test(arguments: [
        (["build", "submit", "r.local/app", "-p", "linux/amd64"], "--tag"),
        (["build", "submit", "r.local/app", "-t", "x", "-p", "linux/amd64", "--file", "linux/arm64=D"], "linux/arm64"),
        (["build", "logs", "b1"], "--platform"),
        (["build", "logs", "b1", "--platform", "linux"], "os/arch"),
        (["build", "list", "--state", "done"], "published"),
        (["token", "create", "--role", "root"], "root"),
        (["token", "create", "--role", "join", "--expires", "5x"], "duration"),
        (["token", "create", "--role", "viewer", "--repository", "no-path"], "REGISTRY/PATH"),
        (["pool", "create", "x", "--label", "novalue"], "key=value"),
        (["pool", "create", "x", "--platform", "linux"], "os/arch"),
        (["login", "https://127.0.0.1:1", "--token", "t", "--ca-fingerprint", "sha256:12"], "64 hex digits"),
    ])
    func usageErrorsExitTwo(_ arguments: [String], _ mention: String) throws {
        let result = try manifold(arguments)
        #expect(result.status == 2, "\(arguments): \(result.stderr)")
        #expect(result.stderr.contains(mention), "\(arguments): \(result.stderr)")
    }

    @Test(arguments: [
        ["build", "submit"], ["build", "watch"], ["build", "logs"], ["build", "list"], ["build", "show"], ["build", "cancel"],
        ["build", "retry"], ["agent", "list"], ["agent", "drain"], ["token", "create"], ["token", "revoke"], ["login"],
        ["pool", "create"], ["pool", "list"], ["pool", "remove"],
    ])
    func everyCommandHasHelpWithExamples(_ arguments: [String]) throws {
        let result = try manifold(arguments + ["--help"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("Example"), "\(arguments)")
    }

    @Test func theWatchResumesAfterTheCoordinatorRestarts() async throws {
        let harness = try await BuildCLIHarness("reconnect")
        let agent = try await ScriptedAgent("lin-1", platform: Self.linux, harness: harness)
        let context = try harness.directory("app", ["Dockerfile": "FROM scratch\n"])
        let submitted = try await harness.cli([
            "build", "submit", harness.image, "-t", "1.0", "-p", "linux/amd64", "--context", context.path, "--quiet",
        ])
        let id = submitted.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let watch = try harness.start(["build", "watch", id], name: "watch-reconnect")
        let lease = try await agent.take()
        try await waitForOutput(watch, containing: "[linux/amd64] assigned to lin-1")
        try await harness.restartCoordinator(pause: .seconds(2))
        let digest = try await agent.succeed(lease, layer: "after restart", logLines: ["built while the watch was away"])
        #expect(try await exitStatus(of: watch) == 0, "\(watch.output())")
        let output = watch.output()
        #expect(output.contains("reconnecting"), "\(output)")
        #expect(output.contains("[linux/amd64] done: \(digest)"), "\(output)")
        // Resumed after the last event: nothing is shown twice.
        #expect(output.components(separatedBy: "assigned to lin-1").count == 2, "\(output)")
        #expect(output.components(separatedBy: "build \(id) submitted").count == 2, "\(output)")
        #expect(output.contains("published sha256:"), "\(output)")
    }
}
