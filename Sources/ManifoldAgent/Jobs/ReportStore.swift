import Foundation
import Logging
import ManifoldAPI
import ManifoldClient

/// Result reports, written to `STATE/reports` before they are sent and removed once the coordinator has
/// acknowledged them — so a report survives a network outage, a coordinator restart and an agent restart.
struct ReportStore: Sendable {
    let state: StateDirectory

    func file(for report: CompleteRequest) -> URL {
        state.reportsDirectory.appendingPathComponent("\(report.jobId)-\(report.epoch).json")
    }

    /// Writes the report durably: the file is synced, renamed into `STATE/reports`, and the directory synced.
    func save(_ report: CompleteRequest) throws {
        try state.writePrivate(try APICoding.encoder().encode(report), to: file(for: report))
    }

    func pending() -> [CompleteRequest] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: state.reportsDirectory.path)) ?? []
        return files.filter { $0.hasSuffix(".json") && !$0.hasPrefix(".") }.sorted().compactMap { name in
            FileManager.default.contents(atPath: state.reportsDirectory.appendingPathComponent(name).path).flatMap {
                try? APICoding.decoder().decode(CompleteRequest.self, from: $0)
            }
        }
    }

    func remove(_ report: CompleteRequest) {
        try? FileManager.default.removeItem(at: file(for: report))
    }

    /// How a delivery ended.
    enum Delivery: Sendable, Equatable {
        /// The coordinator recorded the report.
        case acknowledged
        /// The coordinator refused it for good (409 superseded, or another non-retryable answer); dropped.
        case dropped
        /// 401: the coordinator no longer accepts this agent's credential; dropped, since its lease went with it.
        case credentialRefused(CoordinatorClientError)
        /// `giveUp` said to stop first; the file stays for the next start.
        case postponed
    }

    /// Sends `report` until the coordinator acknowledges or refuses it, backing off between tries (at most
    /// `backoffCap` apart), or until `giveUp` says to stop.
    func deliver(
        _ report: CompleteRequest, client: CoordinatorClient, logger: Logger, backoffCap: Duration = .seconds(30),
        giveUp: @Sendable () -> Bool
    ) async -> Delivery {
        var backoff = Backoff(initial: .milliseconds(500), cap: max(.seconds(1), backoffCap))
        while true {
            do {
                _ = try await client.complete(report)
                logger.info("reported job \(report.jobId) attempt epoch \(report.epoch) as \(report.outcome.rawValue)")
                remove(report)
                return .acknowledged
            } catch let error as CoordinatorClientError where error.isConflict {
                logger.warning("the report for job \(report.jobId) was refused as superseded (409): \(error)")
                remove(report)
                return .dropped
            } catch let error as CoordinatorClientError where error.status == 401 {
                logger.error(
                    "the report for job \(report.jobId) was refused with 401: the coordinator no longer accepts this agent's credential; dropping it"
                )
                remove(report)
                return .credentialRefused(error)
            } catch let error as CoordinatorClientError where !error.isWorthRetryingWithinLease {
                logger.error("the coordinator refused the report for job \(report.jobId): \(error); dropping it")
                remove(report)
                return .dropped
            } catch {
                if giveUp() { return .postponed }
                let delay = backoff.next()
                logger.warning("could not report job \(report.jobId) (\(error)); retrying in \(delay)")
                try? await Task.sleep(for: delay)
                if giveUp() { return .postponed }
            }
        }
    }
}
