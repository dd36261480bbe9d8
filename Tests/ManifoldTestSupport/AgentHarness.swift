import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldHTTP

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A real registry, a real coordinator process and helpers to join and run real agent processes against them.
///
/// ```swift
/// let harness = try await AgentHarness("publish")
/// defer { harness.tearDown() }
/// try harness.join("builder")
/// let agent = try harness.startAgent("builder", script: AgentHarness.buildahScript())
/// let build = try await harness.submit(files: AgentHarness.context)
/// let final = try await harness.wait(build.id)
/// ```
public final class AgentHarness: @unchecked Sendable {
    // Safe: each test owns its harness and uses it from one task.
    public let scratch: ScratchDirectory
    public let registry: TestRegistry
    public let port: Int
    public let state: String
    public let fingerprint: String
    public let admin: String
    public let joinToken: String
    public var submitter = ""
    public var coordinator: CoordinatorProcess.Running
    public let environment: [String: String]
    private var coordinatorRuns = 0
    /// The platforms agents offer and builds ask for unless told otherwise; the first is ``platform``.
    public let platforms: [Platform]
    /// The registry host in submitted image references: the registry's, or a proxy's in front of it.
    public var registryHost: String
    /// With replicas: the `manifold serve` processes on one PostgreSQL database, their ports, and the HAProxy in
    /// front of them at ``port``.
    public private(set) var replicas: [CoordinatorProcess.Running] = []
    public private(set) var replicaPorts: [Int] = []
    public private(set) var proxy: TestHAProxy?
    /// The PostgreSQL URL (with its own schema) the replicas share.
    public private(set) var databaseURL: String?
    private var replicaRuns: [Int] = []

    /// Starts `registry` (a new plain-HTTP one by default) and a coordinator whose state is in `stateDirectory`
    /// (default: in the scratch directory), with `environment` added to its settings.
    ///
    /// With `replicas` > 0 the coordinator is that many `manifold serve` processes on one PostgreSQL database (a
    /// schema of its own on the test server), sharing one state directory, behind HAProxy at ``port``. Without
    /// `replicas`, as many as `MANIFOLD_TEST_REPLICAS` says (see ``replicasFromEnvironment()``), else one coordinator on
    /// SQLite; `replicas: 0` always asks for the SQLite coordinator.
    public init(
        _ name: String, leaseTTLSeconds: Int = 8, registry: TestRegistry? = nil, environment: [String: String] = [:],
        stateDirectory: String? = nil, platforms: [Platform] = [Platform(os: "linux", architecture: "amd64")],
        replicas: Int? = nil
    ) async throws {
        let replicas = try replicas ?? Self.replicasFromEnvironment()
        scratch = try ScratchDirectory(prefix: "agent-\(name)")
        self.registry = try registry ?? TestRegistry.start(.http)
        self.platforms = platforms
        registryHost = self.registry.host
        state = stateDirectory ?? scratch.file("coordinator").path
        var settings = [
            "MANIFOLD_INSECURE_REGISTRIES": self.registry.host, "MANIFOLD_HEARTBEAT_INTERVAL_SECONDS": "1",
            "MANIFOLD_LEASE_TTL_SECONDS": "\(leaseTTLSeconds)",
        ].merging(environment) { $1 }
        guard replicas > 0 else {
            port = try Loopback.freePort()
            (fingerprint, admin, joinToken) = try CoordinatorProcess.initialise(state: state, port: port)
            self.environment = settings
            coordinatorRuns = 1
            coordinator = try CoordinatorProcess.serve(
                state: state, port: port, logDirectory: scratch.url, name: "coordinator-1", environment: settings)
            try await createSubmitter()
            return
        }
        let server = try await TestPostgres.shared
        let schema = server.uniqueSchemaName()
        _ = try await onOwnThread { try server.psql("CREATE SCHEMA \(schema)") }
        let url = server.url + (server.url.contains("?") ? "&" : "?") + "search_path=\(schema)"
        databaseURL = url
        if let password = server.password { settings["MANIFOLD_DATABASE_PASSWORD"] = password }
        self.environment = settings
        replicaPorts = try (0..<replicas).map { _ in try Loopback.freePort() }
        let proxy = try TestHAProxy.start(backends: replicaPorts, logDirectory: scratch.url)
        self.proxy = proxy
        port = proxy.port
        (fingerprint, admin, joinToken) = try CoordinatorProcess.initialise(
            state: state, port: port, environment: settings, arguments: ["--database", url])
        replicaRuns = Array(repeating: 1, count: replicas)
        let (state, ports, scratch) = (state, replicaPorts, scratch)
        let started = try (0..<replicas).map { index in
            try Self.serveReplica(index, run: 1, state: state, port: ports[index], scratch: scratch, environment: settings)
        }
        self.replicas = started
        // Clients reach the replicas through the proxy; `process` is the first replica's, for its log.
        coordinator = CoordinatorProcess.Running(
            process: started[0].process,
            client: HTTPClient(configuration: HTTPClientConfiguration(tls: TLSConfiguration(caFile: "\(state)/pki/ca.crt"))),
            base: URL(string: "https://127.0.0.1:\(proxy.port)")!)
        try await waitUntilTheProxyServes()
        try await createSubmitter()
    }

    /// The number of replicas a harness starts when its test does not say: `MANIFOLD_TEST_REPLICAS` (0 or unset: one
    /// coordinator on SQLite). CI's replicated chaos phase sets it to run the chaos scenarios against three replicas.
    public static func replicasFromEnvironment() throws -> Int {
        guard let text = ProcessInfo.processInfo.environment["MANIFOLD_TEST_REPLICAS"], !text.isEmpty else { return 0 }
        guard let count = Int(text), (0...9).contains(count) else {
            throw TestEnvironmentError(
                "MANIFOLD_TEST_REPLICAS is '\(text)'; it must be a number of replicas from 0 (one SQLite coordinator) to 9")
        }
        return count
    }

    /// Whether harnesses that do not ask for replicas start replicas in this test process (`MANIFOLD_TEST_REPLICAS`
    /// above 0), for a test's `.disabled(if:)` trait. A malformed value counts as no: the harness then throws its error.
    public static var replicatedByEnvironment: Bool { ((try? replicasFromEnvironment()) ?? 0) > 0 }

    /// Whether this harness's coordinator is replicas on PostgreSQL behind HAProxy.
    public var isReplicated: Bool { !replicas.isEmpty }

    private func createSubmitter() async throws {
        let created = try await CoordinatorProcess.call(
            coordinator, "POST", "/api/v1/tokens", token: admin, json: CreateTokenRequest(name: "ci", role: .submitter))
        submitter = try APICoding.decoder().decode(CreatedToken.self, from: created.body).secret
    }

    /// HAProxy marked the replicas down while they were starting and takes one health check to mark each up
    /// again; until then it closes connections. Waits until as many requests in a row as there are replicas (round
    /// robin: one per replica) are answered through it.
    public func waitUntilTheProxyServes(timeout: Duration = .seconds(20)) async throws {
        let deadline = ContinuousClock.now + timeout
        var answered = 0
        while answered < replicas.count {
            guard ContinuousClock.now < deadline else {
                throw TestEnvironmentError("HAProxy at \(baseURL) does not reach the replicas:\n\(replicaLogs().suffix(4_000))")
            }
            let request = HTTPRequest(url: URL(string: "\(baseURL)/healthz")!)
            if let response = try? await coordinator.client.execute(request), response.status == 200 {
                answered += 1
            } else {
                answered = 0
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    private static func serveReplica(
        _ index: Int, run: Int, state: String, port: Int, scratch: ScratchDirectory, environment: [String: String]
    ) throws -> CoordinatorProcess.Running {
        try CoordinatorProcess.serve(
            state: state, port: port, logDirectory: scratch.url, name: "replica-\(index + 1)-\(run)",
            environment: environment, arguments: ["--listen", "127.0.0.1:\(port)"])
    }

    /// Sends `signal` to replica `index` and waits for it to end.
    public func stopReplica(_ index: Int, signal: Int32 = SIGKILL) {
        kill(replicas[index].process.processIdentifier, signal)
        replicas[index].process.stop()
        replicas[index].client.shutdown()
    }

    /// Starts replica `index` again on its port.
    public func startReplica(_ index: Int) throws {
        replicaRuns[index] += 1
        replicas[index] = try Self.serveReplica(
            index, run: replicaRuns[index], state: state, port: replicaPorts[index], scratch: scratch,
            environment: environment)
    }

    /// The output of every run of every replica so far.
    public func replicaLogs() -> String {
        replicaRuns.enumerated().flatMap { index, runs in
            (0..<runs).map { run in
                let file = scratch.file("replica-\(index + 1)-\(run + 1).log")
                return "== replica-\(index + 1)-\(run + 1) ==\n" + ((try? String(contentsOf: file, encoding: .utf8)) ?? "")
            }
        }.joined(separator: "\n")
    }

    /// Runs `sql` on the replicas' database (its schema first on the search path) and returns psql's unaligned
    /// rows.
    public func query(_ sql: String) async throws -> [String] {
        guard let databaseURL else { throw TestEnvironmentError("this harness has no replicas") }
        let server = try await TestPostgres.shared
        return try await onOwnThread { try server.psql(sql, url: databaseURL) }
    }

    public var platform: Platform { platforms[0] }
    public var baseURL: String { "https://127.0.0.1:\(port)" }
    public var image: String { "\(registryHost)/e2e/app" }

    /// Sends `signal` to the coordinator and waits for it to end (SIGKILL after five seconds). With replicas: to every
    /// replica (a full outage; ``stopReplica(_:signal:)`` stops one).
    public func stopCoordinator(signal: Int32 = SIGTERM) {
        guard replicas.isEmpty else {
            for index in replicas.indices { stopReplica(index, signal: signal) }
            return
        }
        kill(coordinator.process.processIdentifier, signal)
        coordinator.process.stop()
        coordinator.client.shutdown()
    }

    /// Starts the coordinator again on the same port and state directory; its log is `coordinator-N.log`. With
    /// replicas: every replica again, each on its port.
    public func startCoordinator() throws {
        guard replicas.isEmpty else {
            for index in replicas.indices { try startReplica(index) }
            return
        }
        coordinatorRuns += 1
        coordinator = try CoordinatorProcess.serve(
            state: state, port: port, logDirectory: scratch.url, name: "coordinator-\(coordinatorRuns)",
            environment: environment)
    }

    /// The replica sending the most bytes on one connection right now, by `ss` (TCP sockets established on its
    /// port): the one serving a long download. Throws when no replica has sent `atLeast` bytes on one connection.
    public func replicaSendingTheMost(atLeast minimum: Int) throws -> Int {
        var best: (replica: Int, bytes: Int)?
        for (index, replicaPort) in replicaPorts.enumerated() {
            let sockets = try runChecked("ss", ["-tinH", "state", "established", "( sport = :\(replicaPort) )"])
            for match in sockets.matches(of: #/bytes_sent:(\d+)/#) {
                let bytes = Int(match.1) ?? 0
                if bytes > (best?.bytes ?? -1) { best = (index, bytes) }
            }
        }
        guard let best, best.bytes >= minimum else {
            throw TestEnvironmentError(
                "no replica has sent \(minimum) bytes on one connection (most: \(best.map { "\($0.bytes) by replica \($0.replica + 1)" } ?? "none"))"
            )
        }
        return best.replica
    }

    /// The output of every coordinator run so far, oldest first (with replicas: of every replica's runs).
    public func coordinatorLogs() -> String {
        guard replicas.isEmpty else { return replicaLogs() }
        return (1...max(coordinatorRuns, 1)).map { run in
            let file = scratch.file("coordinator-\(run).log")
            return "== coordinator-\(run) ==\n" + ((try? String(contentsOf: file, encoding: .utf8)) ?? "")
        }.joined(separator: "\n")
    }

    /// `manifold-agent join` into `scratch/NAME` through `url` (default the coordinator's own address); returns
    /// its state directory.
    @discardableResult
    public func join(
        _ name: String, fingerprint: String? = nil, url: String? = nil, platforms: [Platform]? = nil
    ) throws -> (status: Int32, stdout: String, stderr: String, state: String) {
        let agentState = scratch.file(name).path
        let offered = (platforms ?? [platform]).flatMap { ["--platform", $0.description] }
        let result = try runCommand(
            try manifoldAgentBinary(),
            [
                "join", url ?? baseURL, "--token", joinToken, "--ca-fingerprint", fingerprint ?? self.fingerprint,
                "--state-dir", agentState, "--name", name,
            ] + offered)
        return (result.status, result.stdout, result.stderr, agentState)
    }

    /// Starts `manifold-agent run` with the command builder running `script` (a shell script written here).
    public func startAgent(
        _ name: String, script: String, extra: [String] = [], runName: String? = nil, platforms: [Platform]? = nil
    ) throws -> ManagedProcess {
        let scriptFile = scratch.file("\(name)-build.sh")
        try Data(script.utf8).write(to: scriptFile)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: scriptFile.path)
        let offered = (platforms ?? [platform]).flatMap { ["--platform", $0.description] }
        return try ManagedProcess(
            name: runName ?? "agent-\(name)", executable: try manifoldAgentBinary(),
            arguments: [
                "run", "--state-dir", scratch.file(name).path, "--builder", "command", "--command", scriptFile.path,
                "--kill-grace", "2",
            ] + offered + extra,
            environment: ["MANIFOLD_AGENT_LOG_LEVEL": "debug", "STORE": scratch.file("buildah-\(name)").path],
            logDirectory: scratch.url)
    }

    /// Packs `files` with GNU tar, uploads the context and submits a build for `platforms` (default ``platform``).
    public func submit(
        files: [String: String], buildArgs: [String: String] = [:], secretBuildArgs: [String] = [],
        secrets: [String: String] = [:], tags: [String] = ["1.0"], timeoutSeconds: Int = 300, platforms: [Platform]? = nil,
        maxAttempts: Int = 1
    ) async throws -> BuildView {
        let contextDirectory = scratch.file("context-\(UUID().uuidString)")
        for (path, content) in files {
            let file = contextDirectory.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(content.utf8).write(to: file)
        }
        let archive = scratch.file("context-\(UUID().uuidString).tar.gz")
        try await runChecked("tar", ["-czf", archive.path, "-C", contextDirectory.path, "."])
        return try await submitArchive(
            archive, buildArgs: buildArgs, secretBuildArgs: secretBuildArgs, secrets: secrets, tags: tags,
            timeoutSeconds: timeoutSeconds, platforms: platforms, maxAttempts: maxAttempts)
    }

    /// Uploads a packed context and submits a build of it.
    public func submitArchive(
        _ archive: URL, buildArgs: [String: String] = [:], secretBuildArgs: [String] = [], secrets: [String: String] = [:],
        tags: [String] = ["1.0"], timeoutSeconds: Int = 300, platforms: [Platform]? = nil, maxAttempts: Int = 1
    ) async throws -> BuildView {
        let digest = try await uploadContext(archive)
        let spec = BuildSpec(
            image: image, tags: tags, platforms: (platforms ?? [platform]).map { PlatformSpec(platform: $0) },
            context: .upload(digest: digest), buildArgs: buildArgs, secrets: secrets, secretBuildArgs: secretBuildArgs,
            timeoutSeconds: timeoutSeconds, maxAttempts: maxAttempts)
        let response = try await CoordinatorProcess.call(coordinator, "POST", "/api/v1/builds", token: submitter, json: spec)
        guard response.status == 201 || response.status == 200 else {
            throw TestEnvironmentError("submit answered \(response.status): \(String(decoding: response.body, as: UTF8.self))")
        }
        return try APICoding.decoder().decode(BuildView.self, from: response.body)
    }

    /// Uploads a packed context; returns its digest.
    public func uploadContext(_ archive: URL) async throws -> Digest {
        let data = try Data(contentsOf: archive)
        let digest = Digest.compute(of: data)
        var upload = HTTPRequest(
            method: "PUT", url: URL(string: "\(baseURL)/api/v1/contexts/\(digest)")!, body: .bytes(data))
        upload.headers.add("Authorization", "Bearer \(submitter)")
        let uploaded = try await coordinator.client.execute(upload)
        guard uploaded.status == 201 || uploaded.status == 200 else {
            throw TestEnvironmentError("context upload answered \(uploaded.status)")
        }
        return digest
    }

    public func build(_ id: String) async throws -> BuildView {
        let response = try await CoordinatorProcess.call(coordinator, "GET", "/api/v1/builds/\(id)", token: submitter)
        guard response.status == 200 else {
            throw TestEnvironmentError(
                "GET build \(id) answered \(response.status): \(String(decoding: response.body, as: UTF8.self))")
        }
        return try APICoding.decoder().decode(BuildView.self, from: response.body)
    }

    /// Polls the build until `done` holds (or `timeout` passes, returning the last view).
    public func wait(
        _ id: String, timeout: Duration = .seconds(60), until done: (BuildView) -> Bool = { $0.state.isFinal }
    ) async throws -> BuildView {
        let deadline = ContinuousClock.now + timeout
        var last = try await build(id)
        while !done(last) && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(200))
            if let view = try? await build(id) { last = view }
        }
        return last
    }

    /// The stored log of `platform` (default ``platform``), of `attempt` (default the latest).
    public func log(_ id: String, platform: Platform? = nil, attempt: Int? = nil) async throws -> String {
        let attemptQuery = attempt.map { "&attempt=\($0)" } ?? ""
        let response = try await CoordinatorProcess.call(
            coordinator, "GET", "/api/v1/builds/\(id)/logs?platform=\((platform ?? self.platform).description)\(attemptQuery)",
            token: submitter)
        return String(decoding: response.body, as: UTF8.self)
    }

    /// The build's events, read from its event stream (which ends once the build is final: call it then).
    public func events(_ id: String) async throws -> [BuildEvent] {
        let response = try await CoordinatorProcess.call(coordinator, "GET", "/api/v1/builds/\(id)/events", token: submitter)
        let decoder = APICoding.decoder()
        return String(decoding: response.body, as: UTF8.self).split(separator: "\n").compactMap { line in
            guard line.hasPrefix("data: ") else { return nil }
            return try? decoder.decode(BuildEvent.self, from: Data(line.dropFirst(6).utf8))
        }
    }

    public func cancel(_ id: String) async throws {
        _ = try await CoordinatorProcess.call(coordinator, "POST", "/api/v1/builds/\(id)/cancel", token: submitter)
    }

    /// Waits up to `timeout` for `process` to exit.
    public static func waitForExit(_ process: ManagedProcess, timeout: Duration = .seconds(30)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(100)) }
        return !process.isRunning
    }

    public func tearDown() {
        if replicas.isEmpty {
            stopCoordinator()
        } else {
            for index in replicas.indices { stopReplica(index, signal: SIGTERM) }
            proxy?.stop()
        }
        registry.stop()
        scratch.remove()
    }

    /// A build script for the command builder: buildah (vfs + chroot) builds the context and pushes it, writing
    /// the registry's digest to MANIFOLD_DIGEST_FILE. `before` runs first.
    public static func buildahScript(before: String = "") -> String {
        """
        #!/bin/sh
        set -e
        \(before)
        B="buildah --root $STORE/root --runroot $STORE/run --storage-driver vfs"
        $B bud --isolation chroot --platform "$MANIFOLD_PLATFORM" -f "$MANIFOLD_DOCKERFILE" \\
            -t "$MANIFOLD_IMAGE_REFERENCE" "$MANIFOLD_CONTEXT_DIR"
        $B push --tls-verify=false --digestfile "$MANIFOLD_DIGEST_FILE" "$MANIFOLD_IMAGE_REFERENCE" \\
            "docker://$MANIFOLD_IMAGE_REFERENCE"
        """
    }

    public static let context = ["Dockerfile": "FROM scratch\nCOPY hello.txt /hello.txt\n", "hello.txt": "hello from manifold\n"]
}
