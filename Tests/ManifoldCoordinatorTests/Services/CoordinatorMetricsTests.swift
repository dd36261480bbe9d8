import Foundation
import Testing

@testable import ManifoldCoordinator

/// What `/metrics` shows, read back with a parser of the Prometheus text format: every known counter from the start,
/// the assembly histogram's cumulative buckets, the state gauges by label, and one coordinator's counts only.
@Suite struct CoordinatorMetricsTests {
    @Test func aFreshCoordinatorShowsEveryCounterAndAnEmptyHistogram() throws {
        let exposition = try Exposition(CoordinatorMetrics().render(gauges: []))
        for counter in CoordinatorMetrics.counters {
            #expect(exposition.help[counter.name] == counter.help)
            #expect(exposition.type[counter.name] == "counter")
            #expect(exposition.value(counter.name) == 0, "\(counter.name)")
        }
        let histogram = "manifold_assembly_duration_seconds"
        #expect(exposition.help[histogram] == "Time to verify, push and read back a manifest list.")
        #expect(exposition.type[histogram] == "histogram")
        #expect(exposition.buckets(histogram).map(\.count) == Array(repeating: 0, count: 11))
        #expect(exposition.value("\(histogram)_sum") == 0)
        #expect(exposition.value("\(histogram)_count") == 0)
    }

    @Test func countersHistogramAndGaugesReadBackAsRecorded() throws {
        let metrics = CoordinatorMetrics()
        metrics.increment("manifold_builds_submitted_total")
        metrics.increment("manifold_builds_submitted_total")
        metrics.increment("manifold_retention_log_bytes_deleted_total", by: 1_400)
        metrics.increment("manifold_lease_expiries_total", by: 0)
        for seconds in [0.03, 0.2, 1, 45, 90] { metrics.observeAssembly(seconds: seconds) }

        let text = metrics.render(gauges: [
            ("manifold_builds", "Builds by state.", "state", ["queued": 2, "partially-published": 1]),
            ("manifold_jobs", "Platform jobs by state.", "state", [:]),
        ])
        let exposition = try Exposition(text)
        #expect(exposition.value("manifold_builds_submitted_total") == 2)
        // Whole amounts stay integers in the text, as the retention tests and dashboards read them.
        #expect(text.contains("\nmanifold_builds_submitted_total 2\n"))
        #expect(exposition.value("manifold_retention_log_bytes_deleted_total") == 1_400)
        #expect(exposition.value("manifold_lease_expiries_total") == 0)

        let histogram = "manifold_assembly_duration_seconds"
        let buckets = exposition.buckets(histogram)
        #expect(buckets.map(\.bound) == CoordinatorMetrics.assemblyBuckets + [.infinity])
        // Cumulative: each bucket counts every observation at or below its bound.
        #expect(buckets.map(\.count) == [1, 1, 2, 2, 3, 3, 3, 3, 3, 4, 5])
        #expect(exposition.value("\(histogram)_sum") == 136.23)
        #expect(exposition.value("\(histogram)_count") == 5)

        #expect(exposition.help["manifold_builds"] == "Builds by state.")
        #expect(exposition.type["manifold_builds"] == "gauge")
        #expect(exposition.value("manifold_builds", ["state": "queued"]) == 2)
        #expect(exposition.value("manifold_builds", ["state": "partially-published"]) == 1)
        #expect(exposition.samples.filter { $0.name == "manifold_builds" }.count == 2)

        // A state that emptied reads 0 rather than its last count.
        let later = try Exposition(
            metrics.render(gauges: [("manifold_builds", "Builds by state.", "state", ["running": 1])]))
        #expect(later.value("manifold_builds", ["state": "queued"]) == 0)
        #expect(later.value("manifold_builds", ["state": "partially-published"]) == 0)
        #expect(later.value("manifold_builds", ["state": "running"]) == 1)
        #expect(later.value("manifold_builds_submitted_total") == 2)
    }

    @Test func twoCoordinatorsCountSeparately() throws {
        let first = CoordinatorMetrics()
        let second = CoordinatorMetrics()
        first.increment("manifold_lists_published_total", by: 3)
        first.observeAssembly(seconds: 2)
        second.increment("manifold_lists_published_total")

        let one = try Exposition(first.render(gauges: [("manifold_agents", "Agents by state.", "state", ["active": 4])]))
        let two = try Exposition(second.render(gauges: []))
        #expect(one.value("manifold_lists_published_total") == 3)
        #expect(two.value("manifold_lists_published_total") == 1)
        #expect(one.value("manifold_assembly_duration_seconds_count") == 1)
        #expect(two.value("manifold_assembly_duration_seconds_count") == 0)
        #expect(one.value("manifold_agents", ["state": "active"]) == 4)
        #expect(two.type["manifold_agents"] == nil)
    }
}

/// The Prometheus text exposition format (version 0.0.4), parsed strictly enough that a malformed line, a
/// repeated HELP or TYPE, or a sample before its family's TYPE fails the test.
private struct Exposition {
    struct Sample: Equatable {
        var name: String
        var labels: [String: String]
        var value: Double
    }
    struct Malformed: Error, CustomStringConvertible {
        var line: String
        var description: String { "not a line of the Prometheus text format: \(line)" }
    }

    var help: [String: String] = [:]
    var type: [String: String] = [:]
    var samples: [Sample] = []

    init(_ text: String) throws {
        guard text.hasSuffix("\n") else { throw Malformed(line: "(no final line feed)") }
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
            let line = String(line)
            if line.hasPrefix("# HELP ") || line.hasPrefix("# TYPE ") {
                let parts = line.dropFirst(7).split(separator: " ", maxSplits: 1).map(String.init)
                guard parts.count == 2 else { throw Malformed(line: line) }
                if line.hasPrefix("# HELP ") {
                    guard help.updateValue(parts[1], forKey: parts[0]) == nil else { throw Malformed(line: line) }
                } else {
                    guard type.updateValue(parts[1], forKey: parts[0]) == nil else { throw Malformed(line: line) }
                }
                continue
            }
            let sample = try Self.sample(line)
            let family =
                ["_bucket", "_sum", "_count"].compactMap { suffix -> String? in
                    guard sample.name.hasSuffix(suffix) else { return nil }
                    let base = String(sample.name.dropLast(suffix.count))
                    return type[base] == "histogram" ? base : nil
                }.first ?? sample.name
            guard type[family] != nil else { throw Malformed(line: line) }
            samples.append(sample)
        }
    }

    private static func sample(_ line: String) throws -> Sample {
        guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
            throw Malformed(line: line)
        }
        let series = line[..<space]
        guard let brace = series.firstIndex(of: "{") else { return Sample(name: String(series), labels: [:], value: value) }
        guard series.hasSuffix("}") else { throw Malformed(line: line) }
        var labels: [String: String] = [:]
        for pair in series[series.index(after: brace)..<series.index(before: series.endIndex)].split(separator: ",") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, parts[1].count >= 2, parts[1].hasPrefix("\""), parts[1].hasSuffix("\"") else {
                throw Malformed(line: line)
            }
            labels[String(parts[0])] = String(parts[1].dropFirst().dropLast())
        }
        return Sample(name: String(series[..<brace]), labels: labels, value: value)
    }

    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        let matching = samples.filter { $0.name == name && $0.labels == labels }
        return matching.count == 1 ? matching[0].value : nil
    }

    /// A histogram's buckets in the order emitted, with their `le` bounds read as numbers.
    func buckets(_ histogram: String) -> [(bound: Double, count: Double)] {
        samples.filter { $0.name == "\(histogram)_bucket" }.compactMap { sample in
            guard let le = sample.labels["le"] else { return nil }
            let bound = le == "+Inf" ? Double.infinity : Double(le)
            return bound.map { ($0, sample.value) }
        }
    }
}
