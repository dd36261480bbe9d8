import Foundation
import Logging
import ManifoldCore
import ServiceLifecycle
import Synchronization
import Testing

@testable import ManifoldCoordinator

/// A channel in memory with PostgreSQL's delivery rules: every listener gets every message sent while it listens,
/// the sender's own included; a listener can be cut off (its `listen` throws) and then misses what is sent.
final class MemoryWakeupChannel: WakeupChannel {
    private struct Listener {
        var receive: @Sendable (WakeupEvent) async -> Void
        var cut: CheckedContinuation<Void, Error>
    }
    private let listeners = Mutex<[UUID: Listener]>([:])
    let sent = Mutex<[String]>([])
    /// How long a `NOTIFY` takes to go out (a round trip to the database).
    let publishDelay: Duration

    init(publishDelay: Duration = .zero) {
        self.publishDelay = publishDelay
    }

    func publish(_ payload: String) async throws {
        if publishDelay > .zero { try await Task.sleep(for: publishDelay) }
        sent.withLock { $0.append(payload) }
        for listener in listeners.withLock({ Array($0.values) }) { await listener.receive(.message(payload)) }
    }

    func listen(_ receive: @escaping @Sendable (WakeupEvent) async -> Void) async throws {
        let id = UUID()
        await receive(.listening)
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
                listeners.withLock { $0[id] = Listener(receive: receive, cut: continuation) }
            }
        } onCancel: {
            listeners.withLock { $0.removeValue(forKey: id) }?.cut.resume(throwing: CancellationError())
        }
    }

    /// Drops every listener's connection, as a restarted database would.
    func cutAll() {
        let cut = listeners.withLock { listeners in
            defer { listeners.removeAll() }
            return listeners.values.map(\.cut)
        }
        struct ConnectionLost: Error {}
        for continuation in cut { continuation.resume(throwing: ConnectionLost()) }
    }

    var listenerCount: Int { listeners.withLock { $0.count } }
}

@Suite struct ReplicaWakeupsTests {
    static let logger = Logger(label: "test")

    /// Waits (up to 5 s) until `topics` are notified on `notifier` after `generation`; true if they were.
    static func woken(_ notifier: WorkNotifier, _ topics: WorkNotifier.Topics, after generation: UInt64) async -> Bool {
        await notifier.wait(for: topics, after: generation, until: .now + .seconds(5))
        return notifier.generation(of: topics) != generation
    }

    /// Replicas "a" and "b" on one channel (no safety wake-ups during a test).
    static func twoReplicas() -> (MemoryWakeupChannel, WorkNotifier, WorkNotifier, [ReplicaWakeups]) {
        let channel = MemoryWakeupChannel()
        let a = WorkNotifier()
        let b = WorkNotifier()
        let services = [a, b].enumerated().map { index, notifier in
            ReplicaWakeups(
                notifier: notifier, channel: channel, replica: index == 0 ? "a" : "b", safetyInterval: .seconds(3600),
                logger: Self.logger)
        }
        return (channel, a, b, services)
    }

    static func running(
        _ services: [ReplicaWakeups], _ body: @Sendable () async throws -> Void
    ) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for service in services { group.addTask { try await service.run() } }
            try await body()
            group.cancelAll()
        }
    }

    @Test func aNotificationOnOneReplicaWakesTheOthersOnce() async throws {
        let (channel, a, b, services) = Self.twoReplicas()
        try await Self.running(services) {
            while channel.listenerCount < 2 { try await Task.sleep(for: .milliseconds(10)) }
            let beforeA = a.generation(of: .work)
            let before = b.generation(of: .work)
            let untouched = b.generation(of: .publication)
            a.notify(.work)
            #expect(await Self.woken(b, .work, after: before))
            // b was woken for work only; a heard its own message back and ignored it (one local wake-up).
            #expect(b.generation(of: .publication) == untouched)
            try await Task.sleep(for: .milliseconds(100))
            #expect(a.generation(of: .work) == beforeA &+ 1)
            #expect(channel.sent.withLock { $0 } == ["a work"])
        }
    }

    @Test func aReconnectedListenerWakesEverythingToRescan() async throws {
        let channel = MemoryWakeupChannel()
        let b = WorkNotifier()
        let service = ReplicaWakeups(
            notifier: b, channel: channel, replica: "b", safetyInterval: .seconds(3600), logger: Self.logger)
        try await Self.running([service]) {
            while channel.listenerCount < 1 { try await Task.sleep(for: .milliseconds(10)) }
            let before = b.generation(of: .all)
            channel.cutAll()
            // A message sent while b is cut off is lost; the re-scan after the reconnect covers it.
            try await channel.publish("a work")
            #expect(await Self.woken(b, .work, after: before))
            while channel.listenerCount < 1 { try await Task.sleep(for: .milliseconds(10)) }
        }
    }

    @Test func burstsAreCoalescedIntoFewMessages() async throws {
        // Each message takes 100 ms to go out (a slow round trip to the database); a burst meanwhile becomes one.
        let channel = MemoryWakeupChannel(publishDelay: .milliseconds(100))
        let a = WorkNotifier()
        let service = ReplicaWakeups(
            notifier: a, channel: channel, replica: "a", safetyInterval: .seconds(3600), logger: Self.logger)
        try await Self.running([service]) {
            while channel.listenerCount < 1 { try await Task.sleep(for: .milliseconds(10)) }
            for _ in 0..<500 { a.notify(.progress) }
            a.notify(.publication)
            // The last notification goes out too (however busy the machine), in one of a few messages.
            let deadline = ContinuousClock.now + .seconds(30)
            while !channel.sent.withLock({ $0.contains { $0.contains("publication") } }), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            let sent = channel.sent.withLock { $0 }
            #expect(sent.contains { $0.contains("publication") })
            #expect(sent.count < 20, "\(sent.count) messages for one burst")
        }
    }

    @Test func theSafetyWakeupReachesTheServicesWithoutAnyMessage() async throws {
        let channel = MemoryWakeupChannel()
        let a = WorkNotifier()
        let service = ReplicaWakeups(
            notifier: a, channel: channel, replica: "a", safetyInterval: .milliseconds(200), logger: Self.logger)
        try await Self.running([service]) {
            while channel.listenerCount < 1 { try await Task.sleep(for: .milliseconds(10)) }
            let before = a.generation(of: .publication)
            #expect(await Self.woken(a, .publication, after: before))
            #expect(channel.sent.withLock { $0 }.isEmpty)
        }
    }

    /// A build submitted on one replica wakes one held poll per job that can take it on every other replica too: the
    /// hints travel in the message; an arm64 poll there, and the second amd64 poll, sleep on.
    @Test func newJobsWakeOneMatchingPollOnEveryOtherReplica() async throws {
        let (channel, a, b, services) = Self.twoReplicas()
        let amd64 = try Platform(parsing: "linux/amd64")
        let arm64 = try Platform(parsing: "linux/arm64")
        try await Self.running(services) {
            while channel.listenerCount < 2 { try await Task.sleep(for: .milliseconds(10)) }
            let woken = WokenWaiters()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (name, platform) in [("amd64-1", amd64), ("amd64-2", amd64), ("arm64", arm64)] {
                    let count = b.waiting
                    group.addTask {
                        await b.wait(
                            for: .work, after: b.generation(of: .work), until: .now + .seconds(60),
                            offer: WorkNotifier.WorkOffer(platforms: [platform], labels: [:]))
                        woken.withLock { $0.append(name) }
                    }
                    while b.waiting == count { try await Task.sleep(for: .milliseconds(10)) }
                }
                a.notifyWork([WorkNotifier.WorkHint(platform: amd64, labels: ["gpu": "yes"])], also: .progress)
                a.notifyWork([WorkNotifier.WorkHint(platform: amd64)], also: .progress)
                // Far above the wake-up itself: the library phase's shared pool was seen to take tens of seconds.
                let deadline = ContinuousClock.now + .seconds(120)
                while woken.withLock({ $0.isEmpty }), ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(10))
                }
                try await Task.sleep(for: .milliseconds(200))
                #expect(woken.withLock { $0 } == ["amd64-1"])
                #expect(b.waiting == 2)
                b.notifyHere(.work)
                try await group.waitForAll()
            }
            #expect(channel.sent.withLock { $0 }.allSatisfy { $0.hasPrefix("a work,progress [") })
        }
    }

    @Test func hintsRideInThePayloadAndAnythingUnclearWakesEveryone() throws {
        let hints = [
            WorkNotifier.WorkHint(platform: try Platform(parsing: "windows/amd64:10.0.20348"), labels: ["gpu": "yes"])
        ]
        let payload = ReplicaWakeups.payload(replica: "r1", topics: [.work, .progress], hints: hints)
        #expect(payload.hasPrefix("r1 work,progress ["))
        #expect(ReplicaWakeups.message(of: payload, ignoring: "r2") == .init(topics: [.work, .progress], hints: hints))
        // Broken or missing hints: plain work, which wakes every poll.
        #expect(ReplicaWakeups.message(of: "r1 work [{broken", ignoring: "r2") == .init(topics: .work, hints: nil))
        #expect(ReplicaWakeups.message(of: "r1 work", ignoring: "r2") == .init(topics: .work, hints: nil))
        // Too many to fit a NOTIFY: sent without them.
        let many = Array(repeating: hints[0], count: 400)
        #expect(ReplicaWakeups.payload(replica: "r1", topics: .work, hints: many) == "r1 work")
        // Merging while a send is under way keeps hints only while every piece of work had them.
        let hinted = ReplicaWakeups.Message(topics: .work, hints: hints)
        #expect(hinted.merged(with: .init(topics: .progress)) == .init(topics: [.work, .progress], hints: hints))
        #expect(hinted.merged(with: hinted).hints == hints + hints)
        #expect(hinted.merged(with: .init(topics: .work, hints: nil)).hints == nil)
        let full = ReplicaWakeups.Message(topics: .work, hints: Array(repeating: hints[0], count: ReplicaWakeups.maxHints))
        #expect(full.merged(with: hinted).hints == nil)
    }

    @Test func payloadsNameTheSenderAndKnownTopicsOnly() {
        #expect(ReplicaWakeups.payload(replica: "r1", topics: [.work, .publication]) == "r1 work,publication")
        #expect(ReplicaWakeups.topics(of: "r2 work,progress", ignoring: "r1") == [.work, .progress])
        #expect(ReplicaWakeups.topics(of: "r1 work", ignoring: "r1") == nil)
        #expect(ReplicaWakeups.topics(of: "r2 nonsense", ignoring: "r1") == nil)
        #expect(ReplicaWakeups.topics(of: "garbage", ignoring: "r1") == nil)
    }
}
