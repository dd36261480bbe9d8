import Foundation
import Synchronization

/// Wakes waiters when something changed: long polls when a job may have become available, event
/// streams when a build's log grew. Waiting is by notification, with a deadline, never by polling.
public final class WorkNotifier: Sendable {
    private struct State {
        var generation: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter: UInt64 = 0
        var shuttingDown = false
    }
    private let state = Mutex(State())

    public init() {}

    /// Wakes every current waiter.
    public func notifyAll() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.generation &+= 1
            let waiters = Array(state.waiters.values)
            state.waiters.removeAll()
            return waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Wakes everyone and makes waits return at once from now on: held polls and streams end so a
    /// graceful shutdown does not wait out their timeouts.
    public func shutDown() {
        state.withLock { $0.shuttingDown = true }
        notifyAll()
    }

    public var isShuttingDown: Bool { state.withLock { $0.shuttingDown } }

    /// The current generation; pass it to `wait(after:until:)` so a notification between a check and the
    /// wait is not missed.
    public var generation: UInt64 { state.withLock { $0.generation } }

    /// Returns when notified after `generation`, at `deadline`, or when the task is cancelled.
    public func wait(after generation: UInt64, until deadline: ContinuousClock.Instant) async {
        let id = state.withLock { state -> UInt64 in
            state.nextWaiter &+= 1
            return state.nextWaiter
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                        let resumeNow = self.state.withLock { state -> Bool in
                            if state.generation != generation || state.shuttingDown || Task.isCancelled { return true }
                            state.waiters[id] = continuation
                            return false
                        }
                        if resumeNow { continuation.resume() }
                    }
                } onCancel: {
                    self.state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
                }
            }
            group.addTask {
                try? await Task.sleep(until: deadline, clock: .continuous)
            }
            await group.next()
            group.cancelAll()
        }
    }
}
