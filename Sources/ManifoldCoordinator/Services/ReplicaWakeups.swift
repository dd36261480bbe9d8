import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// How replicas of one database reach each other: PostgreSQL's `LISTEN`/`NOTIFY` on one channel.
public protocol WakeupChannel: Sendable {
    /// Sends `payload` to every replica listening, this one included.
    func publish(_ payload: String) async throws
    /// Listens until the task is cancelled or the connection fails (then it throws). `.listening` comes first and
    /// again after every reconnect: anything sent meanwhile was lost.
    func listen(_ receive: @escaping @Sendable (WakeupEvent) async -> Void) async throws
}

public enum WakeupEvent: Sendable, Equatable {
    /// The listener is (again) connected; notifications sent while it was not are lost.
    case listening
    case message(String)
}

/// Carries wake-ups between replicas: what one replica's ``WorkNotifier`` is told (work queued, a report to
/// verify, a list to publish, progress) reaches the held polls, streams and services of every other replica.
///
/// Outgoing notifications are coalesced: while one `NOTIFY` is on its way, further topics are merged into the next
/// one, so a burst of changes costs one or two messages. Messages carry this replica's id, and a replica ignores its
/// own. Notifications are lost while a listener is disconnected, so after every (re)connect everything is woken
/// to re-scan the database, and a jittered safety wake-up every `safetyInterval` makes the verifier and publisher
/// look again even if a message was lost before the disconnect was noticed. (Held polls need none: they end at the
/// poll timeout and the agent polls again.)
public struct ReplicaWakeups: Service {
    let notifier: WorkNotifier
    let channel: any WakeupChannel
    let replica: String
    let safetyInterval: Duration
    let logger: Logger

    public init(
        notifier: WorkNotifier, channel: any WakeupChannel, replica: String = UUID().uuidString.lowercased(),
        safetyInterval: Duration = .seconds(5), logger: Logger
    ) {
        self.notifier = notifier
        self.channel = channel
        self.replica = replica
        self.safetyInterval = safetyInterval
        self.logger = logger
    }

    public func run() async throws {
        let outbox = Outgoing()
        notifier.relayNotifications { topics in outbox.add(topics) }
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.send(outbox) }
                group.addTask { await self.receive() }
                group.addTask { await self.safetyWakeups() }
                await group.next()
                group.cancelAll()
            }
        }
        outbox.finish()
    }

    /// The text of a message: `REPLICA topic,topic`.
    static func payload(replica: String, topics: WorkNotifier.Topics) -> String {
        replica + " " + names.filter { topics.contains($0.topic) }.map(\.name).joined(separator: ",")
    }

    /// The topics of a message from another replica; nil for this replica's own messages and for text that is not
    /// a message.
    static func topics(of payload: String, ignoring replica: String) -> WorkNotifier.Topics? {
        let parts = payload.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0] != replica[...] else { return nil }
        var topics: WorkNotifier.Topics = []
        for name in parts[1].split(separator: ",") {
            guard let known = names.first(where: { $0.name == name }) else { continue }
            topics.insert(known.topic)
        }
        return topics.isEmpty ? nil : topics
    }

    static let names: [(name: Substring, topic: WorkNotifier.Topics)] = [
        ("work", .work), ("progress", .progress), ("verification", .verification), ("publication", .publication),
    ]

    private func send(_ outbox: Outgoing) async {
        while let topics = await outbox.next() {
            do {
                try await channel.publish(Self.payload(replica: replica, topics: topics))
            } catch {
                // The other replicas find the change at their safety wake-up or their agents' next poll.
                logger.warning("could not tell the other replicas", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    private func receive() async {
        var delay = Duration.milliseconds(100)
        while !Task.isCancelled {
            do {
                try await channel.listen { event in
                    switch event {
                    case .listening:
                        self.notifier.notifyHere(.all)
                    case .message(let payload):
                        if let topics = Self.topics(of: payload, ignoring: self.replica) { self.notifier.notifyHere(topics) }
                    }
                }
                delay = .milliseconds(100)
            } catch {
                if Task.isCancelled { return }
                logger.warning(
                    "lost the connection that listens to the other replicas; reconnecting", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            }
        }
    }

    private func safetyWakeups() async {
        while !Task.isCancelled {
            let jitter = Double.random(in: 0.8...1.2)
            try? await Task.sleep(for: safetyInterval * jitter)
            notifier.notifyHere([.verification, .publication])
        }
    }

    /// Topics waiting to be sent, merged while a send is under way.
    final class Outgoing: Sendable {
        private struct State {
            var pending: WorkNotifier.Topics = []
            var waiter: CheckedContinuation<WorkNotifier.Topics?, Never>?
            var finished = false
        }
        private let state = Mutex(State())

        func add(_ topics: WorkNotifier.Topics) {
            let resume = state.withLock { state -> (CheckedContinuation<WorkNotifier.Topics?, Never>, WorkNotifier.Topics)? in
                guard !state.finished else { return nil }
                if let waiter = state.waiter {
                    state.waiter = nil
                    return (waiter, topics)
                }
                state.pending.formUnion(topics)
                return nil
            }
            if let (waiter, topics) = resume { waiter.resume(returning: topics) }
        }

        func next() async -> WorkNotifier.Topics? {
            await withTaskCancellationHandler {
                await withCheckedContinuation { continuation in
                    let ready = state.withLock { state -> WorkNotifier.Topics?? in
                        if state.finished || Task.isCancelled { return .some(nil) }
                        if !state.pending.isEmpty {
                            defer { state.pending = [] }
                            return .some(state.pending)
                        }
                        state.waiter = continuation
                        return .none
                    }
                    if let ready { continuation.resume(returning: ready) }
                }
            } onCancel: {
                finish()
            }
        }

        func finish() {
            let waiter = state.withLock { state -> CheckedContinuation<WorkNotifier.Topics?, Never>? in
                state.finished = true
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(returning: nil)
        }
    }
}
