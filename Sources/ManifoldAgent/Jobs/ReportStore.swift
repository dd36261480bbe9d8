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

    /// Sends `report` until the coordinator acknowledges it (or says it is superseded), backing off between tries.
    /// Returns false if `giveUp` says to stop first (the file stays for the next start). A refused credential
    /// throws.
    func deliver(
        _ report: CompleteRequest, client: CoordinatorClient, logger: Logger, giveUp: @Sendable () -> Bool
    ) async throws -> Bool {
        var backoff = Backoff()
        while true {
            do {
                _ = try await client.complete(report)
                logger.info("reported job \(report.jobId) attempt epoch \(report.epoch) as \(report.outcome.rawValue)")
                remove(report)
                return true
            } catch let error as CoordinatorClientError where error.isConflict {
                logger.warning("the report for job \(report.jobId) was refused as superseded (409): \(error)")
                remove(report)
                return true
            } catch let error as CoordinatorClientError where error.status == 401 {
                throw AgentRunner.credentialRefused(error)
            } catch let error as CoordinatorClientError where !error.isRetryable {
                logger.error("the coordinator refused the report for job \(report.jobId): \(error); dropping it")
                remove(report)
                return true
            } catch {
                if giveUp() { return false }
                let delay = backoff.next()
                logger.warning("could not report job \(report.jobId) (\(error)); retrying in \(delay)")
                try? await Task.sleep(for: delay)
            }
        }
    }
}
