import Foundation
import Logging
import ManifoldAPI
import ManifoldCore
import ManifoldTestSupport
import Testing

@testable import ManifoldCoordinator

/// Tracing end to end: a coordinator exporting with swift-otel's OTLP/HTTP exporter to a collector on loopback
/// (`deploy/testenv/http_test_server.py`'s `/v1/traces`), a real registry, and the agent side of the protocol (the
/// lease's `traceparent` back with the phases' timings). `AgentTracingTests` does the same with a real agent.
@Suite struct TracingTests {
    @Test func oneBuildIsOneTraceFromSubmissionToPublishing() async throws {
        let scratch = try ScratchDirectory(prefix: "collector")
        defer { scratch.remove() }
        let collector = try TestHTTPServer.start(name: "otlp-collector", logDirectory: scratch.url)
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
                    // The arm64 agent repeats its phases 50 times: still one span for each.
                    traceparent: traceparent.description,
                    phases: platform == "linux/arm64" ? Array(repeating: phases, count: 50).flatMap { $0 } : phases))
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
        func children(of parent: CollectedSpan, named name: String) -> [CollectedSpan] {
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

    /// The default encoding, binary protobuf: the collector keeps the bytes, and the lease's trace ID and the span
    /// names are in them (a protobuf `bytes` or `string` field holds its value verbatim).
    @Test func spansGoAsProtobufByDefault() async throws {
        let scratch = try ScratchDirectory(prefix: "collector")
        defer { scratch.remove() }
        let collector = try TestHTTPServer.start(name: "otlp-collector", logDirectory: scratch.url)
        defer { collector.stop() }
        let fixture = try await CoordinatorFixture.start { settings in
            settings.otlpTracesEndpoint = "http://127.0.0.1:\(collector.port)/v1/traces"
        }
        let submitter = try await fixture.token(.submitter)
        let agent = try await fixture.joinAgent("amd64", platforms: ["linux/amd64"])
        _ = try await fixture.submit(submitter, image: "127.0.0.1:1/team/binary", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent.secret, platforms: ["linux/amd64"]).decode(PollResponse.self).lease)
        let traceparent = try #require(lease.traceparent.flatMap(TraceParent.init))
        var traceID = Data()
        var digits = Substring(traceparent.traceID)
        while !digits.isEmpty {
            traceID.append(UInt8(digits.prefix(2), radix: 16)!)
            digits = digits.dropFirst(2)
        }
        let deadline = ContinuousClock.now + .seconds(60)
        var exports: [Data] = []
        while ContinuousClock.now < deadline {
            exports = try await collector.collectedProtobufExports()
            if exports.contains(where: { $0.range(of: traceID) != nil && $0.range(of: Data("dispatch".utf8)) != nil }) { break }
            try await Task.sleep(for: .milliseconds(250))
        }
        #expect(exports.contains { $0.range(of: traceID) != nil && $0.range(of: Data("dispatch".utf8)) != nil })
        #expect(exports.contains { $0.range(of: Data("manifold-coordinator".utf8)) != nil })
        #expect(try await collector.collectedSpans().isEmpty)
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

    @Test func phaseTimesKeepTheirFractionOfASecond() throws {
        let started = Date(timeIntervalSince1970: 1_800_000_000.125)
        let phase = JobPhase(name: JobPhase.build, startedAt: started, endedAt: started.addingTimeInterval(0.5))
        let json = String(decoding: try APICoding.encoder().encode(phase), as: UTF8.self)
        #expect(json.contains("\"startedAt\":\"2027-01-15T08:00:00.125Z\""), "\(json)")
        let decoded = try APICoding.decoder().decode(JobPhase.self, from: Data(json.utf8))
        #expect(abs(decoded.startedAt.timeIntervalSince(started)) < 0.001)
        #expect(abs(decoded.endedAt.timeIntervalSince(phase.endedAt)) < 0.001)
        // Whole seconds, as the API's other dates, are read too; anything else is refused by name.
        let whole = #"{"name":"push","startedAt":"2027-01-15T08:00:00Z","endedAt":"2027-01-15T08:00:01Z"}"#
        #expect(
            try APICoding.decoder().decode(JobPhase.self, from: Data(whole.utf8)).startedAt
                == Date(timeIntervalSince1970: 1_800_000_000))
        let bad = #"{"name":"push","startedAt":"yesterday","endedAt":"2027-01-15T08:00:01Z"}"#
        #expect(throws: DecodingError.self) { try APICoding.decoder().decode(JobPhase.self, from: Data(bad.utf8)) }
        // A time before 1970 or past the year 5000 is refused, not turned into arithmetic on it.
        for outside in ["1969-12-31T23:59:59Z", "9999-01-01T00:00:00Z"] {
            let text = #"{"name":"push","startedAt":"\#(outside)","endedAt":"2027-01-15T08:00:01Z"}"#
            #expect(throws: DecodingError.self) { try APICoding.decoder().decode(JobPhase.self, from: Data(text.utf8)) }
        }
    }

    /// What the agent sends decodes to a phase that encodes to text decoding to the same phase, whatever fraction of a
    /// second it was written with (the API request fuzzer's rule; times are kept to the millisecond).
    @Test(arguments: [
        "2026-12-03T06:08:26.1234567Z", "2026-12-03T06:08:26.1Z", "2026-12-03T06:08:26.9999Z", "2026-12-03T06:08:26Z",
        "2026-12-03T06:08:26.001Z", "2027-01-15T08:00:00.125Z", "1970-01-01T00:00:00.0005Z",
    ])
    func phaseTimesSurviveARoundTrip(_ time: String) throws {
        let text = #"{"name":"build","startedAt":"\#(time)","endedAt":"\#(time)"}"#
        let decoded = try APICoding.decoder().decode(JobPhase.self, from: Data(text.utf8))
        let again = try APICoding.decoder().decode(JobPhase.self, from: APICoding.encoder().encode(decoded))
        #expect(
            again == decoded,
            "\(time): \(decoded.startedAt.timeIntervalSince1970) became \(again.startedAt.timeIntervalSince1970)")
        let made = JobPhase(name: JobPhase.push, startedAt: decoded.startedAt.addingTimeInterval(0.0004), endedAt: Date())
        #expect(try APICoding.decoder().decode(JobPhase.self, from: APICoding.encoder().encode(made)) == made)
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
}
