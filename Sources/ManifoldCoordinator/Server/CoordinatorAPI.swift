import Crypto
import Foundation
import Hummingbird
import Logging
import ManifoldAPI
import ManifoldCore
import ManifoldStore
import Synchronization

/// The `/api/v1` routes. Handlers are thin: they check the caller's role, decode, call the store, and wake
/// whoever waits for the change.
public struct CoordinatorAPI: Sendable {
    public struct Options: Sendable {
        public var leaseTTLSeconds: Int
        public var heartbeatIntervalSeconds: Int
        public var pollTimeout: Duration
        public var maxContextBytes: Int64
        public var maxRequestBodyBytes: Int
        public var contextsDirectory: URL
        public var caCertificatePEM: String?
        /// Registries builds may name (`allowed_registries`); empty allows none.
        public var allowedRegistries: [RegistryPattern]
        public var maxQueuedBuildsPerToken: Int
        public var maxPlatformsPerBuild: Int
        public var maxStreamsPerToken: Int
        public var authFailuresPerMinute: Int
        /// Whether uploaded contexts are also kept in the database (replicas on PostgreSQL): the contexts directory
        /// is then a cache any replica fills from the database on first download.
        public var sharedContexts: Bool

        public init(
            leaseTTLSeconds: Int = 60, heartbeatIntervalSeconds: Int = 10, pollTimeout: Duration = .seconds(30),
            maxContextBytes: Int64 = 2 << 30, maxRequestBodyBytes: Int = 1 << 20, contextsDirectory: URL,
            caCertificatePEM: String?, allowedRegistries: [RegistryPattern] = [], maxQueuedBuildsPerToken: Int = 100,
            maxPlatformsPerBuild: Int = 32, maxStreamsPerToken: Int = 16, authFailuresPerMinute: Int = 20,
            sharedContexts: Bool = false
        ) {
            self.sharedContexts = sharedContexts
            self.allowedRegistries = allowedRegistries
            self.maxQueuedBuildsPerToken = maxQueuedBuildsPerToken
            self.maxPlatformsPerBuild = maxPlatformsPerBuild
            self.maxStreamsPerToken = maxStreamsPerToken
            self.authFailuresPerMinute = authFailuresPerMinute
            self.leaseTTLSeconds = leaseTTLSeconds
            self.heartbeatIntervalSeconds = heartbeatIntervalSeconds
            self.pollTimeout = pollTimeout
            self.maxContextBytes = maxContextBytes
            self.maxRequestBodyBytes = maxRequestBodyBytes
            self.contextsDirectory = contextsDirectory
            self.caCertificatePEM = caCertificatePEM
        }
    }

    let store: Store
    let notifier: WorkNotifier
    let metrics: CoordinatorMetrics
    let options: Options
    let hash: @Sendable (String) -> String
    let generateSecret: @Sendable (String) -> String
    let failures: AuthFailureLimiter
    let streams: StreamRegistry
    let jobBuilds = JobBuilds()
    /// Signs and checks the dashboard's session cookies.
    let sessions: DashboardSessions
    /// Spans of each build's trace; ``CoordinatorTracing/off`` unless a collector is configured.
    let tracing: CoordinatorTracing

    public init(
        store: Store, notifier: WorkNotifier, metrics: CoordinatorMetrics, options: Options,
        hash: @escaping @Sendable (String) -> String, generateSecret: @escaping @Sendable (String) -> String,
        dashboardKey: SymmetricKey = SymmetricKey(size: .bits256), dashboardSessionLifetime: TimeInterval = 12 * 3600,
        tracing: CoordinatorTracing = .off
    ) {
        self.tracing = tracing
        sessions = DashboardSessions(key: dashboardKey, lifetime: dashboardSessionLifetime)
        self.store = store
        self.notifier = notifier
        self.metrics = metrics
        self.options = options
        self.hash = hash
        self.generateSecret = generateSecret
        failures = AuthFailureLimiter(limit: options.authFailuresPerMinute)
        streams = StreamRegistry(limit: options.maxStreamsPerToken)
    }

    /// Paths answered without a token: liveness, readiness and the CA certificate agents pin by fingerprint.
    public static let publicPaths: Set<String> = ["/healthz", "/readyz", "/api/v1/ca.crt"]

    /// The router with every route, error mapping and authentication.
    public func router() -> Router<CoordinatorContext> {
        let router = Router(context: CoordinatorContext.self)
        // Outermost, so it sees the status the error mapping and authentication answered with.
        router.add(middleware: RequestMetricsMiddleware(factory: metrics.factory))
        router.add(middleware: ErrorMiddleware())
        router.add(
            middleware: AuthenticationMiddleware(store: store, hash: hash, publicPaths: Self.publicPaths, failures: failures))
        addHealthRoutes(to: router)
        addAgentRoutes(to: router)
        addBuildRoutes(to: router)
        addAdminRoutes(to: router)
        addPoolRoutes(to: router)
        addContextRoutes(to: router)
        addDashboardRoutes(to: router)
        return router
    }

    // MARK: - JSON helpers

    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        let body = try APICoding.encoder().encode(value)
        return Response(
            status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }

    func decode<T: Decodable>(_ type: T.Type, from request: Request, context: CoordinatorContext) async throws -> T {
        try await decode(type, from: request.body, context: context)
    }

    func decode<T: Decodable>(_ type: T.Type, from body: RequestBody, context: CoordinatorContext) async throws -> T {
        let limit = options.maxRequestBodyBytes
        let buffer: ByteBuffer
        do {
            buffer = try await body.collect(upTo: limit)
        } catch {
            throw APIError(
                .contentTooLarge, code: "TOO_LARGE", "the request body is over the \(limit)-byte limit (max_request_body_bytes)")
        }
        guard buffer.readableBytes > 0 else { throw APIError.badRequest("the request needs a JSON body") }
        return try APICoding.decoder().decode(T.self, from: Data(buffer: buffer))
    }

    static func parameter(_ name: String, _ context: CoordinatorContext) throws -> String {
        guard let value = context.parameters.get(name) else { throw APIError.badRequest("missing path parameter \(name)") }
        return value
    }

    // MARK: - Health

    func addHealthRoutes(to router: Router<CoordinatorContext>) {
        router.get("/healthz") { _, _ in Response(status: .ok, body: ResponseBody(byteBuffer: ByteBuffer(string: "ok\n"))) }
        router.get("/readyz") { _, _ -> Response in
            do {
                _ = try await store.latestEventID()
            } catch {
                throw APIError(.serviceUnavailable, code: "NOT_READY", "the database cannot be read: \(error)")
            }
            if store.writeHealth.failure != nil {
                // A load balancer sends nothing while we are not ready, so no client write would tell us that
                // space is back: probe with a write of our own.
                do {
                    try await store.probeWrite()
                    try await ContextDirectory(options.contextsDirectory).probe()
                } catch {
                    if store.writeHealth.failure == nil { store.recordStorageFailure("\(error)") }
                    let since = store.writeHealth.lastFailure.map { " (last failed write \($0.formatted(.iso8601)))" } ?? ""
                    throw APIError(
                        .serviceUnavailable, code: "NOT_READY",
                        "the coordinator cannot write its state directory "
                            + "\(options.contextsDirectory.deletingLastPathComponent().path)\(since): "
                            + "\(store.writeHealth.failure ?? "\(error)"). Free space on its file system; "
                            + "readiness returns by itself once a write succeeds")
                }
            }
            return Response(status: .ok, body: ResponseBody(byteBuffer: ByteBuffer(string: "ready\n")))
        }
        router.get("/api/v1/ca.crt") { _, _ -> Response in
            guard let pem = options.caCertificatePEM else {
                throw APIError(
                    .notFound, code: "NOT_FOUND", "this coordinator serves plain HTTP behind a proxy and has no CA of its own")
            }
            return Response(
                status: .ok, headers: [.contentType: "application/x-pem-file"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: pem)))
        }
        router.get("/metrics") { _, context -> Response in
            _ = try context.requireUser([.viewer, .submitter], to: "read metrics")
            let counts = try await store.stateCounts()
            let queued = try await store.queuedJobsByPlatform()
            // Every state has a series from the first scrape on, at 0 while no row is in it.
            func everyState<State: CaseIterable & RawRepresentable>(_: State.Type, _ counts: [String: Int]) -> [String: Int]
            where State.RawValue == String {
                counts.merging(State.allCases.map { ($0.rawValue, 0) }) { count, _ in count }
            }
            let text = metrics.render(gauges: [
                ("manifold_builds", "state", everyState(BuildState.self, counts.builds)),
                ("manifold_jobs", "state", everyState(JobState.self, counts.jobs)),
                ("manifold_agents", "state", everyState(AgentState.self, counts.agents)),
                ("manifold_queued_jobs", "platform", queued),
            ])
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
        }
    }
}

/// Which build each job belongs to — fixed when the job is made — remembered for the jobs agents report on, so a
/// log chunk or heartbeat wakes only its build's followers without a read each time. Bounded: forgotten wholesale
/// when full, then read again.
final class JobBuilds: Sendable {
    private static let limit = 4096
    private let known = Mutex<[String: String]>([:])

    /// The build of `jobId`, nil when the job does not exist (or the store cannot say now: everyone is woken then).
    func build(of jobId: String, in store: Store) async -> String? {
        if let build = known.withLock({ $0[jobId] }) { return build }
        guard let build = try? await store.buildId(ofJob: jobId) else { return nil }
        known.withLock { known in
            if known.count >= Self.limit { known.removeAll(keepingCapacity: true) }
            known[jobId] = build
        }
        return build
    }
}
