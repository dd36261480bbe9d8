import Foundation
import Logging
import ManifoldAPI
import ManifoldClient
import Synchronization

/// Runs one leased job from context to report: work directory, log spool and uploader, heartbeats, the builder,
/// and the stop paths (cancel, lease lost, timeout, second shutdown signal).
struct JobRunner: Sendable {
    var client: CoordinatorClient
    var settings: AgentSettings
    var credential: AgentCredential
    var builder: any Builder
    var workRoot: URL
    var shutdown: ShutdownState
    var reports: ReportStore
    var logger: Logger

    /// The report to send, or nil when the lease was lost (the coordinator has moved on; nothing to report).
    func run(_ lease: Lease) async -> CompleteRequest? {
        let jobDirectory = workRoot.appendingPathComponent("\(lease.jobId)-\(lease.epoch)", isDirectory: true)
        let contextDirectory = jobDirectory.appendingPathComponent("context", isDirectory: true)
        let scratch = jobDirectory.appendingPathComponent("scratch", isDirectory: true)
        defer { try? FileManager.default.removeItem(at: jobDirectory) }
        let stop = StopSignal()
        let phase = JobPhase()
        let grace = Duration.seconds(settings.killGraceSeconds)
        var logger = self.logger
        logger[metadataKey: "job"] = "\(lease.jobId)"
        logger.info(
            "leased job \(lease.jobId) (attempt \(lease.attempt), epoch \(lease.epoch)): \(lease.spec.image):\(lease.spec.tag) for \(lease.spec.platform)"
        )
        let spool: LogSpool
        do {
            try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
            try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: jobDirectory.path)
            let secrets = lease.spec.secretBuildArgs.compactMap { lease.spec.buildArgs[$0] } + settings.redactions
            spool = try LogSpool(file: jobDirectory.appendingPathComponent("build.log"), secrets: secrets)
        } catch {
            return failed(lease, "the agent could not prepare the job's work directory \(jobDirectory.path): \(error)")
        }
        let uploader = LogUploader(
            client: client, jobId: lease.jobId, epoch: lease.epoch, spool: spool, batchBytes: settings.logBatchBytes,
            stop: stop, logger: logger)
        let uploading = Task { await uploader.run() }
        let heartbeating = Task { await heartbeat(lease, phase: phase, stop: stop, logger: logger) }
        let watching = Task {
            let deadline = ContinuousClock.now + .seconds(max(1, lease.spec.timeoutSeconds))
            while !Task.isCancelled && stop.requested == nil {
                if shutdown.stage == .cancelling { stop.request(.shutdown) }
                if ContinuousClock.now >= deadline { stop.request(.timeout) }
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        spool.note("job \(lease.jobId) attempt \(lease.attempt) on agent \(credential.name)")

        var result: BuildResult
        do {
            let fetcher = ContextFetcher(client: client, maxContextBytes: settings.maxContextBytes)
            try await fetcher.fetch(
                lease.spec.context, into: contextDirectory, scratch: scratch, log: spool, stop: stop, grace: grace)
            if let reason = stop.requested {
                result = .stopped(reason)
            } else {
                phase.set("building")
                var environment = ProcessInfo.processInfo.environment
                environment["MANIFOLD_JOB_ID"] = lease.jobId
                environment["MANIFOLD_BUILD_ID"] = lease.spec.buildId
                let request = BuildRequest(
                    spec: lease.spec, contextDirectory: contextDirectory, workDirectory: scratch, log: spool, stop: stop,
                    grace: grace, environment: environment, tracker: ProcessTracker(state: reports.state))
                result = try await builder.build(request)
            }
        } catch let error as CoordinatorClientError where error.isConflict {
            result = .stopped(.leaseLost)
        } catch {
            result = .failed(exitCode: nil, reason: "\(error)")
        }
        watching.cancel()
        heartbeating.cancel()
        uploading.cancel()
        _ = await (watching.value, heartbeating.value, uploading.value)

        let report: CompleteRequest?
        switch result {
        case .succeeded(let reference, let digest):
            spool.note("pushed \(reference) as \(digest)")
            report = CompleteRequest(
                jobId: lease.jobId, epoch: lease.epoch, outcome: .succeeded, imageReference: reference, digest: digest)
        case .failed(let exitCode, let reason):
            spool.note("failed: \(reason)")
            report = CompleteRequest(
                jobId: lease.jobId, epoch: lease.epoch, outcome: .failed, exitCode: exitCode,
                reason: String(reason.prefix(4000)))
        case .stopped(.leaseLost):
            spool.note("the lease was lost; the build was stopped")
            report = nil
        case .stopped(.timeout):
            spool.note("the build ran past its timeout of \(lease.spec.timeoutSeconds) s and was stopped")
            report = CompleteRequest(
                jobId: lease.jobId, epoch: lease.epoch, outcome: .failed,
                reason: "the build ran past its timeout of \(lease.spec.timeoutSeconds) seconds")
        case .stopped(let reason):
            let why = reason == .shutdown ? "the agent is shutting down" : "the job was cancelled"
            spool.note("stopped: \(why)")
            report = CompleteRequest(jobId: lease.jobId, epoch: lease.epoch, outcome: .cancelled, reason: why)
        }
        spool.close()
        if let report {
            // Saved before anything else can fail or take long, so an agent restart still delivers it.
            do {
                try reports.save(report)
            } catch {
                logger.error("cannot save the report for job \(lease.jobId): \(error)")
            }
            let flushed = await uploader.flush(deadline: ContinuousClock.now + .seconds(60))
            if !flushed { logger.warning("not all of job \(lease.jobId)'s log reached the coordinator") }
        }
        return report
    }

    private func failed(_ lease: Lease, _ reason: String) -> CompleteRequest {
        logger.error("\(reason)")
        let report = CompleteRequest(jobId: lease.jobId, epoch: lease.epoch, outcome: .failed, reason: reason)
        try? reports.save(report)
        return report
    }

    /// Heartbeats every interval; a cancel or a 409 stops the build.
    private func heartbeat(_ lease: Lease, phase: JobPhase, stop: StopSignal, logger: Logger) async {
        let interval = Duration.seconds(max(1, min(10, credential.heartbeatIntervalSeconds)))
        while !Task.isCancelled {
            do {
                let answer = try await client.heartbeat(
                    HeartbeatRequest(jobId: lease.jobId, epoch: lease.epoch, phase: phase.current))
                if answer.cancelled {
                    logger.info("the coordinator cancelled job \(lease.jobId); stopping the build")
                    stop.request(.cancelled)
                }
            } catch let error as CoordinatorClientError where error.isConflict {
                logger.warning("heartbeat refused with 409: the lease on job \(lease.jobId) is gone; stopping the build")
                stop.request(.leaseLost)
            } catch {
                if Task.isCancelled { return }
                logger.warning("heartbeat for job \(lease.jobId) failed: \(error)")
            }
            try? await Task.sleep(for: interval)
        }
    }
}

/// What the job is doing now, for heartbeats.
final class JobPhase: Sendable {
    private let value = Mutex("fetching")
    var current: String { value.withLock { $0 } }
    func set(_ phase: String) { value.withLock { $0 = phase } }
}
