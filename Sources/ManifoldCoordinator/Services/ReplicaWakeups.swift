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
        notifier.relayNotifications { topics, hints in outbox.add(Message(topics: topics, hints: hints)) }
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

    /// What one `NOTIFY` says: topics and, when every piece of work it carries came with them, the new jobs' hints
    /// (so each replica wakes one held poll per job instead of all of them).
    struct Message: Sendable, Equatable {
        var topics: WorkNotifier.Topics
        var hints: [WorkNotifier.WorkHint]?

        /// This message and `other` as one: hints survive only if both had them (work without hints wakes all).
        func merged(with other: Message) -> Message {
            let work = topics.contains(.work) || other.topics.contains(.work)
            var hints: [WorkNotifier.WorkHint]?
            if work {
                let mine = topics.contains(.work) ? self.hints : []
                let theirs = other.topics.contains(.work) ? other.hints : []
                if let mine, let theirs, mine.count + theirs.count <= ReplicaWakeups.maxHints { hints = mine + theirs }
            }
            return Message(topics: topics.union(other.topics), hints: hints)
        }
    }

    /// More new jobs than this in one message, and the replicas wake all their polls instead.
    static let maxHints = 64

    /// The text of a message: `REPLICA topic,topic`, then ` ` and the hints as JSON when there are any and they fit
    /// PostgreSQL's 8000-byte payload limit.
    static func payload(replica: String, topics: WorkNotifier.Topics, hints: [WorkNotifier.WorkHint]? = nil) -> String {
        let text = replica + " " + names.filter { topics.contains($0.topic) }.map(\.name).joined(separator: ",")
        guard topics.contains(.work), let hints, !hints.isEmpty,
            let json = try? JSONEncoder().encode(hints), text.utf8.count + 1 + json.count <= 7_900
        else { return text }
        return text + " " + String(decoding: json, as: UTF8.self)
    }

    /// The message from another replica; nil for this replica's own messages and for text that is not a message.
    /// Hints that do not parse count as none: every poll wakes, which is always safe.
    static func message(of payload: String, ignoring replica: String) -> Message? {
        let parts = payload.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0] != replica[...] else { return nil }
        var topics: WorkNotifier.Topics = []
        for name in parts[1].split(separator: ",") {
            guard let known = names.first(where: { $0.name == name }) else { continue }
            topics.insert(known.topic)
        }
        guard !topics.isEmpty else { return nil }
        var hints: [WorkNotifier.WorkHint]?
        if parts.count == 3, topics.contains(.work) {
            hints = try? JSONDecoder().decode([WorkNotifier.WorkHint].self, from: Data(parts[2].utf8))
            if hints?.isEmpty == true { hints = nil }
        }
        return Message(topics: topics, hints: hints)
    }

    /// The topics of a message from another replica (see ``message(of:ignoring:)``).
    static func topics(of payload: String, ignoring replica: String) -> WorkNotifier.Topics? {
        message(of: payload, ignoring: replica)?.topics
    }

    static let names: [(name: Substring, topic: WorkNotifier.Topics)] = [
        ("work", .work), ("progress", .progress), ("verification", .verification), ("publication", .publication),
    ]

    private func send(_ outbox: Outgoing) async {
        while let message = await outbox.next() {
            do {
                try await channel.publish(Self.payload(replica: replica, topics: message.topics, hints: message.hints))
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
                        guard let message = Self.message(of: payload, ignoring: self.replica) else { return }
                        if let hints = message.hints {
                            self.notifier.notifyWorkHere(hints, also: message.topics.subtracting(.work))
                        } else {
                            self.notifier.notifyHere(message.topics)
                        }
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

    /// Messages waiting to be sent, merged while a send is under way.
    final class Outgoing: Sendable {
        private struct State {
            var pending: Message?
            var waiter: CheckedContinuation<Message?, Never>?
            var finished = false
        }
        private let state = Mutex(State())

        func add(_ message: Message) {
            let resume = state.withLock { state -> (CheckedContinuation<Message?, Never>, Message)? in
                guard !state.finished else { return nil }
                if let waiter = state.waiter {
                    state.waiter = nil
                    return (waiter, message)
                }
                state.pending = state.pending.map { $0.merged(with: message) } ?? message
                return nil
            }
            if let (waiter, message) = resume { waiter.resume(returning: message) }
        }

        func next() async -> Message? {
            await withTaskCancellationHandler {
                await withCheckedContinuation { continuation in
                    let ready = state.withLock { state -> Message?? in
                        if state.finished || Task.isCancelled { return .some(nil) }
                        if let pending = state.pending {
                            state.pending = nil
                            return .some(pending)
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
            let waiter = state.withLock { state -> CheckedContinuation<Message?, Never>? in
                state.finished = true
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(returning: nil)
        }
    }
}
