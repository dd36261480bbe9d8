import CoreMetrics
import ManifoldRegistry
import Metrics
import Prometheus
import Synchronization

/// The coordinator's metrics, served at `/metrics` in the Prometheus text format: counters of what happened,
/// latency histograms (HTTP requests by route, verification, publishing, store transactions), gauges of held polls
/// and — read from the store at scrape time — of builds, jobs and agents by state and queued jobs by platform.
///
/// Everything is recorded through swift-metrics types made with this instance's ``factory``, which writes into a
/// `PrometheusCollectorRegistry` of its own; nothing goes through the process-wide `MetricsSystem`, so coordinators
/// that share a process (the tests start many) count separately. coordinator/README.md lists every family.
public final class CoordinatorMetrics: Sendable {
    /// The counters every scrape shows, at 0 until first incremented.
    static let counters: [(name: String, help: String)] = [
        ("manifold_builds_submitted_total", "Builds accepted."),
        (
            "manifold_held_poll_rechecks_total",
            "Held agent polls that woke (a notification that may concern them, or a retry time) and looked for work again."
        ),
        ("manifold_lease_expiries_total", "Attempts whose lease expired."),
        ("manifold_job_timeouts_total", "Attempts failed because they ran longer than their build's timeout."),
        ("manifold_lists_published_total", "Manifest lists pushed."),
        ("manifold_verifications_total", "Reported digests checked in the registry."),
        ("manifold_retention_runs_total", "Retention passes completed."),
        ("manifold_retention_failures_total", "Retention passes that failed (tried again at the next interval)."),
        ("manifold_retention_builds_pruned_total", "Finished builds whose logs and events retention removed."),
        ("manifold_retention_log_bytes_deleted_total", "Log bytes removed by retention."),
        ("manifold_retention_events_deleted_total", "Build events removed by retention."),
        ("manifold_retention_contexts_deleted_total", "Uploaded contexts removed by retention."),
        ("manifold_retention_context_bytes_deleted_total", "Context bytes removed by retention."),
    ]

    /// Every family other than ``counters``: name, Prometheus type, label names and HELP text.
    static let families: [(name: String, type: String, labels: [String], help: String)] = [
        (
            "manifold_registry_errors_total", "counter", ["operation", "code"],
            "Registry operations that failed, by operation (verify, publish) and error code."
        ),
        ("manifold_assembly_duration_seconds", "histogram", [], "Time to verify, push and read back a manifest list."),
        (
            "manifold_verification_duration_seconds", "histogram", ["outcome"],
            "Time to check a reported digest in the registry, until its verdict (verified or rejected)."
        ),
        (
            "manifold_publishing_duration_seconds", "histogram", ["outcome"],
            "Time of one attempt to publish a build's manifest list and tags (published or failed)."
        ),
        (
            "manifold_http_requests_total", "counter", ["route", "method", "status"],
            "HTTP requests answered, by route template, method and status code."
        ),
        (
            "manifold_http_request_duration_seconds", "histogram", ["route", "method", "status"],
            "Time from a request's arrival to the end of its response body, by route template, method and status code."
        ),
        (
            "manifold_store_transaction_duration_seconds", "histogram", ["kind"],
            "Time of one database transaction (read or write), including the wait for a connection."
        ),
        ("manifold_held_polls", "gauge", [], "Agent polls held open waiting for work."),
        ("manifold_queued_jobs", "gauge", ["platform"], "Jobs waiting for an agent, by platform."),
        ("manifold_builds", "gauge", ["state"], "Builds by state."),
        ("manifold_jobs", "gauge", ["state"], "Platform jobs by state."),
        ("manifold_agents", "gauge", ["state"], "Agents by state."),
    ]

    /// Upper bounds, in seconds, of the assembly histogram's buckets.
    static let assemblyBuckets: [Double] = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
    /// Upper bounds, in seconds, of the HTTP, verification and publishing histograms' buckets.
    static let latencyBuckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
    /// Upper bounds, in seconds, of the store transaction histogram's buckets.
    static let transactionBuckets: [Double] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5]

    /// The error codes of the OCI distribution specification; a registry's code outside them is counted as `other`,
    /// so a registry cannot grow the label's values.
    static let specifiedRegistryCodes: Set<String> = [
        "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID", "MANIFEST_BLOB_UNKNOWN",
        "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID", "NAME_UNKNOWN", "SIZE_INVALID", "UNAUTHORIZED", "DENIED",
        "UNSUPPORTED", "TOOMANYREQUESTS",
    ]

    private let registry: PrometheusCollectorRegistry
    /// The swift-metrics factory every metric of this coordinator is made with (the store's transaction timers too).
    public let factory: any MetricsFactory
    private let knownCounters: [String: CoreMetrics.Counter]
    private let assemblyDuration: CoreMetrics.Timer
    /// Agent polls held open now: incremented when a poll starts waiting, decremented when it stops.
    let heldPolls: Meter
    /// The label values each scrape-time gauge was ever set for. Held while a scrape sets the gauges and emits, so
    /// two scrapes do not interleave.
    private let gaugeLabels = Mutex<[String: Set<String>]>([:])

    public init() {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        let help = Dictionary(
            uniqueKeysWithValues: Self.counters.map { ($0.name, $0.help) } + Self.families.map { ($0.name, $0.help) })
        let factory = DescribedPrometheusFactory(
            registry: registry, help: help,
            buckets: [
                "manifold_assembly_duration_seconds": Self.assemblyBuckets,
                "manifold_store_transaction_duration_seconds": Self.transactionBuckets,
            ],
            defaultBuckets: Self.latencyBuckets)
        self.factory = factory
        knownCounters = Dictionary(
            uniqueKeysWithValues: Self.counters.map { counter in
                (counter.name, CoreMetrics.Counter(label: counter.name, factory: factory))
            })
        assemblyDuration = CoreMetrics.Timer(label: "manifold_assembly_duration_seconds", factory: factory)
        heldPolls = Meter(label: "manifold_held_polls", factory: factory)
    }

    /// Adds `value` to the counter `name`; whole numbers are kept as integers in the text. A name outside
    /// ``counters`` gets a counter without HELP text on first use.
    public func increment(_ name: String, by value: Double = 1) {
        assert(value >= 0, "counter \(name) cannot go down (by \(value))")
        guard value > 0 else { return }
        if let whole = Int64(exactly: value) {
            (knownCounters[name] ?? CoreMetrics.Counter(label: name, factory: factory)).increment(by: whole)
        } else {
            FloatingPointCounter(label: name, factory: factory).increment(by: value)
        }
    }

    public func observeAssembly(seconds: Double) {
        assemblyDuration.recordNanoseconds(Int64((seconds * 1e9).rounded()))
    }

    /// Records the time since `start` in the histogram `name` (one of ``families``).
    func observe(_ name: String, since start: ContinuousClock.Instant, _ dimensions: [(String, String)] = []) {
        CoreMetrics.Timer(label: name, dimensions: dimensions, factory: factory).record(duration: ContinuousClock.now - start)
    }

    /// Counts a failed registry operation (`verify` or `publish`) under ``registryErrorCode(_:)``.
    func countRegistryError(operation: String, _ error: any Error) {
        CoreMetrics.Counter(
            label: "manifold_registry_errors_total",
            dimensions: [("operation", operation), ("code", Self.registryErrorCode(error))], factory: factory
        ).increment()
    }

    /// A bounded label for a failed registry operation: the registry's own code when the OCI distribution
    /// specification defines it, otherwise what kind of failure it was (`http_5xx`, `transport`, `deadline`, …).
    static func registryErrorCode(_ error: any Error) -> String {
        switch error {
        case let error as RegistryError:
            if let code = error.registryCodes.first(where: specifiedRegistryCodes.contains) { return code }
            switch error {
            case .unexpectedStatus(_, _, let status, _, _):
                return (100..<600).contains(status) ? "http_\(status / 100)xx" : "http_other"
            case .unauthorized: return "unauthorized"
            case .denied: return "denied"
            case .notFound: return "not_found"
            case .plainHTTPRegistry: return "plain_http"
            case .tokenRequestFailed: return "token_request"
            case .digestMismatch: return "digest_mismatch"
            case .protocolViolation: return "protocol_violation"
            case .transport: return "transport"
            case .tooLarge: return "too_large"
            case .registryNotAllowed: return "not_allowed"
            case .tooManyIndexEntries: return "too_many_index_entries"
            case .copyLimitExceeded: return "copy_limit"
            }
        case is RegistryDeadlineExceeded: return "deadline"
        case is AssemblyError: return "assembly"
        default: return "other"
        }
    }

    /// The exposition text. `gauges` maps metric name (one of ``families``, which gives its HELP text) → label
    /// value → value; pass the same gauges at every scrape. A label value a gauge had before but not now reads 0 instead of keeping its last value.
    public func render(gauges: [(name: String, label: String, values: [String: Int])]) -> String {
        var text: [UInt8] = []
        gaugeLabels.withLock { seen in
            for gauge in gauges {
                let gone = seen[gauge.name, default: []].subtracting(gauge.values.keys)
                for (value, count) in gauge.values {
                    CoreMetrics.Gauge(label: gauge.name, dimensions: [(gauge.label, value)], factory: factory).record(count)
                }
                for value in gone {
                    CoreMetrics.Gauge(label: gauge.name, dimensions: [(gauge.label, value)], factory: factory).record(0)
                }
                seen[gauge.name, default: []].formUnion(gauge.values.keys)
            }
            registry.emit(into: &text)
        }
        return String(decoding: text, as: UTF8.self)
    }
}
