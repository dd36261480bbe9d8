import CoreMetrics
import Prometheus

/// A swift-metrics `MetricsFactory` that records into one `PrometheusCollectorRegistry`, like swift-prometheus's
/// `PrometheusMetricsFactory`, and also gives each family its HELP text and its histogram buckets.
///
/// `PrometheusMetricsFactory` registers every metric with empty HELP text (the swift-metrics API carries none),
/// and the registry refuses two HELP texts for one name; so families are made here through the registry's own
/// descriptor API with the text from `help`. Removing a metric is the library factory's.
struct DescribedPrometheusFactory: MetricsFactory {
    let registry: PrometheusCollectorRegistry
    /// HELP text by metric name; a name without one gets no HELP line.
    let help: [String: String]
    /// Histogram bucket upper bounds, in seconds for timers, by metric name.
    let buckets: [String: [Double]]
    let defaultBuckets: [Double]
    private let library: PrometheusMetricsFactory

    init(registry: PrometheusCollectorRegistry, help: [String: String], buckets: [String: [Double]], defaultBuckets: [Double]) {
        self.registry = registry
        self.help = help
        self.buckets = buckets
        self.defaultBuckets = defaultBuckets
        library = PrometheusMetricsFactory(registry: registry)
    }

    private func descriptor(_ label: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: label, unitName: "", helpText: help[label] ?? "")
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        guard aggregate else { return registry.makeGauge(descriptor: descriptor(label), labels: dimensions) }
        return registry.makeValueHistogram(
            descriptor: descriptor(label), labels: dimensions, buckets: buckets[label] ?? defaultBuckets)
    }

    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        registry.makeGauge(descriptor: descriptor(label), labels: dimensions)
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        let bounds = (buckets[label] ?? defaultBuckets).map { Duration.nanoseconds(Int64(($0 * 1e9).rounded())) }
        return registry.makeDurationHistogram(descriptor: descriptor(label), labels: dimensions, buckets: bounds)
    }

    func destroyCounter(_ handler: any CounterHandler) { library.destroyCounter(handler) }
    func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {
        library.destroyFloatingPointCounter(handler)
    }
    func destroyRecorder(_ handler: any RecorderHandler) { library.destroyRecorder(handler) }
    func destroyMeter(_ handler: any MeterHandler) { library.destroyMeter(handler) }
    func destroyTimer(_ handler: any TimerHandler) { library.destroyTimer(handler) }
}
