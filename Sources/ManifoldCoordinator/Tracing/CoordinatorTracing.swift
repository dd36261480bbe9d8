import Foundation
import Logging
import ManifoldStore
import OTel
import ServiceLifecycle
import Tracing

/// The coordinator's tracer: each build is one trace, from its submission through every platform's dispatch, the
/// agent's phases, verification and publishing, with registry calls as child spans.
///
/// Off unless configured (``CoordinatorSettings/otlpTracesEndpoint`` or the standard `OTEL_EXPORTER_OTLP_ENDPOINT`
/// / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` variables): then the tracer is a `NoOpTracer`, no exporter runs and the
/// coordinator skips the store reads that only tracing needs. On, swift-otel's OTLP/HTTP exporter runs as a service
/// of the coordinator's `ServiceGroup`, so it flushes what it holds at shutdown.
///
/// The instance is passed down, never bootstrapped into `InstrumentationSystem`: the tests run many coordinators in
/// one process, each with its own tracer.
///
/// A build's spans are created by whichever replica does the work, at any time after the submission: the root
/// span's context is stored with the build as a W3C `traceparent`, and later spans are started from it.
public struct CoordinatorTracing: Sendable {
    let tracer: any Tracer
    /// The exporter and batch processor; nil when tracing is off.
    let service: (any Service)?

    public var isEnabled: Bool { service != nil }

    /// No tracing: a `NoOpTracer` and no background work.
    public static let off = CoordinatorTracing(tracer: NoOpTracer(), service: nil)

    /// The tracer `settings` and `environment` ask for: off unless a collector endpoint is named, and off when the
    /// standard `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` say so.
    public static func make(
        settings: CoordinatorSettings, environment: [String: String], logger: Logger
    ) throws -> CoordinatorTracing {
        let named = [
            settings.otlpTracesEndpoint, environment["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"],
            environment["OTEL_EXPORTER_OTLP_ENDPOINT"],
        ].compactMap { $0 }.filter { !$0.isEmpty }
        guard !named.isEmpty, environment["OTEL_SDK_DISABLED"]?.lowercased() != "true",
            environment["OTEL_TRACES_EXPORTER"]?.lowercased() != "none"
        else { return .off }
        var configuration = OTel.Configuration.default
        configuration.serviceName = "manifold-coordinator"
        configuration.logs.enabled = false
        configuration.metrics.enabled = false
        configuration.propagators = [.traceContext]
        configuration.diagnosticLogger = .custom(logger)
        configuration.traces.exporter = .otlp
        configuration.traces.otlpExporter.protocol = settings.otlpTracesProtocol == "http/json" ? .httpJSON : .httpProtobuf
        if let endpoint = settings.otlpTracesEndpoint { configuration.traces.otlpExporter.endpoint = endpoint }
        // The OTEL_* variables of the process override these (swift-otel reads them itself).
        let backend = try OTel.makeTracingBackend(configuration: configuration)
        logger.info(
            "tracing on: spans go to an OTLP collector",
            metadata: ["endpoint": "\(settings.otlpTracesEndpoint ?? named[0])", "protocol": "\(settings.otlpTracesProtocol)"])
        return CoordinatorTracing(tracer: backend.factory, service: backend.service)
    }

    /// The context a span starts under: the one `traceparent` names, nil when tracing is off or `traceparent` is not a
    /// valid W3C trace context (then no span is made rather than one in a trace of its own).
    func context(traceparent: String?) -> ServiceContext? {
        guard isEnabled, let traceparent, let parsed = TraceParent(traceparent) else { return nil }
        var context = ServiceContext.topLevel
        tracer.extract(["traceparent": parsed.description], into: &context, using: HeaderExtractor())
        return context
    }

    /// The context of build `buildId`'s root span, as stored at its submission; nil when tracing is off, the build was
    /// submitted without it, or the store cannot say now (then the span is left out, never the work).
    func buildContext(_ buildId: String, in store: Store) async -> ServiceContext? {
        guard isEnabled, let traceparent = try? await store.traceContext(buildId: buildId) else { return nil }
        return context(traceparent: traceparent)
    }

    /// The W3C `traceparent` of `span`, to store or hand to an agent; nil when tracing is off.
    func traceparent(of span: any Span) -> String? {
        guard isEnabled else { return nil }
        var headers: [String: String] = [:]
        tracer.inject(span.context, into: &headers, using: HeaderInjector())
        return headers["traceparent"]
    }

    /// Starts a span under `parent` (at `start`, or now).
    func startSpan(
        _ name: String, parent: ServiceContext, kind: SpanKind = .internal, at start: Date? = nil,
        attributes: SpanAttributes = [:]
    ) -> any Span {
        let span = tracer.startSpan(
            name, context: parent, ofKind: kind, at: start.map(Self.instant) ?? DefaultTracerClock.now, function: #function,
            file: #fileID, line: #line)
        span.attributes.merge(attributes)
        return span
    }

    /// Records a span that already happened, from `start` to `end`: the agent's phases, a job's wait in the queue.
    @discardableResult
    func recordSpan(
        _ name: String, parent: ServiceContext, from start: Date, to end: Date, attributes: SpanAttributes = [:]
    ) -> any Span {
        let span = startSpan(name, parent: parent, at: start, attributes: attributes)
        span.end(at: Self.instant(max(start, end)))
        return span
    }

    /// Runs `body` in a span under `parent`, or under the task's current span when `parent` is nil; with no span at
    /// all (tracing off, no parent) it just runs `body`. An error `body` throws is recorded on the span.
    func withSpan<T>(
        _ name: String, parent: ServiceContext? = nil, kind: SpanKind = .internal, attributes: SpanAttributes = [:],
        _ body: () async throws -> T
    ) async throws -> T {
        guard isEnabled, let parent = parent ?? ServiceContext.current else { return try await body() }
        let span = startSpan(name, parent: parent, kind: kind, attributes: attributes)
        defer { span.end() }
        do {
            return try await ServiceContext.withValue(span.context) { try await body() }
        } catch {
            span.recordError(error)
            span.setStatus(SpanStatus(code: .error))
            throw error
        }
    }

    /// A registry operation as a client span under the task's current span.
    func registry<T>(
        _ operation: String, registry: String, repository: String? = nil, _ body: () async throws -> T
    ) async throws -> T {
        var attributes: SpanAttributes = ["registry.host": .string(registry)]
        if let repository { attributes["registry.repository"] = repository }
        return try await withSpan("registry \(operation)", kind: .client, attributes: attributes, body)
    }

    static func instant(_ date: Date) -> DefaultTracerClock.Instant {
        DefaultTracerClock.Instant(nanosecondsSinceEpoch: UInt64(max(0, date.timeIntervalSince1970) * 1e9))
    }
}

/// A W3C trace context header, `00-TRACEID-SPANID-FLAGS`, checked before any tracer reads it: an agent or a stored
/// row hands it in.
struct TraceParent: CustomStringConvertible, Sendable, Equatable {
    var traceID: String
    var spanID: String
    var flags: String

    init?(_ text: String) {
        let parts = text.trimmingCharacters(in: .whitespaces).split(separator: "-", omittingEmptySubsequences: false)
        func hex(_ part: Substring, _ count: Int) -> Bool {
            part.count == count && part.allSatisfy { $0.isHexDigit && !$0.isUppercase }
        }
        guard parts.count == 4, parts[0] == "00", hex(parts[1], 32), hex(parts[2], 16), hex(parts[3], 2),
            parts[1] != String(repeating: "0", count: 32), parts[2] != String(repeating: "0", count: 16)
        else { return nil }
        traceID = String(parts[1])
        spanID = String(parts[2])
        flags = String(parts[3])
    }

    var description: String { "00-\(traceID)-\(spanID)-\(flags)" }
}

struct HeaderInjector: Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) { carrier[key] = value }
}

struct HeaderExtractor: Extractor {
    func extract(key: String, from carrier: [String: String]) -> String? { carrier[key] }
}
