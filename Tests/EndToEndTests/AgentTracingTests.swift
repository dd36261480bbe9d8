import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldTestSupport
import Testing

/// A build traced across processes: `manifold serve` exports with swift-otel to a loopback OTLP collector, and a real
/// `manifold-agent` (which has no exporter) gets the trace context with its lease and reports its phases, which join
/// the build's trace under the attempt's span.
@Suite struct AgentTracingTests {
    @Test func theAgentsPhasesJoinTheBuildsTrace() async throws {
        let scratch = try ScratchDirectory(prefix: "collector")
        defer { scratch.remove() }
        let collector = try TestHTTPServer.start(name: "otlp-collector", logDirectory: scratch.url)
        defer { collector.stop() }
        let harness = try await AgentHarness(
            "traced",
            environment: [
                "MANIFOLD_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:\(collector.port)/v1/traces",
                "MANIFOLD_OTLP_TRACES_PROTOCOL": "http/json",
            ])
        defer { harness.tearDown() }
        let joined = try harness.join("builder")
        #expect(joined.status == 0, "\(joined.stderr)")
        let agent = try harness.startAgent("builder", script: AgentHarness.buildahScript())
        defer { agent.stop() }
        let submitted = try await harness.submit(files: AgentHarness.context)
        let final = try await harness.wait(submitted.id, timeout: .seconds(90))
        #expect(final.state == .published, "\(final)\n\(agent.output())")

        let spans = try await collector.waitForSpans { spans in
            spans.contains { $0.name == "publish" } && spans.contains { $0.name == "agent build" }
        }
        let root = try #require(spans.first { $0.name == "build" && $0.parentSpanID == nil })
        #expect(Set(spans.map(\.traceID)) == [root.traceID])
        let dispatch = try #require(spans.first { $0.name == "dispatch" && $0.parentSpanID == root.spanID })
        // The command builder builds and pushes in one command: its phases are fetch_context and build.
        for name in ["agent fetch_context", "agent build", "report"] {
            let span = try #require(spans.first { $0.name == name }, "\(spans.map(\.name))")
            #expect(span.parentSpanID == dispatch.spanID, "\(name)")
        }
        let fetch = try #require(spans.first { $0.name == "agent fetch_context" })
        let build = try #require(spans.first { $0.name == "agent build" })
        // Timed by the agent: fetching ends before building starts, both after the attempt was leased.
        #expect(fetch.endNanos <= build.startNanos)
        #expect(build.endNanos >= build.startNanos)
        #expect(spans.contains { $0.name == "verify" && $0.parentSpanID == root.spanID })
    }
}
