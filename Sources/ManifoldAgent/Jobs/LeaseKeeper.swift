import Foundation
import Logging
import ManifoldAPI
import ManifoldClient
import Synchronization

/// When the next heartbeat goes out and how long one may take, from the lease the coordinator last confirmed.
///
/// The coordinator answers every heartbeat with `leaseExpiresAt`; the agent turns that into a deadline on its
/// monotonic clock (never later than the lease TTL it was given at join, so a wall-clock step or a skewed host
/// clock cannot stretch it) and heartbeats at about a third of the time left, between 1 s and the configured
/// interval. A failed heartbeat leaves the deadline where it was, so the retries come faster as it nears.
struct HeartbeatCadence: Sendable, Equatable {
    /// The heartbeat interval the coordinator asked for at join.
    var interval: Duration
    /// The lease TTL the coordinator announced at join.
    var leaseTTL: Duration

    init(intervalSeconds: Int, leaseTTLSeconds: Int) {
        interval = .seconds(max(1, intervalSeconds))
        leaseTTL = .seconds(max(1, leaseTTLSeconds))
    }

    /// Each heartbeat's own deadline: about a third of the TTL, so one stuck request leaves time for two more.
    var requestTimeout: Duration { max(.seconds(1), leaseTTL / 3) }

    /// A heartbeat's deadline once the coordinator has said how long it leases for (`leaseLength`, from its last
    /// answer): a third of that when it is shorter than the join-time TTL, so a coordinator whose TTL was shortened
    /// since the join still leaves time for two more tries after one stuck request.
    func requestTimeout(leaseLength: Duration) -> Duration {
        max(.seconds(1), min(leaseTTL, leaseLength) / 3)
    }

    /// How long the lease runs from the moment the acknowledged request was sent: the time left by the
    /// coordinator's `leaseExpiresAt` on this host's wall clock, at most the TTL (a clock behind the coordinator's
    /// would otherwise lengthen it). A value the clocks cannot support (already past) counts as the full TTL.
    func leaseLength(expiresAt: Date, now: Date) -> Duration {
        let left = expiresAt.timeIntervalSince(now)
        guard left > 0 else { return leaseTTL }
        return min(leaseTTL, .milliseconds(Int64(left * 1000)))
    }

    /// The wait before the next heartbeat when `remaining` is left on the lease.
    func delay(remaining: Duration) -> Duration {
        min(interval, max(.seconds(1), remaining / 3))
    }
}

/// Why the lease keeper gave up on the lease.
enum LeaseLoss: Sendable, Equatable {
    /// 409: the coordinator has moved on (the lease expired or the job was re-dispatched).
    case superseded
    /// 401: the coordinator no longer accepts this agent's credential (the agent was removed).
    case credentialRefused
}

/// Keeps one attempt's lease alive: heartbeats on the cadence the coordinator's answers set, each with its own
/// deadline, and remembers (on the monotonic clock) when the last one was acknowledged.
///
/// It runs from the lease until the report is acknowledged, so a finished build keeps its lease while the report
/// is on its way.
final class LeaseKeeper: Sendable {
    let client: CoordinatorClient
    let lease: Lease
    let cadence: HeartbeatCadence
    let logger: Logger

    private struct State {
        var phase = "fetching"
        var acknowledgedAt: ContinuousClock.Instant
        var expiresAt: ContinuousClock.Instant
        var cancelled = false
        var loss: LeaseLoss?
        var lossMessage = ""
        /// How long the coordinator leased for at its last answer (the join-time TTL until one came).
        var leaseLength: Duration
    }
    private let state: Mutex<State>

    /// `grantedAt` is when the poll that carried the lease was answered (the lease's first acknowledgement).
    init(client: CoordinatorClient, lease: Lease, cadence: HeartbeatCadence, grantedAt: ContinuousClock.Instant, logger: Logger) {
        self.client = client
        self.lease = lease
        self.cadence = cadence
        self.logger = logger
        let length = cadence.leaseLength(expiresAt: lease.leaseExpiresAt, now: Date())
        state = Mutex(State(acknowledgedAt: grantedAt, expiresAt: grantedAt + length, leaseLength: cadence.leaseTTL))
    }

    /// What the job is doing now, sent with each heartbeat.
    var phase: String {
        get { state.withLock { $0.phase } }
        set { state.withLock { $0.phase = newValue } }
    }

    /// Whether the coordinator said the job was cancelled.
    var cancelled: Bool { state.withLock { $0.cancelled } }

    /// Set once the coordinator refused a heartbeat with 409 or 401.
    var loss: LeaseLoss? { state.withLock { $0.loss } }

    /// The coordinator's message with the refusal, for the agent's log.
    var lossMessage: String { state.withLock { $0.lossMessage } }

    /// How long since the last acknowledged heartbeat was sent (or the lease was granted).
    func silence(now: ContinuousClock.Instant = .now) -> Duration {
        now - state.withLock { $0.acknowledgedAt }
    }

    /// Whether the lease has, as far as this agent can know, run out: no heartbeat was acknowledged within the
    /// lease's length.
    func expired(now: ContinuousClock.Instant = .now) -> Bool {
        now >= state.withLock { $0.expiresAt }
    }

    /// Records a refusal that came through another call (a log append or the report).
    func lost(_ loss: LeaseLoss, message: String) {
        state.withLock {
            if $0.loss == nil {
                $0.loss = loss
                $0.lossMessage = message
            }
        }
    }

    /// Heartbeats until cancelled or the lease is refused.
    func run() async {
        while !Task.isCancelled, loss == nil {
            await beat()
            if Task.isCancelled || loss != nil { return }
            let remaining = state.withLock { $0.expiresAt } - .now
            try? await Task.sleep(for: cadence.delay(remaining: remaining))
        }
    }

    /// One heartbeat with its own deadline.
    func beat() async {
        let sentAt = ContinuousClock.now
        do {
            let timeout = cadence.requestTimeout(leaseLength: state.withLock { $0.leaseLength })
            let (client, request) = (client, HeartbeatRequest(jobId: lease.jobId, epoch: lease.epoch, phase: phase))
            // Cancelling the keeper stops the next heartbeat, not this one (``InFlight``): its connection stays open.
            let answer = try await InFlight.finish(grace: InFlight.grace) {
                try await client.heartbeat(request, timeout: timeout)
            }
            let receivedAt = ContinuousClock.now
            // The coordinator renewed the lease while handling the request, so it runs a TTL from some moment
            // after `sentAt` — never later than `sentAt` + TTL as far as this agent can prove, and never later than
            // what the answer's own expiry says.
            let length = cadence.leaseLength(expiresAt: answer.leaseExpiresAt, now: Date())
            let expiresAt = min(sentAt + cadence.leaseTTL, receivedAt + length)
            let newlyCancelled = state.withLock { state in
                state.leaseLength = length
                state.acknowledgedAt = max(state.acknowledgedAt, sentAt)
                state.expiresAt = max(state.expiresAt, expiresAt)
                defer { state.cancelled = state.cancelled || answer.cancelled }
                return answer.cancelled && !state.cancelled
            }
            if newlyCancelled { logger.info("the coordinator cancelled job \(lease.jobId)") }
        } catch let error as CoordinatorClientError where error.isConflict {
            if Task.isCancelled {
                // The keeper was stopped because the job was reported: the coordinator answered this heartbeat
                // after the report, which ended the lease.
                logger.debug("heartbeat answered 409 after the keeper was stopped (\(error))")
                return
            }
            logger.warning("heartbeat refused with 409: the lease on job \(lease.jobId) is gone (\(error))")
            lost(.superseded, message: "\(error)")
        } catch let error as CoordinatorClientError where error.status == 401 {
            logger.error("heartbeat refused with 401: the coordinator no longer accepts this agent's credential (\(error))")
            lost(.credentialRefused, message: "\(error)")
        } catch {
            if Task.isCancelled { return }
            let left = state.withLock { $0.expiresAt } - .now
            logger.warning(
                "heartbeat for job \(lease.jobId) failed (\(error)); the lease has about \(left.roundedSeconds) s left")
        }
    }
}

extension Duration {
    /// Whole seconds, rounded down, for log lines.
    var roundedSeconds: Int64 { max(0, components.seconds) }
}
