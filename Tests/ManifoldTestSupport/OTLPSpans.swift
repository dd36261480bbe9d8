import Foundation
import ManifoldHTTP

/// A span as an OTLP collector received it.
public struct CollectedSpan: Sendable, Hashable {
    public var name: String
    /// Lower-case hex, as in a W3C `traceparent`.
    public var traceID: String
    public var spanID: String
    public var parentSpanID: String?
    public var startNanos: UInt64
    public var endNanos: UInt64

    /// The spans of OTLP/HTTP trace exports in the JSON encoding (`resourceSpans[].scopeSpans[].spans[]`).
    /// IDs are hex in the OTLP JSON encoding; protobuf's generic JSON mapping (base64) is read as well.
    public static func decode(exports data: Data) throws -> [CollectedSpan] {
        struct Export: Decodable { var resourceSpans: [ResourceSpans]? }
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
            if id.count == 32 || id.count == 16, id.allSatisfy(\.isHexDigit) { return id.lowercased() }
            guard let bytes = Data(base64Encoded: id) else { return id }
            return bytes.map { String(format: "%02x", $0) }.joined()
        }
        let exports = try JSONDecoder().decode([Export].self, from: data)
        var collected: [CollectedSpan] = []
        for resource in exports.flatMap({ $0.resourceSpans ?? [] }) {
            for scope in resource.scopeSpans ?? [] {
                for span in scope.spans ?? [] {
                    let parent: String? = span.parentSpanId.flatMap { $0.isEmpty ? nil : hex($0) }
                    collected.append(
                        CollectedSpan(
                            name: span.name, traceID: hex(span.traceId), spanID: hex(span.spanId), parentSpanID: parent,
                            startNanos: UInt64(span.startTimeUnixNano) ?? 0, endNanos: UInt64(span.endTimeUnixNano) ?? 0))
                }
            }
        }
        return collected
    }
}

extension TestHTTPServer {
    /// The spans this server's `/v1/traces` collector has received.
    public func collectedSpans() async throws -> [CollectedSpan] {
        let client = HTTPClient()
        defer { client.shutdown() }
        let response = try await client.execute(HTTPRequest(method: "GET", url: url("/v1/traces")))
        guard response.status == 200 else {
            throw TestEnvironmentError("the collector answered \(response.status) to GET /v1/traces")
        }
        return try CollectedSpan.decode(exports: response.body)
    }

    /// The binary (protobuf) exports this server's `/v1/traces` collector has received, undecoded.
    public func collectedProtobufExports() async throws -> [Data] {
        let client = HTTPClient()
        defer { client.shutdown() }
        let response = try await client.execute(HTTPRequest(method: "GET", url: url("/v1/traces/protobuf")))
        guard response.status == 200 else {
            throw TestEnvironmentError("the collector answered \(response.status) to GET /v1/traces/protobuf")
        }
        return try JSONDecoder().decode([String].self, from: response.body).compactMap { Data(base64Encoded: $0) }
    }

    /// The collected spans once `done` holds for them; fails after `timeout` (swift-otel sends a batch every 5 s).
    public func waitForSpans(
        timeout: Duration = .seconds(60), until done: ([CollectedSpan]) -> Bool
    ) async throws -> [CollectedSpan] {
        let deadline = ContinuousClock.now + timeout
        while true {
            let spans = try await collectedSpans()
            if done(spans) { return spans }
            guard ContinuousClock.now < deadline else {
                throw TestEnvironmentError("the collector has \(spans.count) spans: \(spans.map(\.name))")
            }
            try await Task.sleep(for: .milliseconds(250))
        }
    }
}
