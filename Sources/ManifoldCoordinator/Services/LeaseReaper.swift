import Foundation
import Logging
import ManifoldStore
import ServiceLifecycle

/// Expires leases that were not renewed and re-queues their jobs, waking long polls that may take them, and
/// fails attempts that outlived their build's timeout.
///
/// Every replica on a shared database runs it on its own, without a periodic-task row: each pass is one write
/// transaction (they run one at a time) that changes only attempts still running past their deadline, so of two
/// replicas expiring the same lease one changes it and the other finds nothing left (the lease is lost once, counted
/// once).
/// A pass that finds nothing writes nothing, which is cheaper than taking a shared row every pass would be, and a
/// dead replica leaves no turn behind that delays the next expiry.
///
/// Two clocks drive it: the store's wall clock (what leases expire by) and `clock`, a monotonic clock it sleeps on
/// and measures its own passes with, which tells a step of the wall clock or a pause of the process apart from
/// time that really passed. Tests pass clocks they move by hand.
public struct LeaseReaper<C: Clock>: Service where C.Duration == Duration {
    let store: Store
    let notifier: WorkNotifier
    let metrics: CoordinatorMetrics
    let interval: Duration
    let startupGrace: Duration
    let clock: C
    let logger: Logger

    public init(
        store: Store, notifier: WorkNotifier, metrics: CoordinatorMetrics, interval: Duration = .seconds(2),
        startupGrace: Duration = .zero, clock: C, logger: Logger
    ) {
        self.store = store
        self.notifier = notifier
        self.metrics = metrics
        self.interval = interval
        self.startupGrace = startupGrace
        self.clock = clock
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            var pauses = PauseDetector<C.Instant>(tolerance: max(.seconds(5), .seconds(store.settings.leaseTTL / 4)))
            _ = pauses.observe(clock.now, sleptFor: .zero)
            // After a restart, agents need one lease period to reach us again before their leases count as lost.
            try? await clock.sleep(for: startupGrace)
            var slept = startupGrace
            var jumps = ClockJumpDetector<C.Instant>()
            while !Task.isCancelled {
                do {
                    if let pause = pauses.observe(clock.now, sleptFor: slept) {
                        // This process did not run (an overloaded machine, a frozen or stopped process): heartbeats
                        // that reached it meanwhile still wait to be answered, so no lease expires for that time.
                        logger.warning(
                            "the coordinator did not run for a while; extending running leases",
                            metadata: ["seconds": "\(pause.components.seconds)"])
                        try await store.extendRunningLeases(
                            until: store.currentTime().addingTimeInterval(store.settings.leaseTTL))
                    }
                    if let jump = jumps.observe(wall: store.currentTime(), monotonic: clock.now) {
                        // The wall clock stepped forward (NTP, a resumed VM): no agent missed a heartbeat for
                        // that, so every running lease gets a full TTL instead of expiring at once.
                        logger.warning(
                            "the wall clock jumped forward; extending running leases", metadata: ["seconds": "\(jump)"])
                        try await store.extendRunningLeases(
                            until: store.currentTime().addingTimeInterval(store.settings.leaseTTL))
                    }
                    let expired = try await store.expireLeases()
                    if expired > 0 {
                        metrics.increment("manifold_lease_expiries_total", by: Double(expired))
                        logger.info("leases expired", metadata: ["count": "\(expired)"])
                        notifier.notify([.work, .progress])
                    }
                    let timedOut = try await store.enforceTimeouts()
                    if timedOut > 0 {
                        metrics.increment("manifold_job_timeouts_total", by: Double(timedOut))
                        logger.info("attempts timed out", metadata: ["count": "\(timedOut)"])
                        notifier.notify([.work, .progress, .publication])
                    }
                } catch {
                    logger.error("expiring leases failed", metadata: ["error": "\(error)"])
                }
                try? await clock.sleep(for: interval)
                slept = interval
            }
        }
    }
}

extension LeaseReaper where C == ContinuousClock {
    /// A reaper on the system's monotonic clock.
    public init(
        store: Store, notifier: WorkNotifier, metrics: CoordinatorMetrics, interval: Duration = .seconds(2),
        startupGrace: Duration = .zero, logger: Logger
    ) {
        self.init(
            store: store, notifier: notifier, metrics: metrics, interval: interval, startupGrace: startupGrace,
            clock: ContinuousClock(), logger: logger)
    }
}

/// Notices a forward step of the wall clock between two observations: wall time that passed beyond the
/// monotonic time that passed, past a tolerance.
struct ClockJumpDetector<Instant: InstantProtocol> where Instant.Duration == Duration {
    var tolerance: TimeInterval
    private var last: (wall: Date, monotonic: Instant)?

    init(tolerance: TimeInterval = 5) { self.tolerance = tolerance }

    /// The size of a forward jump since the last observation, if there was one.
    mutating func observe(wall: Date, monotonic: Instant) -> TimeInterval? {
        defer { last = (wall, monotonic) }
        guard let last else { return nil }
        let elapsed = last.monotonic.duration(to: monotonic)
        let monotonicSeconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let jump = wall.timeIntervalSince(last.wall) - monotonicSeconds
        return jump > tolerance ? jump : nil
    }
}

/// Notices that this process did not run for a while: two passes of a loop further apart on the monotonic clock than
/// the loop slept between them plus a tolerance (the machine overloaded, the process frozen or stopped). Heartbeats
/// that arrived meanwhile were not answered yet, so the leases they renew must not expire for that time.
struct PauseDetector<Instant: InstantProtocol> where Instant.Duration == Duration {
    let tolerance: Duration
    private var last: Instant?

    init(tolerance: Duration) { self.tolerance = tolerance }

    /// How much later than `slept` after the last observation `now` is, when that is past the tolerance.
    mutating func observe(_ now: Instant, sleptFor slept: Duration) -> Duration? {
        defer { last = now }
        guard let last else { return nil }
        let late = last.duration(to: now) - slept
        return late > tolerance ? late : nil
    }
}
