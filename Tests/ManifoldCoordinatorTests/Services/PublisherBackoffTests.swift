import Foundation
import Logging
import ManifoldAPI
import ManifoldStore
import ManifoldTestSupport
import Testing

@testable import ManifoldCoordinator

/// When the store cannot take a publishing outcome, the row stays due there: the publisher's own backoff is what
/// keeps it from being tried again every 50 ms.
@Suite struct PublisherBackoffTests {
    /// How many publishing runs failed at the registry so far, by the publisher's own counter (summed over codes).
    static func failedRuns(_ metrics: CoordinatorMetrics) -> Int {
        let lines = metrics.render(gauges: []).split(separator: "\n").filter {
            $0.hasPrefix("manifold_registry_errors_total{operation=\"publish\",")
        }
        return lines.compactMap { Double($0.split(separator: " ").last ?? "") }.reduce(0) { $0 + Int($1) }
    }

    @Test func aFailureTheStoreCannotRecordIsRetriedWithBackoffNotInALoop() async throws {
        // Nothing listens on the registry's port: every run fails at once, and the publisher records the failure.
        let port = try Loopback.freePort()
        let setup = try await ReportedBuilds(registry: "127.0.0.1:\(port)", repositories: ["team/app"], verified: true)
        defer { setup.stop() }
        let buildId = setup.builds[0].buildId
        // The database refuses every change of the outbox, as a briefly unwritable store would; reads still work,
        // so the row stays due.
        try await setup.store.backend.write { db in
            try db.execute(
                sql: """
                    CREATE TRIGGER outbox_unwritable BEFORE UPDATE ON outbox
                    BEGIN SELECT RAISE(ABORT, 'disk I/O error (the test made the outbox unwritable)'); END
                    """)
        }
        var logger = Logger(label: "test.publisher-backoff")
        logger.logLevel = .critical
        let metrics = CoordinatorMetrics()
        let publisher = Publisher(
            store: setup.store, registries: setup.registries, notifier: WorkNotifier(), metrics: metrics, logger: logger)
        let (runs, elapsed, recorded) = try await setup.running([publisher]) {
            // At least two runs (the first and one retry), however long a starved machine takes to get there, then
            // ten seconds more.
            let started = ContinuousClock.now
            _ = try await setup.eventually(.seconds(120)) { Self.failedRuns(metrics) >= 2 }
            try await Task.sleep(for: .seconds(10))
            let runs = Self.failedRuns(metrics)
            let elapsed = ContinuousClock.now - started
            // Writable again: the next run, after the backoff, records its failure (and the store's own backoff
            // takes over).
            try await setup.store.backend.write { db in try db.execute(sql: "DROP TRIGGER outbox_unwritable") }
            let recorded = try await setup.eventually(.seconds(90)) {
                try await setup.store.events(buildId: buildId).contains { $0.type == "list.retrying" }
            }
            return (runs, elapsed, recorded)
        }
        // With backoff the runs start at about 0, 0.5, 1.5, 3.5 and 7.5 s; a retry every 50 ms would be a hundred
        // or more in 10 s, however busy the machine. The bound grows with the time a starved machine took.
        let seconds = Double(elapsed.components.seconds)
        print("publishing runs in \(Int(seconds)) s while the store refused their outcome: \(runs)")
        #expect(runs >= 2, "the publisher did not try again after the store refused the outcome")
        #expect(
            Double(runs) <= 12 + seconds / 5,
            "\(runs) publishing runs in \(Int(seconds)) s: the publisher retried without backing off")
        #expect(recorded, "the failure was not recorded once the store could take it")
        let (state, error) = try await setup.store.backend.read { db -> (String?, String?) in
            let row = try SQLRow.fetchOne(db, sql: "SELECT state, error FROM outbox WHERE buildId = ?", arguments: [buildId])
            return (row?["state"], row?["error"])
        }
        #expect(
            state == "pending" && error?.contains("127.0.0.1:\(port)") == true,
            "\(String(describing: state)) \(String(describing: error))")
    }
}
