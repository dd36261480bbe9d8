import Foundation
import Hummingbird
import Logging
import ManifoldAPI
import ManifoldCore
import ManifoldTestSupport
import Synchronization
import Testing

@testable import ManifoldCoordinator

/// Tracing end to end: a coordinator exporting with swift-otel's OTLP/HTTP exporter to a collector on loopback, a
/// real registry, and the agent side of the protocol (the lease's `traceparent` back with the phases' timings).
@Suite struct TracingTests {
    @Test func oneBuildIsOneTraceFromSubmissionToPublishing() async throws {
        let collector = try await TestCollector.start()
        defer { collector.stop() }
        let registry = try TestRegistry.start(.http)
        defer { registry.stop() }
        let fixture = try await CoordinatorFixture.start(registry: registry) { settings in
            settings.otlpTracesEndpoint = "http://127.0.0.1:\(collector.port)/v1/traces"
            settings.otlpTracesProtocol = "http/json"
        }
        let submitter = try await fixture.token(.submitter)
        let amd64 = try await fixture.joinAgent("amd64", platforms: ["linux/amd64"])
        let arm64 = try await fixture.joinAgent("arm64", platforms: ["linux/arm64"])
        let build = try await fixture.submit(
            submitter, image: "\(registry.host)/team/traced", platforms: ["linux/amd64", "linux/arm64"])

        var leases: [Lease] = []
        for (agent, platform) in [(amd64, "linux/amd64"), (arm64, "linux/arm64")] {
            let lease = try #require(try await fixture.poll(agent.secret, platforms: [platform]).decode(PollResponse.self).lease)
            leases.append(lease)
            let traceparent = try #require(lease.traceparent.flatMap(TraceParent.init))
            let started = Date()
            let (reference, digest) = try await PublishingTests.pushImage(for: lease, text: "traced \(platform)")
            let phases = [
                JobPhase(name: JobPhase.fetchContext, startedAt: started, endedAt: started.addingTimeInterval(0.1)),
                JobPhase(
                    name: JobPhase.build, startedAt: started.addingTimeInterval(0.1), endedAt: started.addingTimeInterval(0.5)),
                JobPhase(name: JobPhase.push, startedAt: started.addingTimeInterval(0.5), endedAt: Date()),
            ]
            let reply = try await fixture.call(
                "POST", "/api/v1/agent/complete", token: agent.secret,
                json: CompleteRequest(
                    jobId: lease.jobId, epoch: lease.epoch, outcome: .succeeded, imageReference: reference, digest: digest,
                    traceparent: traceparent.description, phases: phases))
            #expect(reply.status == 200)
        }
        _ = try await fixture.waitForBuild(build.id, token: submitter) { $0.state == .published }

        // The batch processor sends every few seconds; wait until the publish span and its registry calls are in.
        let spans = try await collector.waitForSpans { spans in
            let publish = spans.filter { $0.name == "publish" }.map(\.spanID)
            return spans.contains { span in span.parentSpanID.map(publish.contains) == true && span.name.hasPrefix("registry") }
        }
        let traceIDs = Set(spans.map(\.traceID))
        #expect(traceIDs == [TraceParent(leases[0].traceparent!)!.traceID], "one trace: \(traceIDs)")
        let roots = spans.filter { $0.name == "build" }
        try #require(roots.count == 1)
        let root = roots[0]
        #expect(root.parentSpanID == nil)
        func children(of parent: Span, named name: String) -> [Span] {
            spans.filter { $0.name == name && $0.parentSpanID == parent.spanID }
        }
        let dispatches = children(of: root, named: "dispatch")
        #expect(dispatches.count == 2)
        for lease in leases {
            // The lease carries the dispatch span's context, and the agent's phases are recorded under it.
            let dispatch = try #require(dispatches.first { $0.spanID == TraceParent(lease.traceparent!)!.spanID })
            for name in ["agent fetch_context", "agent build", "agent push", "report"] {
                #expect(children(of: dispatch, named: name).count == 1, "\(name) under the dispatch of \(lease.spec.platform)")
            }
            let push = try #require(children(of: dispatch, named: "agent push").first)
            #expect(push.endNanos >= push.startNanos)
        }
        let verifications = children(of: root, named: "verify")
        #expect(verifications.count == 2)
        for verify in verifications {
            #expect(spans.contains { $0.parentSpanID == verify.spanID && $0.name.hasPrefix("registry ") })
        }
        let publications = children(of: root, named: "publish")
        #expect(publications.count == 1)
        #expect(spans.contains { $0.parentSpanID == publications.first?.spanID && $0.name == "registry push list" })
        await fixture.stop()
    }

    @Test func withoutACollectorLeasesCarryNoTraceContext() async throws {
        let fixture = try await CoordinatorFixture.start()
        let submitter = try await fixture.token(.submitter)
        let agent = try await fixture.joinAgent("amd64", platforms: ["linux/amd64"])
        _ = try await fixture.submit(submitter, image: "127.0.0.1:1/team/untraced", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent.secret, platforms: ["linux/amd64"]).decode(PollResponse.self).lease)
        #expect(lease.traceparent == nil)
        await fixture.stop()
    }

    @Test func traceContextsAreCheckedBeforeUse() {
        #expect(TraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")?.spanID == "00f067aa0ba902b7")
        for bad in [
            "", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
        ] {
            #expect(TraceParent(bad) == nil, "\(bad)")
        }
    }

    @Test func tracingIsOffUnlessACollectorIsNamed() throws {
        var settings = CoordinatorSettings.defaults
        let logger = Logger(label: "test")
        #expect(try !CoordinatorTracing.make(settings: settings, environment: [:], logger: logger).isEnabled)
        #expect(
            try !CoordinatorTracing.make(
                settings: settings,
                environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_SDK_DISABLED": "true"],
                logger: logger
            ).isEnabled)
        settings.otlpTracesEndpoint = "http://127.0.0.1:1/v1/traces"
        #expect(
            try !CoordinatorTracing.make(settings: settings, environment: ["OTEL_TRACES_EXPORTER": "none"], logger: logger)
                .isEnabled)
        #expect(try CoordinatorTracing.make(settings: settings, environment: [:], logger: logger).isEnabled)
    }

    @Test func aCollectorURLIsCheckedWhenSettingsAreRead() throws {
        #expect(throws: CoordinatorSettingsError.self) {
            try CoordinatorSettings.resolve(
                configFile: nil, environment: ["MANIFOLD_OTLP_TRACES_ENDPOINT": "collector:4318"], flags: [:])
        }
        #expect(throws: CoordinatorSettingsError.self) {
            try CoordinatorSettings.resolve(configFile: nil, environment: ["MANIFOLD_OTLP_TRACES_PROTOCOL": "grpc"], flags: [:])
        }
        let settings = try CoordinatorSettings.resolve(
            configFile: nil, environment: ["MANIFOLD_OTLP_TRACES_ENDPOINT": "https://collector.example:4318/v1/traces"],
            flags: [:])
        #expect(settings.otlpTracesEndpoint == "https://collector.example:4318/v1/traces")
        #expect(settings.yaml().contains("otlp_traces_endpoint: \"https://collector.example:4318/v1/traces\""))
    }

    /// A span as the collector received it.
    struct Span: Sendable {
        var name: String
        var traceID: String
        var spanID: String
        var parentSpanID: String?
        var startNanos: UInt64
        var endNanos: UInt64
    }
}

/// An OTLP/HTTP collector on loopback (Hummingbird): takes `POST /v1/traces` in the OTLP JSON encoding, keeps the
/// spans, answers with an empty `ExportTraceServiceResponse`.
final class TestCollector: Sendable {
    let port: Int
    private let store: SpanStore
    private let task: Task<Void, any Error>

    private init(port: Int, store: SpanStore, task: Task<Void, any Error>) {
        self.port = port
        self.store = store
        self.task = task
    }

    static func start() async throws -> TestCollector {
        let store = SpanStore()
        let router = Router()
        router.post("/v1/traces") { request, _ -> Response in
            guard request.headers[.contentType]?.hasPrefix("application/json") == true else {
                return Response(status: .unsupportedMediaType)
            }
            let body = try await request.body.collect(upTo: 16 << 20)
            try store.add(Data(buffer: body))
            return Response(
                status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: "{}"))
            )
        }
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let app = Application(
            router: router, configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in continuation.yield(channel.localAddress?.port ?? 0) })
        let task = Task { try await app.runService() }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next(), port > 0 else {
            task.cancel()
            throw TestEnvironmentError("the test collector did not start")
        }
        return TestCollector(port: port, store: store, task: task)
    }

    /// The spans received once `done` holds for them; fails after a minute.
    func waitForSpans(until done: ([TracingTests.Span]) -> Bool) async throws -> [TracingTests.Span] {
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            let spans = store.spans
            if done(spans) { return spans }
            guard ContinuousClock.now < deadline else {
                throw TestEnvironmentError("the collector has \(spans.count) spans: \(spans.map(\.name))")
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    func stop() { task.cancel() }
}

/// What the collector was sent, decoded from OTLP JSON (`resourceSpans[].scopeSpans[].spans[]`). IDs are hex in the
/// OTLP JSON encoding; protobuf's generic JSON mapping (base64) is read as well.
final class SpanStore: Sendable {
    private let received = Mutex<[TracingTests.Span]>([])

    var spans: [TracingTests.Span] { received.withLock { $0 } }

    func add(_ body: Data) throws {
        struct Request: Decodable { var resourceSpans: [ResourceSpans]? }
        struct ResourceSpans: Decodable { var scopeSpans: [ScopeSpans]? }
        struct ScopeSpans: Decodable { var spans: [Span]? }
        struct Span: Decodable {
            var name: String
            var traceId: String
            var spanId: String
            var parentSpanId: String?
            var startTimeUnixNano: String
            var endTimeUnixNano: String
        }
        func hex(_ id: String) -> String {
            if id.count % 2 == 0, id.allSatisfy(\.isHexDigit), id.count == 32 || id.count == 16 { return id.lowercased() }
            guard let bytes = Data(base64Encoded: id) else { return id }
            return bytes.map { String(format: "%02x", $0) }.joined()
        }
        let request = try JSONDecoder().decode(Request.self, from: body)
        let spans = (request.resourceSpans ?? []).flatMap { $0.scopeSpans ?? [] }.flatMap { $0.spans ?? [] }.map { span in
            TracingTests.Span(
                name: span.name, traceID: hex(span.traceId), spanID: hex(span.spanId),
                parentSpanID: span.parentSpanId.flatMap { $0.isEmpty ? nil : hex($0) },
                startNanos: UInt64(span.startTimeUnixNano) ?? 0, endNanos: UInt64(span.endTimeUnixNano) ?? 0)
        }
        received.withLock { $0 += spans }
    }
}
