import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldHTTP
import ManifoldTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `MANIFOLD_AGENT_BIN`, else the `manifold-agent` built next to this test bundle.
func manifoldAgentBinary() throws -> String {
    if let explicit = ProcessInfo.processInfo.environment["MANIFOLD_AGENT_BIN"] { return explicit }
    return URL(fileURLWithPath: try manifoldBinary()).deletingLastPathComponent().appendingPathComponent("manifold-agent")
        .path
}

/// A real registry, a real coordinator process and helpers to join and run real agent processes against them.
final class AgentHarness: @unchecked Sendable {
    // Safe: each test owns its harness and uses it from one task.
    let scratch: ScratchDirectory
    let registry: TestRegistry
    let port: Int
    let state: String
    let fingerprint: String
    let admin: String
    let joinToken: String
    var submitter = ""
    var coordinator: CoordinatorProcessTests.Running
    let environment: [String: String]
    private var coordinatorRuns = 0
    let platform = Platform(os: "linux", architecture: "amd64")

    /// `coordinatorEnvironment` adds coordinator settings (`MANIFOLD_*`) to every coordinator run.
    init(_ name: String, leaseTTLSeconds: Int = 8, coordinatorEnvironment: [String: String] = [:]) async throws {
        scratch = try ScratchDirectory(prefix: "agent-\(name)")
        registry = try TestRegistry.start(.http)
        port = try Loopback.freePort()
        state = scratch.file("coordinator").path
        (fingerprint, admin, joinToken) = try CoordinatorProcessTests.initialise(state: state, port: port)
        environment = [
            "MANIFOLD_INSECURE_REGISTRIES": registry.host, "MANIFOLD_HEARTBEAT_INTERVAL_SECONDS": "1",
            "MANIFOLD_LEASE_TTL_SECONDS": "\(leaseTTLSeconds)",
        ].merging(coordinatorEnvironment) { $1 }
        coordinatorRuns = 1
        coordinator = try CoordinatorProcessTests.serve(
            state: state, port: port, logDirectory: scratch.url, name: "coordinator-1", environment: environment)
        let created = try await CoordinatorProcessTests.call(
            coordinator, "POST", "/api/v1/tokens", token: admin, json: CreateTokenRequest(name: "ci", role: .submitter))
        submitter = try APICoding.decoder().decode(CreatedToken.self, from: created.body).secret
    }

    var baseURL: String { "https://127.0.0.1:\(port)" }
    var image: String { "\(registry.host)/e2e/app" }

    func stopCoordinator(signal: Int32 = SIGTERM) {
        kill(coordinator.process.processIdentifier, signal)
        coordinator.process.stop()
        coordinator.client.shutdown()
    }

    func startCoordinator() throws {
        coordinatorRuns += 1
        coordinator = try CoordinatorProcessTests.serve(
            state: state, port: port, logDirectory: scratch.url, name: "coordinator-\(coordinatorRuns)",
            environment: environment)
    }

    /// `manifold-agent join` into `scratch/NAME`; returns its state directory.
    @discardableResult
    func join(_ name: String, fingerprint: String? = nil) throws -> (status: Int32, stdout: String, stderr: String, state: String)
    {
        let agentState = scratch.file(name).path
        let result = try runCommand(
            try manifoldAgentBinary(),
            [
                "join", baseURL, "--token", joinToken, "--ca-fingerprint", fingerprint ?? self.fingerprint, "--state-dir",
                agentState, "--name", name, "--platform", platform.description,
            ])
        return (result.status, result.stdout, result.stderr, agentState)
    }

    /// Starts `manifold-agent run` with the command builder running `script` (a shell script written here).
    func startAgent(_ name: String, script: String, extra: [String] = [], runName: String? = nil) throws -> ManagedProcess {
        let scriptFile = scratch.file("\(name)-build.sh")
        try Data(script.utf8).write(to: scriptFile)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: scriptFile.path)
        return try ManagedProcess(
            name: runName ?? "agent-\(name)", executable: try manifoldAgentBinary(),
            arguments: [
                "run", "--state-dir", scratch.file(name).path, "--builder", "command", "--command", scriptFile.path,
                "--platform", platform.description, "--kill-grace", "2",
            ] + extra,
            environment: ["MANIFOLD_AGENT_LOG_LEVEL": "debug", "STORE": scratch.file("buildah-\(name)").path],
            logDirectory: scratch.url)
    }

    /// Packs `files` with GNU tar, uploads the context and submits a build for `platform`.
    func submit(
        files: [String: String], buildArgs: [String: String] = [:], secretBuildArgs: [String] = [],
        tags: [String] = ["1.0"], timeoutSeconds: Int = 300
    ) async throws -> BuildView {
        let contextDirectory = scratch.file("context-\(UUID().uuidString)")
        for (path, content) in files {
            let file = contextDirectory.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(content.utf8).write(to: file)
        }
        let archive = scratch.file("context-\(UUID().uuidString).tar.gz")
        try runChecked("tar", ["-czf", archive.path, "-C", contextDirectory.path, "."])
        return try await submitArchive(
            archive, buildArgs: buildArgs, secretBuildArgs: secretBuildArgs, tags: tags, timeoutSeconds: timeoutSeconds)
    }

    /// Uploads a packed context and submits a build of it.
    func submitArchive(
        _ archive: URL, buildArgs: [String: String] = [:], secretBuildArgs: [String] = [], tags: [String] = ["1.0"],
        timeoutSeconds: Int = 300
    ) async throws -> BuildView {
        let data = try Data(contentsOf: archive)
        let digest = Digest.compute(of: data)
        var upload = HTTPRequest(
            method: "PUT", url: URL(string: "\(baseURL)/api/v1/contexts/\(digest)")!, body: .bytes(data))
        upload.headers.add("Authorization", "Bearer \(submitter)")
        let uploaded = try await coordinator.client.execute(upload)
        guard uploaded.status == 201 || uploaded.status == 200 else {
            throw TestEnvironmentError("context upload answered \(uploaded.status)")
        }
        let spec = BuildSpec(
            image: image, tags: tags, platforms: [PlatformSpec(platform: platform)], context: .upload(digest: digest),
            buildArgs: buildArgs, secretBuildArgs: secretBuildArgs, timeoutSeconds: timeoutSeconds, maxAttempts: 1)
        let response = try await CoordinatorProcessTests.call(coordinator, "POST", "/api/v1/builds", token: submitter, json: spec)
        guard response.status == 201 || response.status == 200 else {
            throw TestEnvironmentError("submit answered \(response.status): \(String(decoding: response.body, as: UTF8.self))")
        }
        return try APICoding.decoder().decode(BuildView.self, from: response.body)
    }

    func build(_ id: String) async throws -> BuildView {
        let response = try await CoordinatorProcessTests.call(coordinator, "GET", "/api/v1/builds/\(id)", token: submitter)
        return try APICoding.decoder().decode(BuildView.self, from: response.body)
    }

    /// Polls the build until `done` holds (or `timeout` passes, returning the last view).
    func wait(
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

    func log(_ id: String) async throws -> String {
        let response = try await CoordinatorProcessTests.call(
            coordinator, "GET", "/api/v1/builds/\(id)/logs?platform=\(platform.description)", token: submitter)
        return String(decoding: response.body, as: UTF8.self)
    }

    func cancel(_ id: String) async throws {
        _ = try await CoordinatorProcessTests.call(coordinator, "POST", "/api/v1/builds/\(id)/cancel", token: submitter)
    }

    /// Waits up to `timeout` for `process` to exit.
    static func waitForExit(_ process: ManagedProcess, timeout: Duration = .seconds(30)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(100)) }
        return !process.isRunning
    }

    func tearDown() {
        stopCoordinator()
        registry.stop()
        scratch.remove()
    }

    /// A build script for the command builder: buildah (vfs + chroot) builds the context and pushes it, writing
    /// the registry's digest to MANIFOLD_DIGEST_FILE. `before` runs first.
    static func buildahScript(before: String = "") -> String {
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

    static let context = ["Dockerfile": "FROM scratch\nCOPY hello.txt /hello.txt\n", "hello.txt": "hello from manifold\n"]
}
