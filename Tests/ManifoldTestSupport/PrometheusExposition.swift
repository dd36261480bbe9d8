import Foundation

/// A `/metrics` answer read by the Prometheus project's own text-format parser (Debian's
/// `python3-prometheus-client`, `prometheus_client.parser.text_string_to_metric_families`), run as a subprocess:
/// a line it cannot parse fails the test instead of being read leniently by a parser of our own.
public struct PrometheusExposition: Sendable {
    public struct Sample: Sendable, Equatable {
        public var name: String
        public var labels: [String: String]
        public var value: Double
    }

    public struct Family: Sendable {
        /// The family's name as the parser gives it: a counter's without its `_total` suffix.
        public var name: String
        public var type: String
        public var help: String
        public var samples: [Sample]
    }

    public let families: [Family]
    public var samples: [Sample] { families.flatMap(\.samples) }

    /// The interpreter Debian's package installs into (a python3 earlier on PATH, e.g. pyenv's, would not see it).
    static let python = "/usr/bin/python3"

    static let script = """
        import json, sys
        from prometheus_client.parser import text_string_to_metric_families
        families = []
        for family in text_string_to_metric_families(sys.stdin.read()):
            families.append({
                "name": family.name, "type": family.type, "help": family.documentation,
                "samples": [{"name": s.name, "labels": s.labels, "value": repr(float(s.value))} for s in family.samples],
            })
        json.dump(families, sys.stdout)
        """

    public init(parsing text: String) throws {
        guard FileManager.default.isExecutableFile(atPath: Self.python) else {
            throw TestEnvironmentError(
                "\(Self.python) is missing: install Debian's python3 and python3-prometheus-client (deploy/testenv/install-deps.sh)"
            )
        }
        let result = try runCommand(Self.python, ["-c", Self.script], input: Data(text.utf8), timeout: 60)
        guard result.status == 0 else {
            if result.stderr.contains("No module named 'prometheus_client'") {
                throw TestEnvironmentError(
                    "python3-prometheus-client is not installed (deploy/testenv/install-deps.sh installs it)")
            }
            throw TestEnvironmentError("the Prometheus parser refused the exposition: \(result.stderr)\n\(text)")
        }
        struct RawFamily: Decodable {
            var name: String
            var type: String
            var help: String
            var samples: [RawSample]
        }
        struct RawSample: Decodable {
            var name: String
            var labels: [String: String]
            var value: String
        }
        let raw = try JSONDecoder().decode([RawFamily].self, from: Data(result.stdout.utf8))
        families = try raw.map { family in
            Family(
                name: family.name, type: family.type, help: family.help,
                samples: try family.samples.map { sample in
                    guard let value = Double(sample.value) else {
                        throw TestEnvironmentError("the parser gave \(sample.name) the value \(sample.value)")
                    }
                    return Sample(name: sample.name, labels: sample.labels, value: value)
                })
        }
    }

    /// The family a metric name belongs to: `manifold_x_total` finds the counter family `manifold_x`.
    public func family(_ name: String) -> Family? {
        families.first { $0.name == name || ($0.type == "counter" && "\($0.name)_total" == name) }
    }

    /// The value of the one sample with exactly this name and these labels; nil when there is none or several.
    public func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        let matching = samples.filter { $0.name == name && $0.labels == labels }
        return matching.count == 1 ? matching[0].value : nil
    }

    /// The samples named `name` whose labels include every pair of `labels`.
    public func samples(_ name: String, matching labels: [String: String] = [:]) -> [Sample] {
        samples.filter { sample in sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value } }
    }

    /// A histogram's buckets in the order emitted, with their `le` bounds read as numbers.
    public func buckets(_ histogram: String, _ labels: [String: String] = [:]) -> [(bound: Double, count: Double)] {
        samples("\(histogram)_bucket", matching: labels).compactMap { sample in
            guard let le = sample.labels["le"] else { return nil }
            let bound = le == "+Inf" ? Double.infinity : Double(le)
            return bound.map { ($0, sample.value) }
        }
    }
}
