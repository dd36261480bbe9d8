import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldHTTP
import ManifoldRegistry
import ManifoldTestSupport
import Testing

/// The coordinator as a real process: `manifold init` twice, `kill -9` in the middle of publishing, SIGTERM.
@Suite struct CoordinatorProcessTests {
    @Test func initRefusesAnExistingDirectoryAndChangesNothing() async throws {
        let scratch = try ScratchDirectory(prefix: "init-twice")
        defer { scratch.remove() }
        let state = scratch.file("state").path
        let first = try await manifold(["init", "--state-dir", state, "--listen", "127.0.0.1:7443"])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.contains("CA fingerprint"))
        let fingerprint = try #require(CoordinatorProcess.value(after: "CA fingerprint", in: first.stdout))
        #expect(fingerprint.hasPrefix("sha256:") && fingerprint.count == 71)
        let before = try FileManager.default.contentsOfDirectory(atPath: state).sorted()
        let database = try Data(contentsOf: scratch.file("state/manifold.db"))
        let second = try await manifold(["init", "--state-dir", state])
        #expect(second.status != 0)
        #expect(second.stderr.contains(state))
        #expect(try FileManager.default.contentsOfDirectory(atPath: state).sorted() == before)
        #expect(try Data(contentsOf: scratch.file("state/manifold.db")) == database)
    }

    @Test func killingTheCoordinatorDuringPublishingPublishesExactlyOnceAfterRestart() async throws {
        let scratch = try ScratchDirectory(prefix: "kill9")
        defer { scratch.remove() }
        let registry = try TestRegistry.start(.http)
        defer { registry.stop() }
        let proxy = try FaultProxy.start(backend: registry.baseURL)
        defer { proxy.stop() }
        let (port, state, initialised) = try Self.initialise(in: scratch)
        let admin = try #require(CoordinatorProcess.value(after: "Admin token", in: initialised.stdout))
        let join = try #require(CoordinatorProcess.value(after: "Agent join token", in: initialised.stdout))
        // The coordinator reaches the registry through the fault proxy, over plain HTTP. The test plays an agent that
        // sends no heartbeat while it pushes: a lease of 5 minutes outlasts the slowest push seen in a starved CI phase
        // (one took more than the default 60 s, and the report was refused as coming from a lost lease).
        let environment = ["MANIFOLD_INSECURE_REGISTRIES": proxy.host, "MANIFOLD_LEASE_TTL_SECONDS": "300"]
        var running = try CoordinatorProcess.serve(
            state: state, port: port, logDirectory: scratch.url, name: "coordinator-1", environment: environment)
        let created = try await CoordinatorProcess.call(
            running, "POST", "/api/v1/tokens", token: admin, json: CreateTokenRequest(name: "ci", role: .submitter))
        let submitter = try APICoding.decoder().decode(CreatedToken.self, from: created.body).secret
        let joined = try await CoordinatorProcess.call(
            running, "POST", "/api/v1/agent/join", token: join,
            json: JoinRequest(
                name: "builder", platforms: [Platform(os: "linux", architecture: "amd64")], labels: [:], builders: ["command"],
                version: "test"))
        let agent = try APICoding.decoder().decode(JoinResponse.self, from: joined.body).secret

        // Upload a context, submit, take the job, push the image, report it.
        let context = Data("FROM scratch\n".utf8)
        let contextDigest = Digest.compute(of: context)
        var upload = HTTPRequest(
            method: "PUT", url: running.base.appendingPathComponent("api/v1/contexts/\(contextDigest)"), body: .bytes(context))
        upload.headers.add("Authorization", "Bearer \(submitter)")
        #expect(try await running.client.execute(upload).status == 201)
        let spec = BuildSpec(
            image: "\(proxy.host)/crash/app", tags: ["1.0", "latest"],
            platforms: [PlatformSpec(platform: Platform(os: "linux", architecture: "amd64"))],
            context: .upload(digest: contextDigest))
        let build = try APICoding.decoder().decode(
            BuildView.self,
            from: try await CoordinatorProcess.call(running, "POST", "/api/v1/builds", token: submitter, json: spec).body)
        let polled = try await CoordinatorProcess.call(
            running, "POST", "/api/v1/agent/poll", token: agent,
            json: PollRequest(
                platforms: [Platform(os: "linux", architecture: "amd64")], labels: [:], builders: ["command"], version: "test"))
        let lease = try #require(try APICoding.decoder().decode(PollResponse.self, from: polled.body).lease)
        // Confirmed at once, as the real agent does; an unconfirmed grant goes back to the queue.
        let confirmed = try await CoordinatorProcess.call(
            running, "POST", "/api/v1/agent/heartbeat", token: agent,
            json: HeartbeatRequest(jobId: lease.jobId, epoch: lease.epoch))
        #expect(confirmed.status == 200)
        let image = try TestImage.make(os: "linux", architecture: "amd64", format: .oci, layerText: "crash test")
        var configuration = RegistryConfiguration(certsDirectories: [], credentials: StaticCredentials())
        configuration.plainHTTPHosts = [registry.host]
        let pool = RegistryClientPool(configuration: configuration)
        defer { pool.shutdown() }
        let registryClient = try pool.client(for: registry.host)
        for blob in [image.config] + image.layers {
            try await registryClient.uploadBlob(
                repository: "crash/app", digest: try Digest(parsing: blob.digest), data: blob.bytes)
        }
        let manifest = try RawManifest(bytes: image.manifest, mediaType: image.manifestMediaType)
        try await registryClient.pushManifest(repository: "crash/app", reference: lease.spec.tag, manifest: manifest)

        // Hold the list's push in the proxy, so the coordinator is in the middle of publishing when it dies.
        // (20 s: long enough that a test process whose pool is starved still sees the build publishing.)
        try proxy.setRules([FaultRule(method: "PUT", pathRegex: #"/manifests/(1\.0|latest)$"#, delay: 20)])
        let completed = try await CoordinatorProcess.call(
            running, "POST", "/api/v1/agent/complete", token: agent,
            json: CompleteRequest(
                jobId: lease.jobId, epoch: lease.epoch, outcome: .succeeded,
                imageReference: "\(proxy.host)/crash/app:\(lease.spec.tag)",
                digest: manifest.digest))
        #expect(completed.status == 200)
        var publishing = false
        for _ in 0..<2400 {
            let view = try APICoding.decoder().decode(
                BuildView.self,
                from: try await CoordinatorProcess.call(running, "GET", "/api/v1/builds/\(build.id)", token: submitter).body)
            if view.state == .publishing { publishing = true; break }
            try await Task.sleep(for: .milliseconds(25))
        }
        #expect(publishing)
        try await Task.sleep(for: .milliseconds(700))
        kill(running.process.processIdentifier, SIGKILL)
        running.process.stop()
        running.client.shutdown()
        try proxy.clearRules()

        running = try CoordinatorProcess.serve(
            state: state, port: port, logDirectory: scratch.url, name: "coordinator-2", environment: environment)
        defer {
            running.process.stop()
            running.client.shutdown()
        }
        var final: BuildView? = nil
        for _ in 0..<400 {
            let view = try APICoding.decoder().decode(
                BuildView.self,
                from: try await CoordinatorProcess.call(running, "GET", "/api/v1/builds/\(build.id)", token: submitter).body)
            if view.state.isFinal { final = view; break }
            try await Task.sleep(for: .milliseconds(50))
        }
        let published = try #require(final)
        #expect(published.state == .published, "\(published)")
        let listDigest = try #require(published.listDigest)
        let stored = try await registryClient.fetchManifest(repository: "crash/app", reference: "latest")
        #expect(stored.digest == listDigest)
        let events = try await CoordinatorProcess.call(running, "GET", "/api/v1/builds/\(build.id)/events", token: submitter)
        let text = String(decoding: events.body, as: UTF8.self)
        #expect(text.components(separatedBy: "event: list.published").count - 1 == 1, "\(text)")
    }

    @Test func sigtermEndsHeldPollsAndExitsCleanly() async throws {
        let scratch = try ScratchDirectory(prefix: "sigterm")
        defer { scratch.remove() }
        let (port, state, initialised) = try Self.initialise(in: scratch)
        let join = try #require(CoordinatorProcess.value(after: "Agent join token", in: initialised.stdout))
        // Polls are held for a minute here (the most allowed). The coordinator's minute starts when the poll arrives,
        // which is after `started`, so any answer less than a minute after `started` can only be the shutdown
        // releasing it. No tighter bound: on a loaded CI machine the signal and the answer have taken 56 s.
        let running = try CoordinatorProcess.serve(
            state: state, port: port, logDirectory: scratch.url, name: "coordinator",
            environment: ["MANIFOLD_POLL_TIMEOUT_SECONDS": "60"])
        defer { running.client.shutdown() }
        let joined = try await CoordinatorProcess.call(
            running, "POST", "/api/v1/agent/join", token: join,
            json: JoinRequest(
                name: "idle", platforms: [Platform(os: "linux", architecture: "amd64")], labels: [:], builders: [],
                version: "test"))
        let agent = try APICoding.decoder().decode(JoinResponse.self, from: joined.body).secret
        let started = ContinuousClock.now
        async let held = CoordinatorProcess.call(
            running, "POST", "/api/v1/agent/poll", token: agent,
            json: PollRequest(
                platforms: [Platform(os: "linux", architecture: "amd64")], labels: [:], builders: [], version: "test"))
        try await Task.sleep(for: .seconds(2))
        kill(running.process.processIdentifier, SIGTERM)
        let reply = try await held
        // The held poll is answered (no job) instead of being cut, well before its one-minute window.
        #expect(reply.status == 200)
        #expect(try APICoding.decoder().decode(PollResponse.self, from: reply.body).lease == nil)
        #expect(ContinuousClock.now - started < .seconds(60))
        for _ in 0..<1200 where running.process.isRunning { try await Task.sleep(for: .milliseconds(50)) }
        #expect(!running.process.isRunning)
        #expect(running.process.terminationStatus == 0, "\(running.process.output())")
    }

    @Test func sigtermLetsAnUploadInFlightFinish() async throws {
        let scratch = try ScratchDirectory(prefix: "sigterm-upload")
        defer { scratch.remove() }
        let (port, state, initialised) = try Self.initialise(in: scratch)
        let admin = try #require(CoordinatorProcess.value(after: "Admin token", in: initialised.stdout))
        let running = try CoordinatorProcess.serve(state: state, port: port, logDirectory: scratch.url, name: "coordinator")
        defer { running.client.shutdown() }
        // A 2 MiB context sent at 48 KiB/s: over forty seconds on the wire, so even a test process whose sleeps a
        // loaded machine stretches signals the coordinator while the upload is in flight.
        var generator = SystemRandomNumberGenerator()
        let body = Data((0..<(2 << 20)).map { _ in UInt8.random(in: 0...255, using: &generator) })
        let file = scratch.file("context.tar.gz")
        try body.write(to: file)
        let digest = Digest.compute(of: body)
        let upload = try ManagedProcess(
            name: "curl-upload", executable: try ManagedProcess.resolve("curl"),
            arguments: [
                "--silent", "--show-error", "--cacert", "\(state)/pki/ca.crt", "--limit-rate", "48k", "-H", "Expect:",
                "--upload-file", file.path,
                "-H", "Authorization: Bearer \(admin)", "-H", "Content-Type: application/gzip", "--write-out", "%{http_code}",
                "--output", scratch.file("answer.json").path, "https://127.0.0.1:\(port)/api/v1/contexts/\(digest)",
            ], logDirectory: scratch.url)
        // Two seconds into the upload, the request is in flight.
        try await Task.sleep(for: .seconds(2))
        try #require(upload.isRunning, "the upload ended before the signal: \(upload.output())")
        kill(running.process.processIdentifier, SIGTERM)
        for _ in 0..<1_800 where upload.isRunning { try await Task.sleep(for: .milliseconds(50)) }
        #expect(!upload.isRunning)
        // The upload in flight was finished and acknowledged, and what was acknowledged was kept.
        #expect(upload.terminationStatus == 0, "\(upload.output())")
        #expect(upload.output().contains("201"), "\(upload.output())")
        for _ in 0..<200 where running.process.isRunning { try await Task.sleep(for: .milliseconds(50)) }
        #expect(!running.process.isRunning)
        #expect(running.process.terminationStatus == 0, "\(running.process.output())")
        let stored = try Data(contentsOf: URL(fileURLWithPath: "\(state)/contexts/sha256-\(digest.hex).tar.gz"))
        #expect(stored == body)
    }

    /// `manifold init` into `scratch`'s `state` directory, listening on a free loopback port, allowing registries on
    /// 127.0.0.1; fails the test (naming the error) when init fails.
    static func initialise(
        in scratch: ScratchDirectory
    ) throws -> (port: Int, state: String, output: (status: Int32, stdout: String, stderr: String)) {
        let port = try Loopback.freePort()
        let state = scratch.file("state").path
        let initialised = try manifold([
            "init", "--state-dir", state, "--listen", "127.0.0.1:\(port)", "--allow-registry", "127.0.0.1",
        ])
        #expect(initialised.status == 0, "\(initialised.stderr)")
        return (port, state, initialised)
    }

}
