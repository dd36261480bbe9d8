import Foundation
import Logging
import ManifoldAPI
import ManifoldClient

/// Runs one leased job from context to acknowledged report: work directory, log spool and uploader, the lease
/// keeper's heartbeats, the builder, the stop paths (cancel, lost or expired lease, refused credential, timeout,
/// shutdown), the report and the last of the log.
///
/// The lease is kept alive until the coordinator has acknowledged the report, so a finished build is never
/// thrown away because its report or its log took long. The report goes before the rest of the log; the log
/// flush after it is bounded by ``logFlushLimit``.
struct JobRunner: Sendable {
    var client: CoordinatorClient
    var settings: AgentSettings
    var credential: AgentCredential
    var builder: any Builder
    var workRoot: URL
    var shutdown: ShutdownState
    var reports: ReportStore
    var logger: Logger

    /// How long the log still on this host may take to reach the coordinator once the report is acknowledged.
    static let logFlushLimit = Duration.seconds(60)

    /// How a job ended for the agent.
    enum Ending: Sendable, Equatable {
        /// The report was acknowledged (or refused for good, and dropped).
        case reported
        /// The report was saved but not delivered before shutdown; the next start delivers it.
        case reportKept
        /// No report: the lease is gone (409, 401), so the coordinator has moved on.
        case notReported
    }

    /// Runs the job; `grantedAt` is when the poll answer carrying `lease` arrived.
    func run(_ lease: Lease, grantedAt: ContinuousClock.Instant = .now) async -> Ending {
        let jobDirectory = workRoot.appendingPathComponent("\(lease.jobId)-\(lease.epoch)", isDirectory: true)
        let contextDirectory = jobDirectory.appendingPathComponent("context", isDirectory: true)
        let scratch = jobDirectory.appendingPathComponent("scratch", isDirectory: true)
        defer { try? FileManager.default.removeItem(at: jobDirectory) }
        var logger = self.logger
        logger[metadataKey: "build"] = "\(lease.spec.buildId)"
        logger[metadataKey: "job"] = "\(lease.jobId)"
        logger[metadataKey: "attempt"] = "\(lease.attempt)"
        logger[metadataKey: "epoch"] = "\(lease.epoch)"
        logger.info(
            "leased job \(lease.jobId) (attempt \(lease.attempt), epoch \(lease.epoch)): \(lease.spec.image):\(lease.spec.tag) for \(lease.spec.platform)"
        )
        let cadence = HeartbeatCadence(
            intervalSeconds: credential.heartbeatIntervalSeconds, leaseTTLSeconds: credential.leaseTTLSeconds)
        let keeper = LeaseKeeper(client: client, lease: lease, cadence: cadence, grantedAt: grantedAt, logger: logger)
        let heartbeating = Task { await keeper.run() }

        let spool: LogSpool
        do {
            try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
            try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: jobDirectory.path)
            let secrets = Array(lease.spec.buildSecrets.values) + settings.redactions
            spool = try LogSpool(
                file: jobDirectory.appendingPathComponent("build.log"), secrets: secrets, maxBytes: settings.maxSpoolBytes)
        } catch {
            let reason = "the agent could not prepare the job's work directory \(jobDirectory.path): \(error)"
            logger.error("\(reason)")
            let report = CompleteRequest(jobId: lease.jobId, epoch: lease.epoch, outcome: .failed, reason: reason)
            return await conclude(report, keeper: keeper, heartbeating: heartbeating, uploader: nil, logger: logger)
        }
        let uploader = LogUploader(
            client: client, jobId: lease.jobId, epoch: lease.epoch, spool: spool, batchBytes: settings.logBatchBytes,
            keeper: keeper, logger: logger)
        let uploading = Task { await uploader.run() }
        spool.note("job \(lease.jobId) attempt \(lease.attempt) on agent \(credential.name)")

        let phases = PhaseTimer()
        let result = await build(
            lease, keeper: keeper, spool: spool, contextDirectory: contextDirectory, scratch: scratch, phases: phases,
            logger: logger)
        // Log uploads pause here so the report goes first; what is left follows once it is acknowledged. A batch
        // already on the wire still gets its answer, beside the report, and keeps its connection.
        uploading.cancel()

        var report = self.report(for: result, lease: lease, spool: spool, logger: logger)
        if lease.traceparent != nil {
            report?.traceparent = lease.traceparent
            report?.phases = phases.recorded
        }
        spool.close()
        guard let report else {
            heartbeating.cancel()
            await heartbeating.value
            await uploading.value
            return .notReported
        }
        return await conclude(
            report, keeper: keeper, heartbeating: heartbeating, uploader: (uploader, uploading), logger: logger)
    }

    /// Fetches the context and runs the builder, stopping it for the first reason that comes up.
    private func build(
        _ lease: Lease, keeper: LeaseKeeper, spool: LogSpool, contextDirectory: URL, scratch: URL, phases: PhaseTimer,
        logger: Logger
    ) async -> BuildResult {
        let stop = StopSignal()
        let grace = Duration.seconds(settings.killGraceSeconds)
        let shutdown = self.shutdown
        let timeoutSeconds = lease.spec.timeoutSeconds
        let watching = Task {
            let deadline = ContinuousClock.now + .seconds(max(1, timeoutSeconds))
            while !Task.isCancelled && stop.requested == nil {
                let reason: StopReason?
                switch keeper.loss {
                case .superseded: reason = .leaseLost
                case .credentialRefused: reason = .credentialRefused
                case nil:
                    if keeper.cancelled {
                        reason = .cancelled
                    } else if keeper.expired() {
                        reason = .leaseExpired
                    } else if shutdown.stage == .cancelling {
                        reason = .shutdown
                    } else if ContinuousClock.now >= deadline {
                        reason = .timeout
                    } else {
                        reason = nil
                    }
                }
                if let reason {
                    logger.warning("stopping the build of job \(lease.jobId): \(reason.explanation)")
                    stop.request(reason)
                }
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        defer { watching.cancel() }
        do {
            let fetcher = ContextFetcher(
                client: client, maxContextBytes: settings.maxContextBytes, git: settings.gitSourcePolicy,
                retryCap: keeper.cadence.requestTimeout, logger: logger)
            try await phases.time(JobPhase.fetchContext) {
                try await fetcher.fetch(
                    lease.spec.context, into: contextDirectory, scratch: scratch, log: spool, stop: stop, grace: grace)
            }
            if let reason = stop.requested { return .stopped(reason) }
            keeper.phase = "building"
            var environment = ProcessInfo.processInfo.environment
            environment["MANIFOLD_JOB_ID"] = lease.jobId
            environment["MANIFOLD_BUILD_ID"] = lease.spec.buildId
            // Next to the context, not in it: the secrets must never be sent as part of the build context.
            let secrets = try BuildSecrets.write(lease.spec.buildSecrets, in: contextDirectory.deletingLastPathComponent())
            defer { secrets.remove() }
            let request = BuildRequest(
                spec: lease.spec, contextDirectory: contextDirectory, workDirectory: scratch, log: spool, stop: stop,
                grace: grace, environment: environment, tracker: ProcessTracker(state: reports.state), secrets: secrets,
                phases: phases)
            return try await builder.build(request)
        } catch let error as CoordinatorClientError where error.isConflict {
            logger.warning("stopping job \(lease.jobId): \(StopReason.leaseLost.explanation) (\(error))")
            return .stopped(.leaseLost)
        } catch let error as CoordinatorClientError where error.status == 401 {
            logger.error("stopping job \(lease.jobId): \(StopReason.credentialRefused.explanation) (\(error))")
            return .stopped(.credentialRefused)
        } catch {
            return .failed(exitCode: nil, reason: "\(error)")
        }
    }

    /// The report for `result`, or nil when there is nobody to report to (the lease is gone).
    private func report(for result: BuildResult, lease: Lease, spool: LogSpool, logger: Logger) -> CompleteRequest? {
        switch result {
        case .succeeded(let reference, let digest):
            spool.note("pushed \(reference) as \(digest)")
            return CompleteRequest(
                jobId: lease.jobId, epoch: lease.epoch, outcome: .succeeded, imageReference: reference, digest: digest)
        case .failed(let exitCode, let reason):
            spool.note("failed: \(reason)")
            return CompleteRequest(
                jobId: lease.jobId, epoch: lease.epoch, outcome: .failed, exitCode: exitCode,
                reason: String(reason.prefix(4000)))
        case .stopped(let reason) where reason == .leaseLost || reason == .credentialRefused:
            spool.note("the build was stopped: \(reason.explanation); nothing is reported")
            logger.warning("job \(lease.jobId) was stopped and is not reported: \(reason.explanation)")
            return nil
        case .stopped(.timeout):
            spool.note("the build ran past its timeout of \(lease.spec.timeoutSeconds) s and was stopped")
            return CompleteRequest(
                jobId: lease.jobId, epoch: lease.epoch, outcome: .failed,
                reason: "the build ran past its timeout of \(lease.spec.timeoutSeconds) seconds")
        case .stopped(.cancelled):
            spool.note("stopped: the job was cancelled")
            return CompleteRequest(jobId: lease.jobId, epoch: lease.epoch, outcome: .cancelled, reason: "the job was cancelled")
        case .stopped(let reason):
            // Shutdown or an expired lease: no verdict on the build, so the job goes back to the queue uncounted.
            // An expired lease that the coordinator already re-dispatched refuses this with 409, changing nothing.
            spool.note("stopped: \(reason.explanation); the job is given back")
            logger.info("giving job \(lease.jobId) back to the coordinator: \(reason.explanation)")
            return CompleteRequest(jobId: lease.jobId, epoch: lease.epoch, outcome: .released, reason: reason.explanation)
        }
    }

    /// Saves and delivers `report` while the lease keeper goes on heartbeating, then sends the rest of the log.
    private func conclude(
        _ report: CompleteRequest, keeper: LeaseKeeper, heartbeating: Task<Void, Never>,
        uploader: (LogUploader, uploading: Task<Void, Never>)?, logger: Logger
    ) async -> Ending {
        keeper.phase = "reporting"
        // Saved (synced) before anything else can fail or take long, so an agent restart still delivers it.
        do {
            try reports.save(report)
        } catch {
            logger.error("cannot save the report for job \(report.jobId): \(error); sending it from memory")
        }
        let shutdown = self.shutdown
        let delivery = await reports.deliver(report, client: client, logger: logger, backoffCap: keeper.cadence.requestTimeout) {
            shutdown.stage == .cancelling
        }
        heartbeating.cancel()
        await heartbeating.value
        // The batch that was under way when the build ended comes back first; the flush goes on from its answer.
        await uploader?.uploading.value
        switch delivery {
        case .acknowledged, .dropped:
            if let (uploader, _) = uploader {
                let deadline = ContinuousClock.now + Self.logFlushLimit
                let flushed = await uploader.flush(deadline: deadline)
                if flushed {
                    await uploader.close(deadline: deadline)
                } else {
                    logger.warning("not all of job \(report.jobId)'s log reached the coordinator")
                }
            }
            return .reported
        case .credentialRefused:
            return .notReported
        case .postponed:
            logger.warning(
                "the report for job \(report.jobId) stays in \(reports.state.reportsDirectory.path) for the next start")
            return .reportKept
        }
    }
}
