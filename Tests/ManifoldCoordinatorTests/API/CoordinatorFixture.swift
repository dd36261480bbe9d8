import Foundation
import Logging
import ManifoldAPI
import ManifoldCore
import ManifoldHTTP
import ManifoldTestSupport
import Synchronization

@testable import ManifoldCoordinator

/// A real coordinator (HTTPS on a loopback port, SQLite file in a scratch directory) running in this
/// process, and an HTTP client that trusts its CA.
final class CoordinatorFixture: Sendable {
    let scratch: ScratchDirectory
    let state: StateDirectory
    let initialisation: Coordinator.Initialisation
    let port: Int
    let client: HTTPClient
    private let task: Task<Void, any Error>

    static func start(
        registry: TestRegistry? = nil, joinTokenUses: Int = 1000, configure: (inout CoordinatorSettings) -> Void = { _ in }
    ) async throws
        -> CoordinatorFixture
    {
        let scratch = try ScratchDirectory(prefix: "coordinator")
        let state = StateDirectory(scratch.url.appendingPathComponent("state"))
        try state.create()
        var settings = CoordinatorSettings.defaults
        settings.listen = "127.0.0.1:0"
        settings.pollTimeoutSeconds = 20
        settings.allowedRegistries = [try RegistryPattern(parsing: "127.0.0.1"), try RegistryPattern(parsing: "localhost")]
        // Tests send many wrong tokens on purpose from one address; the limit has tests of its own.
        settings.authFailuresPerMinute = 100_000
        if let registry {
            switch registry.mode {
            case .http: settings.insecureRegistries = [registry.host]
            default: settings.registryCAs = [registry.host: registry.certificates!.caCertificate.path]
            }
        }
        configure(&settings)
        // Tests join many agents with the first join token; its default limits have a test of their own.
        let initialisation = try await Coordinator.initialise(
            state: state, settings: settings, hosts: [], joinTokenUses: joinTokenUses)
        if let username = registry?.username, let registry {
            _ = ManifoldRegistryDockerConfig.write(
                directory: state.dockerConfigDirectory, host: registry.host, username: username, password: registry.password ?? ""
            )
        }
        var logger = Logger(label: "test.coordinator")
        logger.logLevel = .critical
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let coordinator = Coordinator(state: state, settings: settings, logger: logger)
        let task = Task {
            defer { continuation.finish() }
            try await coordinator.run(gracefulShutdownSignals: []) { port in continuation.yield(port) }
        }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else {
            _ = try await task.value
            throw TestEnvironmentError("the coordinator stopped before listening")
        }
        let client = HTTPClient(configuration: HTTPClientConfiguration(tls: TLSConfiguration(caFile: state.caCertificate.path)))
        return CoordinatorFixture(
            scratch: scratch, state: state, initialisation: initialisation, port: port, client: client, task: task)
    }

    private init(
        scratch: ScratchDirectory, state: StateDirectory, initialisation: Coordinator.Initialisation, port: Int,
        client: HTTPClient,
        task: Task<Void, any Error>
    ) {
        self.scratch = scratch
        self.state = state
        self.initialisation = initialisation
        self.port = port
        self.client = client
        self.task = task
    }

    func stop() async {
        task.cancel()
        _ = try? await task.value
        client.shutdown()
        scratch.remove()
    }

    var baseURL: URL { URL(string: "https://127.0.0.1:\(port)")! }

    struct Reply {
        var status: Int
        var body: Data
        var headers: HTTPHeaders
        func decode<T: Decodable>(_ type: T.Type) throws -> T { try APICoding.decoder().decode(type, from: body) }
        var error: ErrorResponse.Detail? { (try? APICoding.decoder().decode(ErrorResponse.self, from: body))?.error }
    }

    @discardableResult
    func call(
        _ method: String, _ path: String, token: String?, json: (some Encodable)? = String?.none, body: Data? = nil,
        headers: HTTPHeaders = [:], timeout: Duration? = nil
    ) async throws -> Reply {
        var request = HTTPRequest(
            method: method, url: URL(string: path, relativeTo: baseURL)!.absoluteURL, headers: headers, timeout: timeout)
        if let token { request.headers.replaceOrAdd("Authorization", "Bearer \(token)") }
        if let json {
            request.body = .bytes(try APICoding.encoder().encode(json))
            request.headers.replaceOrAdd("Content-Type", "application/json")
        } else if let body {
            request.body = .bytes(body)
        }
        let response = try await client.execute(request)
        return Reply(status: response.status, body: response.body, headers: response.headers)
    }

    /// Creates a token of `role` with the admin token.
    func token(_ role: Role, name: String? = nil) async throws -> String {
        let reply = try await call(
            "POST", "/api/v1/tokens", token: initialisation.adminToken,
            json: CreateTokenRequest(name: name ?? "\(role.rawValue) token", role: role))
        guard reply.status == 201 else {
            throw TestEnvironmentError("creating a token failed: \(reply.status) \(String(decoding: reply.body, as: UTF8.self))")
        }
        return try reply.decode(CreatedToken.self).secret
    }

    /// Opens a streaming GET (event stream, log follow) and returns once the answer's head arrived.
    func openStream(_ path: String, token: String) async throws -> HTTPStreamingResponse {
        var request = HTTPRequest(
            method: "GET", url: URL(string: path, relativeTo: baseURL)!.absoluteURL, timeout: .seconds(120))
        request.headers.replaceOrAdd("Authorization", "Bearer \(token)")
        return try await client.stream(request)
    }

    /// Joins an agent and returns its credential.
    func joinAgent(
        _ name: String, platforms: [String], labels: [String: String] = [:], joinToken: String? = nil
    ) async throws -> (id: String, secret: String) {
        let reply = try await call(
            "POST", "/api/v1/agent/join", token: joinToken ?? initialisation.joinToken,
            json: JoinRequest(
                name: name, platforms: try platforms.map { try Platform(parsing: $0) }, labels: labels, builders: ["command"],
                version: "test"))
        guard reply.status == 201 else {
            throw TestEnvironmentError("join failed: \(reply.status) \(String(decoding: reply.body, as: UTF8.self))")
        }
        let joined = try reply.decode(JoinResponse.self)
        return (joined.agentId, joined.secret)
    }

    /// Polls like an agent; `confirm` sends the heartbeat a real agent sends as soon as it has a lease (an
    /// unconfirmed grant goes back to the queue after the acknowledge window).
    func poll(
        _ secret: String, platforms: [String], labels: [String: String] = [:], timeout: Duration = .seconds(40),
        confirm: Bool = true
    ) async throws -> Reply {
        let reply = try await call(
            "POST", "/api/v1/agent/poll", token: secret,
            json: PollRequest(
                platforms: try platforms.map { try Platform(parsing: $0) }, labels: labels, builders: ["command"],
                version: "test"),
            timeout: timeout)
        if confirm, reply.status == 200, let lease = try reply.decode(PollResponse.self).lease {
            _ = try await call(
                "POST", "/api/v1/agent/heartbeat", token: secret, json: HeartbeatRequest(jobId: lease.jobId, epoch: lease.epoch))
        }
        return reply
    }

    /// Uploads a small context and returns its digest.
    func uploadContext(_ token: String, content: String = "FROM scratch\n") async throws -> Digest {
        let data = Data(content.utf8)
        let digest = Digest.compute(of: data)
        let reply = try await call("PUT", "/api/v1/contexts/\(digest)", token: token, body: data)
        guard reply.status == 201 || reply.status == 200 else { throw TestEnvironmentError("upload failed: \(reply.status)") }
        return digest
    }

    func submit(
        _ token: String, image: String, platforms: [String], tags: [String] = ["1.0"], maxAttempts: Int? = nil
    ) async throws -> BuildView {
        let digest = try await uploadContext(token)
        let spec = BuildSpec(
            image: image, tags: tags, platforms: try platforms.map { PlatformSpec(platform: try Platform(parsing: $0)) },
            context: .upload(digest: digest), maxAttempts: maxAttempts)
        let reply = try await call("POST", "/api/v1/builds", token: token, json: spec)
        guard reply.status == 201 else {
            throw TestEnvironmentError("submit failed: \(reply.status) \(String(decoding: reply.body, as: UTF8.self))")
        }
        return try reply.decode(BuildView.self)
    }

    func build(_ id: String, token: String) async throws -> BuildView {
        try await call("GET", "/api/v1/builds/\(id)", token: token).decode(BuildView.self)
    }

    /// Polls the build until `condition` holds. Waits up to 120 s: far beyond what any build here needs on an idle machine (seconds), because the library
    /// phase runs hundreds of tests in one process on two cores and has been seen to stall every test for 20 s.
    func waitForBuild(_ id: String, token: String, until condition: (BuildView) -> Bool) async throws -> BuildView {
        let deadline = ContinuousClock.now + .seconds(120)
        while true {
            let build = try await build(id, token: token)
            if condition(build) { return build }
            guard ContinuousClock.now < deadline else {
                throw TestEnvironmentError("build \(id) stayed \(build.state): \(build)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }
}

/// Writes the coordinator's registry credentials the way `manifold registry login --state-dir` does.
enum ManifoldRegistryDockerConfig {
    static func write(directory: URL, host: String, username: String, password: String) -> URL {
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let file = directory.appendingPathComponent("config.json")
        let auth = Data("\(username):\(password)".utf8).base64EncodedString()
        try? Data(#"{"auths": {"\#(host)": {"auth": "\#(auth)"}}}"#.utf8).write(to: file)
        return file
    }
}
