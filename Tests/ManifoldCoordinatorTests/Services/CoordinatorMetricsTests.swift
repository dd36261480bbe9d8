import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldRegistry
import ManifoldTestSupport
import Testing
import Yams

@testable import ManifoldCoordinator

/// What `/metrics` shows, read back with the Prometheus project's own text-format parser: every known counter from
/// the start, cumulative histogram buckets, gauges by label, bounded error codes, per-route request counts of a real
/// coordinator serving real requests, and one coordinator's counts only.
@Suite struct CoordinatorMetricsTests {
    static let histogram = "manifold_assembly_duration_seconds"

    @Test func aFreshCoordinatorShowsEveryCounterAndAnEmptyHistogram() throws {
        let exposition = try PrometheusExposition(parsing: CoordinatorMetrics().render(gauges: []))
        for counter in CoordinatorMetrics.counters {
            #expect(exposition.family(counter.name)?.help == counter.help)
            #expect(exposition.family(counter.name)?.type == "counter")
            #expect(exposition.value(counter.name) == 0, "\(counter.name)")
        }
        #expect(exposition.family(Self.histogram)?.help == "Time to verify, push and read back a manifest list.")
        #expect(exposition.family(Self.histogram)?.type == "histogram")
        #expect(exposition.buckets(Self.histogram).map(\.count) == Array(repeating: 0, count: 11))
        #expect(exposition.value("\(Self.histogram)_sum") == 0)
        #expect(exposition.value("\(Self.histogram)_count") == 0)
        #expect(exposition.family("manifold_held_polls")?.type == "gauge")
        #expect(exposition.value("manifold_held_polls") == 0)
    }

    @Test func countersHistogramAndGaugesReadBackAsRecorded() throws {
        let metrics = CoordinatorMetrics()
        metrics.increment("manifold_builds_submitted_total")
        metrics.increment("manifold_builds_submitted_total")
        metrics.increment("manifold_retention_log_bytes_deleted_total", by: 1_400)
        metrics.increment("manifold_lease_expiries_total", by: 0)
        for seconds in [0.03, 0.2, 1, 45, 90] { metrics.observeAssembly(seconds: seconds) }

        let text = metrics.render(gauges: [
            ("manifold_builds", "state", ["queued": 2, "partially-published": 1]),
            ("manifold_jobs", "state", [:]),
        ])
        let exposition = try PrometheusExposition(parsing: text)
        #expect(exposition.value("manifold_builds_submitted_total") == 2)
        // Whole amounts stay integers in the text, as the retention tests and dashboards read them.
        #expect(text.contains("\nmanifold_builds_submitted_total 2\n"))
        #expect(exposition.value("manifold_retention_log_bytes_deleted_total") == 1_400)
        #expect(exposition.value("manifold_lease_expiries_total") == 0)

        let buckets = exposition.buckets(Self.histogram)
        #expect(buckets.map(\.bound) == CoordinatorMetrics.assemblyBuckets + [.infinity])
        // Cumulative: each bucket counts every observation at or below its bound.
        #expect(buckets.map(\.count) == [1, 1, 2, 2, 3, 3, 3, 3, 3, 4, 5])
        #expect(exposition.value("\(Self.histogram)_sum") == 136.23)
        #expect(exposition.value("\(Self.histogram)_count") == 5)

        #expect(exposition.family("manifold_builds")?.help == "Builds by state.")
        #expect(exposition.family("manifold_builds")?.type == "gauge")
        #expect(exposition.value("manifold_builds", ["state": "queued"]) == 2)
        #expect(exposition.value("manifold_builds", ["state": "partially-published"]) == 1)
        #expect(exposition.samples("manifold_builds").count == 2)

        // A state that emptied reads 0 rather than its last count.
        let later = try PrometheusExposition(parsing: metrics.render(gauges: [("manifold_builds", "state", ["running": 1])]))
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
        first.heldPolls.increment()
        second.increment("manifold_lists_published_total")

        let one = try PrometheusExposition(parsing: first.render(gauges: [("manifold_agents", "state", ["active": 4])]))
        let two = try PrometheusExposition(parsing: second.render(gauges: []))
        #expect(one.value("manifold_lists_published_total") == 3)
        #expect(two.value("manifold_lists_published_total") == 1)
        #expect(one.value("\(Self.histogram)_count") == 1)
        #expect(two.value("\(Self.histogram)_count") == 0)
        #expect(one.value("manifold_held_polls") == 1)
        #expect(two.value("manifold_held_polls") == 0)
        #expect(one.value("manifold_agents", ["state": "active"]) == 4)
        #expect(two.family("manifold_agents") == nil)
    }

    /// The `code` label is the registry's code only when the OCI specification defines it; anything else a registry
    /// or the network does falls into a fixed set, so no registry can grow the label's values.
    @Test func registryErrorsAreCountedByOperationAndABoundedCode() throws {
        let metrics = CoordinatorMetrics()
        let url = "http://127.0.0.1:1/v2/team/app/manifests/1.0"
        let errors: [(operation: String, error: any Error)] = [
            (
                "verify",
                RegistryError.notFound(kind: "manifest", reference: "team/app:1.0", errors: [.init(code: "MANIFEST_UNKNOWN")])
            ),
            ("verify", RegistryError.notFound(kind: "manifest", reference: "team/app:1.0", errors: [])),
            ("publish", RegistryError.unexpectedStatus(operation: "push", url: url, status: 503, errors: [], bodySummary: "")),
            (
                "publish",
                RegistryError.unexpectedStatus(
                    operation: "push", url: url, status: 418, errors: [.init(code: "TEAPOT_\(UUID().uuidString)")],
                    bodySummary: "")
            ),
            ("publish", RegistryDeadlineExceeded(limit: .seconds(5), registries: ["127.0.0.1:1"])),
            ("publish", CancellationError()),
        ]
        for (operation, error) in errors { metrics.countRegistryError(operation: operation, error) }

        let exposition = try PrometheusExposition(parsing: metrics.render(gauges: []))
        let name = "manifold_registry_errors_total"
        #expect(exposition.family(name)?.type == "counter")
        #expect(exposition.value(name, ["operation": "verify", "code": "MANIFEST_UNKNOWN"]) == 1)
        #expect(exposition.value(name, ["operation": "verify", "code": "not_found"]) == 1)
        #expect(exposition.value(name, ["operation": "publish", "code": "http_5xx"]) == 1)
        #expect(exposition.value(name, ["operation": "publish", "code": "http_4xx"]) == 1)
        #expect(exposition.value(name, ["operation": "publish", "code": "deadline"]) == 1)
        #expect(exposition.value(name, ["operation": "publish", "code": "other"]) == 1)
        #expect(exposition.samples(name).count == errors.count)
    }

    /// A real coordinator serving real requests (a build verified and published in a real registry), scraped over
    /// HTTPS with a token, next to a second coordinator in the same process that holds a poll and queues a job.
    @Test func aServingCoordinatorIsScrapedWithRouteTemplatesLatenciesAndItsOwnCounts() async throws {
        let registry = try TestRegistry.start(.http)
        defer { registry.stop() }
        let first = try await CoordinatorFixture.start(registry: registry)
        let second = try await CoordinatorFixture.start { $0.pollTimeoutSeconds = 120 }

        // First: one build, built by one agent, verified and published.
        let submitter = try await first.token(.submitter)
        let agent = try await first.joinAgent("linux", platforms: ["linux/amd64"])
        let build = try await first.submit(submitter, image: "\(registry.host)/metrics/app", platforms: ["linux/amd64"])
        let lease = try #require(try await first.poll(agent.secret, platforms: ["linux/amd64"]).decode(PollResponse.self).lease)
        let (reference, digest) = try await PublishingTests.pushImage(for: lease, text: "metrics")
        #expect(
            try await PublishingTests.complete(first, agent: agent.secret, lease: lease, reference: reference, digest: digest)
                == 200)
        _ = try await first.waitForBuild(build.id, token: submitter) { $0.state == .published }
        #expect(try await first.call("GET", "/api/v1/builds", token: "not-a-token").status == 401)
        // The publisher records its histograms right after the store took the outcome, and a request is counted once
        // its answer is written: scrape until both show.
        let refused = ["route": "/api/v1/builds", "method": "GET", "status": "401"]
        let scraped = try await Self.scrape(first, token: submitter) {
            $0.value("manifold_publishing_duration_seconds_count", ["outcome": "published"]) == 1
                && $0.value("manifold_http_requests_total", refused) == 1
        }

        let requests = "manifold_http_requests_total"
        let durations = "manifold_http_request_duration_seconds"
        #expect(scraped.family(requests)?.type == "counter")
        #expect(scraped.family(durations)?.type == "histogram")
        let poll = ["route": "/api/v1/agent/poll", "method": "POST", "status": "200"]
        #expect(scraped.value(requests, poll) == 1)
        #expect(scraped.value("\(durations)_count", poll) == 1)
        #expect(scraped.buckets(durations, poll).last?.count == 1)
        let buildRead = ["route": "/api/v1/builds/{id}", "method": "GET", "status": "200"]
        let reads = try #require(scraped.value(requests, buildRead))
        #expect(reads >= 1)
        #expect(scraped.value("\(durations)_count", buildRead) == reads)
        #expect(scraped.value("\(durations)_count", refused) == 1)
        #expect(scraped.value(requests, ["route": "/api/v1/builds", "method": "POST", "status": "201"]) == 1)
        // Route templates only: no label carries an ID from a path.
        for sample in scraped.samples where sample.name.hasPrefix("manifold_http_") {
            let route = try #require(sample.labels["route"])
            #expect(!route.contains(build.id) && !route.contains(lease.jobId) && !route.contains(agent.id), "\(route)")
        }

        #expect(scraped.value("manifold_verification_duration_seconds_count", ["outcome": "verified"]) == 1)
        #expect(scraped.value("\(Self.histogram)_count") == 1)
        #expect(scraped.value("manifold_lists_published_total") == 1)
        #expect(scraped.value("manifold_builds_submitted_total") == 1)
        for kind in ["read", "write"] {
            #expect((scraped.value("manifold_store_transaction_duration_seconds_count", ["kind": kind]) ?? 0) > 0, "\(kind)")
        }
        #expect(scraped.value("manifold_agents", ["state": "active"]) == 1)
        #expect(scraped.value("manifold_builds", ["state": "published"]) == 1)
        #expect(scraped.samples("manifold_queued_jobs").allSatisfy { $0.value == 0 })
        // A later scrape counts the earlier ones under their own route (each once its answer is written).
        _ = try await Self.scrape(first, token: submitter) {
            ($0.value(requests, ["route": "/metrics", "method": "GET", "status": "200"]) ?? 0) >= 1
        }

        // Second: a job no agent can take waits in the queue, and an agent's poll is held.
        let secondSubmitter = try await second.token(.submitter)
        let waiter = try await second.joinAgent("waiter", platforms: ["linux/s390x"])
        _ = try await second.submit(secondSubmitter, image: "127.0.0.1:1/queued/app", platforms: ["linux/ppc64le"])
        async let held = second.poll(waiter.secret, platforms: ["linux/s390x"], timeout: .seconds(180))
        let holding = try await Self.scrape(second, token: secondSubmitter) { $0.value("manifold_held_polls") == 1 }
        #expect(holding.value("manifold_queued_jobs", ["platform": "linux/ppc64le"]) == 1)
        #expect(holding.value("manifold_builds_submitted_total") == 1)
        _ = try await second.submit(secondSubmitter, image: "127.0.0.1:1/woken/app", platforms: ["linux/s390x"])
        #expect(try await held.decode(PollResponse.self).lease != nil)
        // The poll is counted once its answer is written, which the client may see first.
        let released = try await Self.scrape(second, token: secondSubmitter) { $0.value(requests, poll) == 1 }
        #expect(released.value("manifold_held_polls") == 0)
        #expect(released.value("manifold_builds_submitted_total") == 2)
        #expect(released.value(requests, ["route": "/api/v1/builds", "method": "POST", "status": "201"]) == 2)
        #expect(released.samples("manifold_publishing_duration_seconds_count").isEmpty)
        #expect(released.value("\(Self.histogram)_count") == 0)

        // The first coordinator's counts did not move with the second's requests.
        let firstAgain = try PrometheusExposition(parsing: try await Self.metricsText(first, token: submitter))
        #expect(firstAgain.value("manifold_builds_submitted_total") == 1)
        #expect(firstAgain.value(requests, ["route": "/api/v1/builds", "method": "POST", "status": "201"]) == 1)
        #expect(firstAgain.value("manifold_held_polls") == 0)
        #expect(firstAgain.value("manifold_queued_jobs", ["platform": "linux/ppc64le"]) == nil)
        await second.stop()
        await first.stop()
    }

    /// coordinator/README.md names every family; the sample dashboard queries only documented names, and the sample
    /// scrape configuration reads its token from a file and checks the coordinator's certificate with its CA.
    @Test func theDocumentationDashboardAndScrapeConfigurationAgreeWithTheMetrics() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        let readme = try String(contentsOf: root.appendingPathComponent("coordinator/README.md"), encoding: .utf8)
        let documented = Set(CoordinatorMetrics.counters.map(\.name) + CoordinatorMetrics.families.map(\.name))
        for name in documented { #expect(readme.contains("`\(name)`"), "\(name) is not in coordinator/README.md") }
        for family in CoordinatorMetrics.families {
            for label in family.labels { #expect(readme.contains("`\(label)`"), "label \(label) of \(family.name)") }
        }

        let observability = root.appendingPathComponent("deploy/observability")
        let dashboard = try JSONSerialization.jsonObject(
            with: Data(contentsOf: observability.appendingPathComponent("grafana-dashboard.json")))
        let expressions = Self.values(of: "expr", in: dashboard)
        #expect(expressions.count >= 8)
        let pattern = /manifold_[a-z0-9_]+/
        var queried = Set<String>()
        for expression in expressions {
            let names = expression.matches(of: pattern).map { String($0.output) }
            #expect(!names.isEmpty, "\(expression) queries no Manifold metric")
            for name in names {
                let family =
                    ["_bucket", "_sum", "_count"].first { name.hasSuffix($0) }.map { String(name.dropLast($0.count)) } ?? name
                #expect(documented.contains(family), "the dashboard queries \(name), which is not a documented metric")
                queried.insert(family)
            }
        }
        for name in [
            "manifold_http_requests_total", "manifold_http_request_duration_seconds", "manifold_held_polls",
            "manifold_queued_jobs", "manifold_verification_duration_seconds", "manifold_publishing_duration_seconds",
            "manifold_registry_errors_total", "manifold_store_transaction_duration_seconds", "manifold_agents",
            "manifold_lease_expiries_total",
        ] {
            #expect(queried.contains(name), "the dashboard has no panel on \(name)")
        }

        let scrape = try #require(
            try Yams.load(yaml: String(contentsOf: observability.appendingPathComponent("prometheus.yml"), encoding: .utf8))
                as? [String: Any])
        let job = try #require((scrape["scrape_configs"] as? [[String: Any]])?.first)
        #expect(job["scheme"] as? String == "https")
        #expect(job["metrics_path"] as? String == "/metrics")
        let authorization = try #require(job["authorization"] as? [String: Any])
        #expect(authorization["credentials_file"] is String)
        #expect(authorization["credentials"] == nil)
        #expect((job["tls_config"] as? [String: Any])?["ca_file"] is String)
    }

    /// Every string stored under `key` anywhere in a JSON document.
    static func values(of key: String, in json: Any) -> [String] {
        if let object = json as? [String: Any] {
            return object.flatMap { entry in
                (entry.key == key ? [entry.value as? String].compactMap { $0 } : []) + values(of: key, in: entry.value)
            }
        }
        if let array = json as? [Any] { return array.flatMap { values(of: key, in: $0) } }
        return []
    }

    static func metricsText(_ fixture: CoordinatorFixture, token: String) async throws -> String {
        let reply = try await fixture.call("GET", "/metrics", token: token)
        guard reply.status == 200 else { throw TestEnvironmentError("GET /metrics answered \(reply.status)") }
        return String(decoding: reply.body, as: UTF8.self)
    }

    /// Scrapes until `condition` holds (60 s at most, far beyond what the coordinator needs).
    static func scrape(
        _ fixture: CoordinatorFixture, token: String, until condition: (PrometheusExposition) -> Bool
    ) async throws -> PrometheusExposition {
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            let exposition = try PrometheusExposition(parsing: try await metricsText(fixture, token: token))
            if condition(exposition) { return exposition }
            guard ContinuousClock.now < deadline else { throw TestEnvironmentError("the scrape never showed what was awaited") }
            try await Task.sleep(for: .milliseconds(200))
        }
    }
}
