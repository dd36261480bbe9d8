import Foundation
import ManifoldAPI
import ManifoldClient
import ManifoldCore
import ManifoldHTTP
import ManifoldRegistry
import ManifoldTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A real registry and a real coordinator process (short leases and polls), with the `manifold` CLI run against it
/// as a user would: `manifold init` stored the admin context in this harness's own XDG_CONFIG_HOME.
final class BuildCLIHarness: Sendable {
    let scratch: ScratchDirectory
    let registry: TestRegistry
    let port: Int
    let state: String
    let fingerprint: String
    let admin: String
    let joinToken: String
    let coordinator: Mutex<ManagedProcess>
    let coordinatorEnvironment: [String: String]
    let registries: RegistryClientPool

    init(_ name: String) async throws {
        scratch = try ScratchDirectory(prefix: "build-\(name)")
        registry = try TestRegistry.start(.http)
        port = try Loopback.freePort()
        state = scratch.file("coordinator").path
        let configHome = scratch.file("config").path
        (fingerprint, admin, joinToken) = try CoordinatorProcess.initialise(
            state: state, port: port, environment: ["XDG_CONFIG_HOME": configHome])
        coordinatorEnvironment = [
            "MANIFOLD_INSECURE_REGISTRIES": registry.host, "MANIFOLD_HEARTBEAT_INTERVAL_SECONDS": "1",
            "MANIFOLD_LEASE_TTL_SECONDS": "60", "MANIFOLD_POLL_TIMEOUT_SECONDS": "2", "MANIFOLD_RETRY_BACKOFF_SECONDS": "1",
        ]
        let process = try ManagedProcess(
            name: "coordinator-1", executable: try manifoldBinary(), arguments: ["serve", "--state-dir", state],
            environment: coordinatorEnvironment, logDirectory: scratch.url)
        try Loopback.waitUntilListening(port: port, process: process)
        coordinator = Mutex(process)
        var configuration = RegistryConfiguration(certsDirectories: [], credentials: StaticCredentials())
        configuration.plainHTTPHosts = [registry.host]
        registries = RegistryClientPool(configuration: configuration)
    }

    deinit {
        coordinator.withLock { $0.stop() }
        registry.stop()
        registries.shutdown()
        scratch.remove()
    }

    /// Stops the coordinator (SIGTERM), waits `pause`, and starts it again on the same port and state.
    func restartCoordinator(pause: Duration) async throws {
        coordinator.withLock { $0.stop() }
        try await Task.sleep(for: pause)
        let process = try ManagedProcess(
            name: "coordinator-2", executable: try manifoldBinary(), arguments: ["serve", "--state-dir", state],
            environment: coordinatorEnvironment, logDirectory: scratch.url)
        try Loopback.waitUntilListening(port: port, process: process)
        coordinator.withLock { $0 = process }
    }

    var url: String { "https://127.0.0.1:\(port)" }
    var image: String { "\(registry.host)/e2e/app" }
    var caFile: String { "\(state)/pki/ca.crt" }

    /// The CLI's environment: this harness's config home (with init's admin context) and an empty docker config.
    var environment: [String: String] {
        ["XDG_CONFIG_HOME": scratch.file("config").path, "DOCKER_CONFIG": scratch.file("docker").path]
    }

    /// Runs `manifold ARGS` to its end, off the cooperative pool.
    func cli(
        _ arguments: [String], environment extra: [String: String] = [:], input: String? = nil
    ) async throws -> (status: Int32, stdout: String, stderr: String) {
        let environment = self.environment.merging(extra) { $1 }
        return try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(with: Result { try manifold(arguments, input: input, environment: environment) })
            }
        }
    }

    /// Starts `manifold ARGS` in the background; its stdout and stderr go to `scratch/NAME.log`.
    func start(_ arguments: [String], name: String) throws -> ManagedProcess {
        try ManagedProcess(
            name: name, executable: try manifoldBinary(), arguments: arguments, environment: environment,
            logDirectory: scratch.url)
    }

    /// A client with the admin token, for checks the CLI does not make.
    func client(token: String? = nil) -> CoordinatorClient {
        CoordinatorClient(baseURL: URL(string: url)!, token: token ?? admin, tls: TLSConfiguration(caFile: caFile))
    }

    /// Writes `files` into `scratch/NAME` and returns the directory.
    func directory(_ name: String, _ files: [String: String]) throws -> URL {
        let root = scratch.file(name)
        for (path, content) in files {
            let file = root.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(content.utf8).write(to: file)
        }
        return root
    }

    /// The manifest under `reference` in the test repository, or nil when there is none.
    func manifest(_ reference: String) async throws -> RawManifest? {
        do {
            return try await registries.client(for: registry.host).fetchManifest(repository: "e2e/app", reference: reference)
        } catch {
            return nil
        }
    }

    /// The child digests of the list under `reference`.
    func children(_ reference: String) async throws -> [String] {
        guard let list = try await manifest(reference) else { return [] }
        let document = try JSONSerialization.jsonObject(with: list.bytes) as? [String: Any]
        return (document?["manifests"] as? [[String: Any]] ?? []).compactMap { $0["digest"] as? String }
    }
}

/// Waits until `process` ends; returns its exit status (or fails the test after `timeout`).
func exitStatus(of process: ManagedProcess, timeout: Duration = .seconds(60)) async throws -> Int32 {
    let deadline = ContinuousClock.now + timeout
    while process.isRunning {
        guard ContinuousClock.now < deadline else {
            process.stop()
            throw TestEnvironmentError("\(process.name) did not finish in time:\n\(process.output())")
        }
        try await Task.sleep(for: .milliseconds(100))
    }
    return process.terminationStatus
}

/// Waits until `process`'s output contains `text`.
func waitForOutput(_ process: ManagedProcess, containing text: String, timeout: Duration = .seconds(30)) async throws {
    let deadline = ContinuousClock.now + timeout
    while !process.output().contains(text) {
        guard ContinuousClock.now < deadline, process.isRunning || process.output().contains(text) else {
            throw TestEnvironmentError("\(process.name) never printed \"\(text)\":\n\(process.output())")
        }
        try await Task.sleep(for: .milliseconds(100))
    }
}

/// An agent played by the test through the real agent protocol: it takes jobs, reports phases and log lines, pushes
/// a real image to the registry and reports its digest, so the coordinator verifies and publishes a real list.
final class ScriptedAgent: Sendable {
    let name: String
    let platform: Platform
    let client: CoordinatorClient
    let harness: BuildCLIHarness
    /// Keeps each held lease alive, as the real agent's heartbeat loop does, so a slow test step on a busy machine
    /// never loses a lease the test still means to use. By job id; ended once the job is reported.
    private let keepAlive = Mutex<[String: Task<Void, Never>]>([:])

    init(_ name: String, platform: Platform, harness: BuildCLIHarness) async throws {
        self.name = name
        self.platform = platform
        self.harness = harness
        let joining = CoordinatorClient(
            baseURL: URL(string: harness.url)!, token: harness.joinToken, tls: TLSConfiguration(caFile: harness.caFile))
        let joined = try await joining.join(
            JoinRequest(name: name, platforms: [platform], labels: ["pool": "e2e"], builders: ["scripted"], version: "test"))
        client = CoordinatorClient(
            baseURL: URL(string: harness.url)!, token: joined.secret, tls: TLSConfiguration(caFile: harness.caFile))
    }

    /// Polls until a job is leased.
    func take(timeout: Duration = .seconds(30)) async throws -> Lease {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let answer = try await client.poll(
                PollRequest(platforms: [platform], labels: ["pool": "e2e"], builders: ["scripted"], version: "test"))
            if let lease = answer.lease {
                // Confirmed at once, as the real agent does; an unconfirmed grant goes back to the queue.
                _ = try await client.heartbeat(HeartbeatRequest(jobId: lease.jobId, epoch: lease.epoch, phase: "fetching"))
                keepAlive(lease)
                return lease
            }
        }
        throw TestEnvironmentError("agent \(name) got no job")
    }

    deinit {
        keepAlive.withLock { tasks in tasks.values.forEach { $0.cancel() } }
    }

    /// Heartbeats every few seconds until the job is reported (errors are ignored: a test that restarts the
    /// coordinator meanwhile sees them answered again after the restart).
    private func keepAlive(_ lease: Lease) {
        let client = client
        let task = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(5))
                if Task.isCancelled { return }
                _ = try? await client.heartbeat(HeartbeatRequest(jobId: lease.jobId, epoch: lease.epoch))
            }
        }
        keepAlive.withLock { tasks in
            tasks[lease.jobId]?.cancel()
            tasks[lease.jobId] = task
        }
    }

    private func reported(_ lease: Lease) {
        keepAlive.withLock { tasks in tasks.removeValue(forKey: lease.jobId)?.cancel() }
    }

    /// Builds "successfully": phases, log lines, a real image pushed under the job's tag; returns its digest.
    @discardableResult
    func succeed(_ lease: Lease, layer: String, logLines: [String] = []) async throws -> Digest {
        _ = try await client.heartbeat(HeartbeatRequest(jobId: lease.jobId, epoch: lease.epoch, phase: "building"))
        if !logLines.isEmpty {
            let text = logLines.joined(separator: "\n") + "\n"
            _ = try await client.appendLog(jobId: lease.jobId, epoch: lease.epoch, offset: 0, data: Data(text.utf8))
        }
        _ = try await client.heartbeat(HeartbeatRequest(jobId: lease.jobId, epoch: lease.epoch, phase: "pushing"))
        let image = try TestImage.make(
            os: platform.os, architecture: platform.architecture, variant: platform.variant,
            osVersion: platform.osVersion.map { $0 + ".1000" }, format: .oci, layerText: layer)
        let registry = try harness.registries.client(for: harness.registry.host)
        for blob in [image.config] + image.layers {
            try await registry.uploadBlob(repository: "e2e/app", digest: try Digest(parsing: blob.digest), data: blob.bytes)
        }
        let manifest = try RawManifest(bytes: image.manifest, mediaType: image.manifestMediaType)
        try await registry.pushManifest(repository: "e2e/app", reference: lease.spec.tag, manifest: manifest)
        _ = try await client.complete(
            CompleteRequest(
                jobId: lease.jobId, epoch: lease.epoch, outcome: .succeeded,
                imageReference: "\(lease.spec.image):\(lease.spec.tag)", digest: manifest.digest))
        reported(lease)
        return manifest.digest
    }

    func fail(_ lease: Lease, reason: String) async throws {
        _ = try await client.heartbeat(HeartbeatRequest(jobId: lease.jobId, epoch: lease.epoch, phase: "building"))
        _ = try await client.appendLog(
            jobId: lease.jobId, epoch: lease.epoch, offset: 0, data: Data("error: \(reason)\n".utf8))
        _ = try await client.complete(
            CompleteRequest(jobId: lease.jobId, epoch: lease.epoch, outcome: .failed, exitCode: 1, reason: reason))
        reported(lease)
    }
}
