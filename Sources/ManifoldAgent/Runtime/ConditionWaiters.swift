import Synchronization

/// Tasks waiting for a condition on some state, resumed by whoever changes the state — no timer, no polling, so an
/// idle agent sleeps between its polls. The owner calls ``wait(until:in:)`` and, after each change, ``resume(in:)``
/// with the new state; both under the owner's own lock ordering (this type has a lock of its own, taken alone).
final class ConditionWaiters<State: Sendable>: Sendable {
    private struct Waiter {
        let isMet: @Sendable (State) -> Bool
        let continuation: CheckedContinuation<Void, Never>
    }

    private struct Waiters {
        var next: UInt64 = 0
        var byID: [UInt64: Waiter] = [:]
    }

    private let waiters = Mutex(Waiters())

    /// Returns once `isMet` holds for the state (read now through `current`, then on each ``resume(in:)``), or when the
    /// task is cancelled.
    func wait(until isMet: @escaping @Sendable (State) -> Bool, current: @Sendable () -> State) async {
        let id = waiters.withLock { waiters -> UInt64 in
            waiters.next &+= 1
            return waiters.next
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                // Registered first, then checked: a change between the two resumes it, or the check sees it.
                waiters.withLock { $0.byID[id] = Waiter(isMet: isMet, continuation: continuation) }
                if isMet(current()) || Task.isCancelled {
                    waiters.withLock { $0.byID.removeValue(forKey: id) }?.continuation.resume()
                }
            }
        } onCancel: {
            waiters.withLock { $0.byID.removeValue(forKey: id) }?.continuation.resume()
        }
    }

    /// Resumes every waiter whose condition holds for `state`.
    func resume(in state: State) {
        let met = waiters.withLock { waiters -> [CheckedContinuation<Void, Never>] in
            let ids = waiters.byID.filter { $0.value.isMet(state) }.map(\.key)
            return ids.compactMap { waiters.byID.removeValue(forKey: $0)?.continuation }
        }
        for continuation in met { continuation.resume() }
    }

    /// How many tasks wait now (for tests).
    var count: Int { waiters.withLock { $0.byID.count } }
}
