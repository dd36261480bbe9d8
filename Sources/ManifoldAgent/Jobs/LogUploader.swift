import Foundation
import Logging
import ManifoldClient
import Synchronization

/// Sends a ``LogSpool`` to the coordinator in batches by byte offset.
///
/// The coordinator's answer is the log's size there; the next batch starts from it, so a lost answer, a network
/// blip or a coordinator restart neither loses nor duplicates bytes. A 409 means the lease is gone.
final class LogUploader: Sendable {
    let client: CoordinatorClient
    let jobId: String
    let epoch: Int64
    let spool: LogSpool
    let batchBytes: Int
    let logger: Logger
    let stop: StopSignal

    init(
        client: CoordinatorClient, jobId: String, epoch: Int64, spool: LogSpool, batchBytes: Int, stop: StopSignal,
        logger: Logger
    ) {
        self.client = client
        self.jobId = jobId
        self.epoch = epoch
        self.spool = spool
        self.batchBytes = batchBytes
        self.stop = stop
        self.logger = logger
    }

    /// Uploads until cancelled, every `interval`; a failed batch is tried again at the next tick.
    func run(interval: Duration = .seconds(1)) async {
        while !Task.isCancelled {
            await uploadAvailable(deadline: nil)
            try? await Task.sleep(for: interval)
        }
    }

    /// Uploads everything on disk, retrying with backoff until `deadline`; returns whether the coordinator holds
    /// all of it.
    @discardableResult
    func flush(deadline: ContinuousClock.Instant) async -> Bool {
        await uploadAvailable(deadline: deadline)
        return acknowledged.withLock { $0 } >= spool.size
    }

    private let acknowledged = Mutex<Int64>(0)

    private func uploadAvailable(deadline: ContinuousClock.Instant?) async {
        var backoff = Backoff(initial: .milliseconds(250), cap: .seconds(5))
        guard let handle = try? FileHandle(forReadingFrom: spool.file) else { return }
        defer { try? handle.close() }
        while case let offset = acknowledged.withLock({ $0 }), offset < spool.size {
            let data: Data
            do {
                try handle.seek(toOffset: UInt64(offset))
                data = try handle.read(upToCount: Int(min(Int64(batchBytes), spool.size - offset))) ?? Data()
            } catch {
                return
            }
            do {
                switch try await client.appendLog(jobId: jobId, epoch: epoch, offset: offset, data: data) {
                case .stored(let size), .gap(let size):
                    acknowledged.withLock { $0 = size }
                }
                backoff.reset()
            } catch let error as CoordinatorClientError where error.isConflict {
                logger.warning("log upload refused with 409: the lease on job \(jobId) is gone")
                stop.request(.leaseLost)
                return
            } catch {
                guard let deadline, ContinuousClock.now < deadline, !Task.isCancelled else { return }
                logger.debug("log upload failed, retrying: \(error)")
                try? await Task.sleep(for: backoff.next())
            }
        }
    }
}
