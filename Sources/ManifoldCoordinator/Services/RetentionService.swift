import Foundation
import Logging
import ManifoldStore
import ServiceLifecycle

/// Deletes what retention no longer keeps: finished builds' logs and events, old attempts' logs, unused
/// contexts and stray files in the contexts directory (see ``RetentionPolicy``).
///
/// Runs once `startDelay` after start, then every `interval`; graceful shutdown ends it between two
/// transactions. Freed database pages go to SQLite's free list and are reused by later writes, so the file
/// stops growing at its high-water mark without a `VACUUM`.
///
/// Replicas on one database share the work: a pass over the database runs only on the replica that takes the
/// `retention` periodic task (``Store/claimPeriodicTask(_:interval:)``), once per interval across all of them;
/// the others sweep only their own contexts directory in that interval.
public struct RetentionService: Service {
    let store: Store
    let policy: RetentionPolicy
    let contexts: ContextDirectory
    let metrics: CoordinatorMetrics
    let interval: Duration
    let startDelay: Duration
    let logger: Logger

    public init(
        store: Store, policy: RetentionPolicy, contexts: ContextDirectory, metrics: CoordinatorMetrics,
        interval: Duration = .seconds(600), startDelay: Duration = .seconds(60), logger: Logger
    ) {
        self.store = store
        self.policy = policy
        self.contexts = contexts
        self.metrics = metrics
        self.interval = interval
        self.startDelay = startDelay
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            try? await Task.sleep(for: startDelay)
            while !Task.isCancelled {
                await runOnce()
                try? await Task.sleep(for: interval)
            }
        }
    }

    /// A pass runs when none ran in the last 90% of the interval: a replica whose wait ends a moment before the
    /// interval is over by the database's clock does not skip a whole interval.
    var turnGap: TimeInterval {
        let seconds = Double(interval.components.seconds) + Double(interval.components.attoseconds) / 1e18
        return seconds * 0.9
    }

    /// One pass (over the database when this replica takes the turn, else over its own contexts directory only);
    /// failures are logged and counted, and the next pass tries again.
    func runOnce() async {
        let started = ContinuousClock.now
        do {
            guard try await store.claimPeriodicTask(.retention, interval: turnGap) else {
                let local = try await store.sweepLocalContexts(policy, contexts: contexts)
                if local.strayFilesDeleted > 0 {
                    logger.info(
                        "retention removed stray context files", metadata: ["strayFiles": "\(local.strayFilesDeleted)"])
                }
                return
            }
            let report = try await store.applyRetention(policy, contexts: contexts)
            metrics.increment("manifold_retention_runs_total")
            metrics.increment("manifold_retention_builds_pruned_total", by: Double(report.buildsPruned))
            metrics.increment("manifold_retention_log_bytes_deleted_total", by: Double(report.logBytesDeleted))
            metrics.increment("manifold_retention_events_deleted_total", by: Double(report.eventsDeleted))
            metrics.increment("manifold_retention_contexts_deleted_total", by: Double(report.contextsDeleted))
            metrics.increment("manifold_retention_context_bytes_deleted_total", by: Double(report.contextBytesDeleted))
            guard !report.isEmpty else { return }
            logger.info(
                "retention removed old data",
                metadata: [
                    "builds": "\(report.buildsPruned)", "attemptLogs": "\(report.attemptLogsPruned)",
                    "logBytes": "\(report.logBytesDeleted)", "events": "\(report.eventsDeleted)",
                    "contexts": "\(report.contextsDeleted)", "contextBytes": "\(report.contextBytesDeleted)",
                    "strayFiles": "\(report.strayFilesDeleted)", "duration": "\(ContinuousClock.now - started)",
                ])
        } catch is CancellationError {
            return
        } catch {
            metrics.increment("manifold_retention_failures_total")
            logger.error("retention failed; it runs again later", metadata: ["error": "\(error)"])
        }
    }
}
