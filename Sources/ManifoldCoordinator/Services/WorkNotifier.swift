import Foundation
import Synchronization

/// Wakes waiters when something they care about changed. Each waiter names its topics, so a log chunk
/// (progress) wakes event streams and log followers but not the agents' held polls or the verifier.
/// Waiting is by notification, with a deadline, never by polling.
public final class WorkNotifier: Sendable {
    /// What changed.
    public struct Topics: OptionSet, Sendable, Hashable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }

        /// A job may have become available to lease (held polls).
        public static let work = Topics(rawValue: 1 << 0)
        /// Events or log bytes were added (event streams, log followers).
        public static let progress = Topics(rawValue: 1 << 1)
        /// An agent reported a digest to check (the verifier).
        public static let verification = Topics(rawValue: 1 << 2)
        /// A list was queued for publishing (the publisher).
        public static let publication = Topics(rawValue: 1 << 3)
        public static let all: Topics = [.work, .progress, .verification, .publication]
    }

    private struct Waiter {
        var topics: Topics
        var continuation: CheckedContinuation<Void, Never>
    }

    private struct State {
        var generations: [UInt64] = [0, 0, 0, 0]
        var waiters: [UInt64: Waiter] = [:]
        var nextWaiter: UInt64 = 0
        var shuttingDown = false

        func generation(of topics: Topics) -> UInt64 {
            (0..<4).reduce(0) { sum, bit in topics.contains(Topics(rawValue: 1 << bit)) ? sum &+ generations[bit] : sum }
        }
    }
    private let state = Mutex(State())

    public init() {}

    private let relay = Mutex<(@Sendable (Topics) -> Void)?>(nil)

    /// Passes every local notification to `relay` as well (replicas forward them to each other).
    public func relayNotifications(to relay: @escaping @Sendable (Topics) -> Void) {
        self.relay.withLock { $0 = relay }
    }

    /// Wakes the waiters of any of `topics`, here and, through the relay, on the other replicas.
    public func notify(_ topics: Topics) {
        relay.withLock { $0 }?(topics)
        notifyHere(topics)
    }

    /// Wakes the waiters of any of `topics` in this process only (a notification another replica sent).
    public func notifyHere(_ topics: Topics) {
        let woken = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            for bit in 0..<4 where topics.contains(Topics(rawValue: 1 << bit)) { state.generations[bit] &+= 1 }
            let ids = state.waiters.filter { !$0.value.topics.isDisjoint(with: topics) }.map(\.key)
            return ids.compactMap { state.waiters.removeValue(forKey: $0)?.continuation }
        }
        for continuation in woken { continuation.resume() }
    }

    /// Wakes every waiter.
    public func notifyAll() { notify(.all) }

    /// Wakes everyone and makes waits return at once from now on: held polls and streams end so a
    /// graceful shutdown does not wait out their timeouts.
    public func shutDown() {
        state.withLock { $0.shuttingDown = true }
        notifyAll()
    }

    public var isShuttingDown: Bool { state.withLock { $0.shuttingDown } }

    /// The current generation of `topics`; pass it to `wait(for:after:until:)` so a notification between a
    /// check and the wait is not missed.
    public func generation(of topics: Topics) -> UInt64 { state.withLock { $0.generation(of: topics) } }

    /// Returns when `topics` were notified after `generation`, at `deadline`, or when the task is cancelled.
    public func wait(for topics: Topics, after generation: UInt64, until deadline: ContinuousClock.Instant) async {
        let id = state.withLock { state -> UInt64 in
            state.nextWaiter &+= 1
            return state.nextWaiter
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                        let resumeNow = self.state.withLock { state -> Bool in
                            if state.generation(of: topics) != generation || state.shuttingDown || Task.isCancelled {
                                return true
                            }
                            state.waiters[id] = Waiter(topics: topics, continuation: continuation)
                            return false
                        }
                        if resumeNow { continuation.resume() }
                    }
                } onCancel: {
                    self.state.withLock { $0.waiters.removeValue(forKey: id) }?.continuation.resume()
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
