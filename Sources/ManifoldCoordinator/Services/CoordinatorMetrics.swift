import Prometheus
import Synchronization

/// The coordinator's Prometheus metrics, served at `/metrics`: counters of what happened, the latency of
/// assembling a manifest list, and gauges of builds, jobs and agents by state that the caller reads from the
/// store at scrape time.
///
/// Each instance owns its `PrometheusCollectorRegistry`; nothing goes through the process-wide `MetricsSystem`,
/// so coordinators that share a process (the tests start many) count separately.
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
        ("manifold_registry_errors_total", "Registry operations that failed (verification or publishing)."),
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
    /// Upper bounds, in seconds, of the assembly histogram's buckets.
    static let assemblyBuckets: [Double] = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

    private let registry: PrometheusCollectorRegistry
    private let knownCounters: [String: Counter]
    private let assemblyDuration: ValueHistogram
    /// The label values each state gauge was ever set for. Held while a scrape sets the gauges and emits, so two
    /// scrapes do not interleave.
    private let gaugeLabels = Mutex<[String: Set<String>]>([:])

    public init() {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        knownCounters = Dictionary(
            uniqueKeysWithValues: Self.counters.map { counter in
                (counter.name, registry.makeCounter(descriptor: Self.descriptor(counter.name, help: counter.help)))
            })
        assemblyDuration = registry.makeValueHistogram(
            descriptor: Self.descriptor(
                "manifold_assembly_duration_seconds", help: "Time to verify, push and read back a manifest list."),
            buckets: Self.assemblyBuckets)
    }

    /// Adds `value` (whole numbers are kept as integers) to the counter `name`. A name outside `counters` gets a
    /// counter without HELP text on first use.
    public func increment(_ name: String, by value: Double = 1) {
        assert(value >= 0, "counter \(name) cannot go down (by \(value))")
        guard value > 0 else { return }
        let counter = knownCounters[name] ?? registry.makeCounter(descriptor: Self.descriptor(name, help: ""))
        if let whole = Int64(exactly: value) {
            counter.increment(by: whole)
        } else {
            counter.increment(by: value)
        }
    }

    public func observeAssembly(seconds: Double) {
        assemblyDuration.record(seconds)
    }

    /// The exposition text. `gauges` maps metric name → label value → value; pass the same gauges at every
    /// scrape. A label value a gauge had before but not now reads 0 instead of keeping its last value.
    public func render(gauges: [(name: String, help: String, label: String, values: [String: Int])]) -> String {
        var text: [UInt8] = []
        gaugeLabels.withLock { seen in
            for gauge in gauges {
                let descriptor = Self.descriptor(gauge.name, help: gauge.help)
                let gone = seen[gauge.name, default: []].subtracting(gauge.values.keys)
                for (value, count) in gauge.values {
                    registry.makeGauge(descriptor: descriptor, labels: [(gauge.label, value)]).set(to: Double(count))
                }
                for value in gone {
                    registry.makeGauge(descriptor: descriptor, labels: [(gauge.label, value)]).set(to: 0)
                }
                seen[gauge.name, default: []].formUnion(gauge.values.keys)
            }
            registry.emit(into: &text)
        }
        return String(decoding: text, as: UTF8.self)
    }

    private static func descriptor(_ name: String, help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }
}
