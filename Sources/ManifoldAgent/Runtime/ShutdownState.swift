import Synchronization

/// How far shutdown has gone: the first signal drains (no new jobs), the second (or the drain timeout) cancels
/// the running job. Shared between the signal handler and the run loop.
public final class ShutdownState: Sendable {
    public enum Stage: Int, Sendable, Comparable {
        case running, draining, cancelling
        public static func < (lhs: Stage, rhs: Stage) -> Bool { lhs.rawValue < rhs.rawValue }
    }

    private let state = Mutex<Stage>(.running)

    public init() {}

    public var stage: Stage { state.withLock { $0 } }

    /// Advances one stage (a signal arrived) and returns the new stage.
    @discardableResult
    public func escalate() -> Stage {
        state.withLock { stage in
            stage = Stage(rawValue: min(stage.rawValue + 1, Stage.cancelling.rawValue))!
            return stage
        }
    }

    /// Moves to at least `target`.
    public func raise(to target: Stage) {
        state.withLock { if $0 < target { $0 = target } }
    }

    /// Returns once the stage is at least `target`, polling every 100 ms (signals are rare; this keeps it simple).
    public func wait(for target: Stage) async {
        while stage < target {
            try? await Task.sleep(for: .milliseconds(100))
            if Task.isCancelled { return }
        }
    }
}
