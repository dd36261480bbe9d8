import Foundation
import ManifoldAPI
import Synchronization

/// When each phase of a job ran (fetching the context, building, pushing), by this host's clock. The report
/// carries them with the lease's trace context, and the coordinator records them as spans of the build's trace:
/// the agent has no exporter of its own.
final class PhaseTimer: Sendable {
    private let phases = Mutex<[JobPhase]>([])

    /// Runs `body` as phase `name`; a phase that throws is recorded as failed.
    func time<T>(_ name: String, _ body: () async throws -> T) async rethrows -> T {
        let start = Date()
        do {
            let value = try await body()
            record(name, from: start, failed: false)
            return value
        } catch {
            record(name, from: start, failed: true)
            throw error
        }
    }

    func record(_ name: String, from start: Date, to end: Date = Date(), failed: Bool) {
        let phase = JobPhase(name: name, startedAt: start, endedAt: end, failed: failed ? true : nil)
        phases.withLock { $0.append(phase) }
    }

    var recorded: [JobPhase] { phases.withLock { $0 } }
}
