import Foundation
import Logging
import ManifoldClient
import Synchronization

/// Sends a ``LogSpool`` to the coordinator in batches by byte offset.
///
/// The coordinator's answer is the log's size there; the next batch starts from it, so a lost answer, a network
/// blip or a coordinator restart neither loses nor duplicates bytes. A 409 or 401 means the lease is gone. A 413
/// means the coordinator's per-attempt log limit is reached: that is final for the attempt, so the uploader
/// logs one warning, tries to leave one marker line in the stored log, and sends nothing more — the build and
/// its report go on.
final class LogUploader: Sendable {
    let client: CoordinatorClient
    let jobId: String
    let epoch: Int64
    let spool: LogSpool
    let batchBytes: Int
    let logger: Logger
    let keeper: LeaseKeeper

    init(
        client: CoordinatorClient, jobId: String, epoch: Int64, spool: LogSpool, batchBytes: Int, keeper: LeaseKeeper,
        logger: Logger
    ) {
        self.client = client
        self.jobId = jobId
        self.epoch = epoch
        self.spool = spool
        self.batchBytes = batchBytes
        self.keeper = keeper
        self.logger = logger
    }

    /// The line left at the end of the coordinator's copy when its log limit refused more.
    static let limitMarker = Data(
        "\n[manifold-agent] the coordinator's log limit for this attempt was reached; the rest of the log was not uploaded\n"
            .utf8)

    private struct State {
        var acknowledged: Int64 = 0
        /// Set by a 413 (final for this attempt) or a lost lease: nothing more is sent.
        var finished = false
        /// Where the limit marker goes when the 413 came back after the uploads were paused: ``flush(deadline:)``
        /// sends it.
        var markerOffset: Int64?
    }
    private let state = Mutex(State())

    /// Whether the coordinator refused more log with 413.
    var limitReached: Bool { limit.withLock { $0 } }
    private let limit = Mutex(false)

    /// Uploads until cancelled, every `interval`; a failed batch is tried again at the next tick. Cancelling stops the
    /// next batch; the one under way gets its answer (``InFlight``), so the agent keeps the connection it went on.
    func run(interval: Duration = .seconds(1)) async {
        while !Task.isCancelled {
            await uploadAvailable(deadline: nil)
            try? await Task.sleep(for: interval)
        }
    }

    /// Uploads everything on disk, retrying with backoff until `deadline`; returns whether nothing is left to send
    /// (all of it stored, or the coordinator's limit reached).
    @discardableResult
    func flush(deadline: ContinuousClock.Instant) async -> Bool {
        let pendingMarker = state.withLock { state -> Int64? in
            defer { state.markerOffset = nil }
            return state.markerOffset
        }
        if let offset = pendingMarker {
            _ = try? await client.appendLog(jobId: jobId, epoch: epoch, offset: offset, data: Self.limitMarker)
        }
        await uploadAvailable(deadline: deadline)
        return limitReached || state.withLock { $0.acknowledged } >= spool.size
    }

    /// Once everything is stored, tells the coordinator the log is complete (followers of the log end then, not a
    /// grace period after the report). Tried until `deadline`; without it the coordinator ends followers later.
    func close(deadline: ContinuousClock.Instant) async {
        var backoff = Backoff(initial: .milliseconds(250), cap: .seconds(5))
        while !Task.isCancelled, !limitReached, !state.withLock({ $0.finished }), ContinuousClock.now < deadline {
            let size = state.withLock { $0.acknowledged }
            guard size >= spool.size else { return }
            do {
                switch try await client.closeLog(jobId: jobId, epoch: epoch, size: size) {
                case .stored: return
                case .gap(let stored):
                    // The coordinator has fewer bytes than it acknowledged (a restore): send them, then close.
                    state.withLock { $0.acknowledged = stored }
                    await uploadAvailable(deadline: deadline)
                }
            } catch let error as CoordinatorClientError where error.isConflict || error.status == 401 || error.status == 413 {
                logger.debug("closing the log of job \(jobId) refused: \(error)")
                return
            } catch {
                guard ContinuousClock.now < deadline else { return }
                logger.debug("closing the log failed, retrying: \(error)")
                try? await Task.sleep(for: backoff.next())
            }
        }
    }

    private func uploadAvailable(deadline: ContinuousClock.Instant?) async {
        var backoff = Backoff(initial: .milliseconds(250), cap: .seconds(5))
        guard let handle = try? FileHandle(forReadingFrom: spool.file) else { return }
        defer { try? handle.close() }
        while !Task.isCancelled, case let (offset, finished) = state.withLock({ ($0.acknowledged, $0.finished) }), !finished,
            offset < spool.size
        {
            let data: Data
            do {
                try handle.seek(toOffset: UInt64(offset))
                data = try handle.read(upToCount: Int(min(Int64(batchBytes), spool.size - offset))) ?? Data()
            } catch {
                return
            }
            do {
                let (client, jobId, epoch) = (client, jobId, epoch)
                let outcome = try await InFlight.finish(grace: InFlight.grace) {
                    try await client.appendLog(jobId: jobId, epoch: epoch, offset: offset, data: data)
                }
                switch outcome {
                case .stored(let size), .gap(let size):
                    state.withLock { $0.acknowledged = size }
                }
                backoff.reset()
            } catch let error as CoordinatorClientError where error.status == 413 {
                await limitReached(at: offset, error)
                return
            } catch let error as CoordinatorClientError where error.isConflict {
                logger.warning("log upload refused with 409: the lease on job \(jobId) is gone")
                keeper.lost(.superseded, message: "\(error)")
                state.withLock { $0.finished = true }
                return
            } catch let error as CoordinatorClientError where error.status == 401 {
                logger.error("log upload refused with 401: the coordinator no longer accepts this agent's credential")
                keeper.lost(.credentialRefused, message: "\(error)")
                state.withLock { $0.finished = true }
                return
            } catch {
                guard let deadline, ContinuousClock.now < deadline, !Task.isCancelled else { return }
                logger.debug("log upload failed, retrying: \(error)")
                try? await Task.sleep(for: backoff.next())
            }
        }
    }

    /// A 413 is final: one warning here, one best-effort marker line there, nothing more for this attempt.
    private func limitReached(at offset: Int64, _ error: CoordinatorClientError) async {
        state.withLock { $0.finished = true }
        limit.withLock { $0 = true }
        logger.warning(
            "the coordinator refused more log for job \(jobId) after \(offset) bytes (\(error)); the rest of this attempt's log stays on this host only"
        )
        // Fits only when the limit leaves room for it; refused otherwise, which changes nothing. A 413 answered to
        // the batch that was on the wire when the uploads paused leaves the marker to the flush after the report.
        guard !Task.isCancelled else {
            state.withLock { $0.markerOffset = offset }
            return
        }
        let (client, jobId, epoch) = (client, jobId, epoch)
        _ = try? await InFlight.finish(grace: InFlight.grace) {
            try await client.appendLog(jobId: jobId, epoch: epoch, offset: offset, data: Self.limitMarker)
        }
    }
}
