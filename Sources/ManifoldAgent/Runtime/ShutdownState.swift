import Synchronization

/// How far shutdown has gone: the first signal drains (no new jobs), the second (or the drain timeout) cancels
/// the running job. Shared between the signal handler and the run loop.
public final class ShutdownState: Sendable {
    public enum Stage: Int, Sendable, Comparable {
        case running, draining, cancelling
        public static func < (lhs: Stage, rhs: Stage) -> Bool { lhs.rawValue < rhs.rawValue }
    }

    private let state = Mutex<Stage>(.running)
    private let waiters = ConditionWaiters<Stage>()

    public init() {}

    public var stage: Stage { state.withLock { $0 } }

    /// Advances one stage (a signal arrived) and returns the new stage.
    @discardableResult
    public func escalate() -> Stage {
        let stage = state.withLock { stage in
            stage = Stage(rawValue: min(stage.rawValue + 1, Stage.cancelling.rawValue))!
            return stage
        }
        waiters.resume(in: stage)
        return stage
    }

    /// Moves to at least `target`.
    public func raise(to target: Stage) {
        let stage = state.withLock { stage in
            if stage < target { stage = target }
            return stage
        }
        waiters.resume(in: stage)
    }

    /// Returns once the stage is at least `target` (or the task is cancelled). Nothing runs meanwhile: the change
    /// resumes the wait.
    public func wait(for target: Stage) async {
        await waiters.wait(until: { $0 >= target }, current: { self.stage })
    }

    /// How many tasks wait for a stage now (for tests).
    var waiting: Int { waiters.count }
}
