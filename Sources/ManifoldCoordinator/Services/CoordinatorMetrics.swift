import Foundation
import Synchronization

/// Counters and a latency histogram rendered in the Prometheus text format at `/metrics`.
/// State gauges (builds and jobs by state) are read from the store at scrape time.
public final class CoordinatorMetrics: Sendable {
    private struct State {
        var counters: [String: Double] = [:]
        var assemblyBuckets: [Double: Int] = [:]
        var assemblyCount = 0
        var assemblySum = 0.0
    }
    static let buckets: [Double] = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
    private let state = Mutex(State())

    public init() {}

    public func increment(_ name: String, by value: Double = 1) {
        state.withLock { $0.counters[name, default: 0] += value }
    }

    public func observeAssembly(seconds: Double) {
        state.withLock { state in
            state.assemblyCount += 1
            state.assemblySum += seconds
            for bucket in Self.buckets where seconds <= bucket { state.assemblyBuckets[bucket, default: 0] += 1 }
        }
    }

    /// The exposition text; `gauges` maps metric name → label value → value.
    public func render(gauges: [(name: String, help: String, label: String, values: [String: Int])]) -> String {
        let snapshot = state.withLock { $0 }
        var lines: [String] = []
        let counterHelp = [
            "manifold_builds_submitted_total": "Builds accepted.",
            "manifold_held_poll_rechecks_total":
                "Held agent polls that woke (a notification that may concern them, or a retry time) and looked for work again.",
            "manifold_lease_expiries_total": "Attempts whose lease expired.",
            "manifold_registry_errors_total": "Registry operations that failed (verification or publishing).",
            "manifold_lists_published_total": "Manifest lists pushed.",
            "manifold_verifications_total": "Reported digests checked in the registry.",
            "manifold_retention_runs_total": "Retention passes completed.",
            "manifold_retention_failures_total": "Retention passes that failed (tried again at the next interval).",
            "manifold_retention_builds_pruned_total": "Finished builds whose logs and events retention removed.",
            "manifold_retention_log_bytes_deleted_total": "Log bytes removed by retention.",
            "manifold_retention_events_deleted_total": "Build events removed by retention.",
            "manifold_retention_contexts_deleted_total": "Uploaded contexts removed by retention.",
            "manifold_retention_context_bytes_deleted_total": "Context bytes removed by retention.",
        ]
        for name in counterHelp.keys.sorted() {
            lines.append("# HELP \(name) \(counterHelp[name]!)")
            lines.append("# TYPE \(name) counter")
            lines.append("\(name) \(Self.format(snapshot.counters[name] ?? 0))")
        }
        for gauge in gauges {
            lines.append("# HELP \(gauge.name) \(gauge.help)")
            lines.append("# TYPE \(gauge.name) gauge")
            for (label, value) in gauge.values.sorted(by: { $0.key < $1.key }) {
                lines.append("\(gauge.name){\(gauge.label)=\"\(label)\"} \(value)")
            }
        }
        lines.append("# HELP manifold_assembly_duration_seconds Time to verify, push and read back a manifest list.")
        lines.append("# TYPE manifold_assembly_duration_seconds histogram")
        for bucket in Self.buckets {
            lines.append(
                "manifold_assembly_duration_seconds_bucket{le=\"\(Self.format(bucket))\"} \(snapshot.assemblyBuckets[bucket] ?? 0)"
            )
        }
        lines.append("manifold_assembly_duration_seconds_bucket{le=\"+Inf\"} \(snapshot.assemblyCount)")
        lines.append("manifold_assembly_duration_seconds_sum \(Self.format(snapshot.assemblySum))")
        lines.append("manifold_assembly_duration_seconds_count \(snapshot.assemblyCount)")
        return lines.joined(separator: "\n") + "\n"
    }

    static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }
}
