import Foundation
import Logging
import ManifoldStore
import ManifoldStoreTestSupport
import ManifoldTestSupport
import Testing

@testable import ManifoldCoordinator

/// Wake-ups between two replicas over a real PostgreSQL server's LISTEN/NOTIFY.
@Suite struct PostgresWakeupsTests {
    @Test func workSubmittedOnOneReplicaWakesTheOtherAndALostListenerRescans() async throws {
        let configuration = try await TestPostgres.shared.freshSchema(poolSize: 2)
        let logger = Logger(label: "test")
        let first = try await PostgresBackend.connect(configuration, logger: logger)
        let second = try await PostgresBackend.connect(configuration, logger: logger)
        defer {
            Task {
                await first.close()
                await second.close()
            }
        }
        let a = WorkNotifier()
        let b = WorkNotifier()
        let services = [
            ReplicaWakeups(
                notifier: a, channel: PostgresWakeups(backend: first), replica: "a", safetyInterval: .seconds(3600),
                logger: logger),
            ReplicaWakeups(
                notifier: b, channel: PostgresWakeups(backend: second), replica: "b", safetyInterval: .seconds(3600),
                logger: logger),
        ]
        try await withThrowingTaskGroup(of: Void.self) { group in
            for service in services { group.addTask { try await service.run() } }
            // Both listen once their first re-scan happened.
            let listening = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < listening {
                if a.generation(of: .publication) > 0 && b.generation(of: .publication) > 0 { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            let before = b.generation(of: .work)
            a.notify(.work)
            await b.wait(for: .work, after: before, until: .now + .seconds(5))
            #expect(b.generation(of: .work) != before, "b never heard of the work a was told about")

            // The server drops b's listening connection: b reconnects and wakes everything to re-scan.
            let rescan = b.generation(of: .verification)
            try await first.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()")
            await b.wait(for: .verification, after: rescan, until: .now + .seconds(10))
            #expect(b.generation(of: .verification) != rescan, "b did not re-scan after its listener was cut")
            let again = b.generation(of: .work)
            a.notify(.work)
            await b.wait(for: .work, after: again, until: .now + .seconds(10))
            #expect(b.generation(of: .work) != again, "b no longer hears a after reconnecting")
            group.cancelAll()
        }
    }
}
