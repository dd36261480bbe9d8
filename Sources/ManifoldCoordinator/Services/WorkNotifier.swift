import Foundation
import ManifoldCore
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

    /// A job that became available: what a held poll needs to offer to take it.
    public struct WorkHint: Sendable, Hashable, Codable {
        public var platform: Platform
        public var labels: [String: String]

        public init(platform: Platform, labels: [String: String] = [:]) {
            self.platform = platform
            self.labels = labels
        }
    }

    /// What a held poll can take: the platforms and labels its agent offers (after its pool's narrowing).
    public struct WorkOffer: Sendable, Hashable {
        public var platforms: [Platform]
        public var labels: [String: String]

        public init(platforms: [Platform], labels: [String: String]) {
            self.platforms = platforms
            self.labels = labels
        }

        /// The store's matching rule: one offered platform satisfies the job's, and every label it requires is offered.
        public func accepts(_ hint: WorkHint) -> Bool {
            hint.platform.isTakeable(requiring: hint.labels, byOffer: platforms, labels: labels)
        }
    }

    private struct Waiter {
        var topics: Topics
        var continuation: CheckedContinuation<Void, Never>
        /// For held polls: what the poll can take, so work with hints wakes only as many as can take it.
        var offer: WorkOffer?
        /// For followers of one build (event streams, logs): progress of other builds does not wake them.
        var build: String?

        /// Whether a notification of `topics` (progress of `build`, or of any build when nil) concerns this waiter.
        func isWoken(by topics: Topics, build notified: String?) -> Bool {
            if !self.topics.subtracting(.progress).isDisjoint(with: topics) { return true }
            guard self.topics.contains(.progress), topics.contains(.progress) else { return false }
            guard let build, let notified else { return true }
            return build == notified
        }
    }

    private struct State {
        /// One counter per topic, advanced by every notification of it (for progress: of any build or of none).
        var generations: [UInt64] = [0, 0, 0, 0]
        /// Progress notified without a build (every follower must read again).
        var unscopedProgress: UInt64 = 0
        /// Progress of one build, counted in a fixed number of buckets by the build's hash: a follower of one build
        /// compares its bucket, so other builds' progress does not make its wait return at once (two builds sharing a
        /// bucket only cost a spurious read), and the table never grows however many builds there are.
        var progressBuckets = [UInt64](repeating: 0, count: State.bucketCount)
        var waiters: [UInt64: Waiter] = [:]
        var nextWaiter: UInt64 = 0
        /// Held polls woken as the one chosen for a new job (``notifyWorkHere(_:also:build:)``), until their wait
        /// returns and takes their id out again.
        var chosenForWork: Set<UInt64> = []
        var shuttingDown = false

        static let bucketCount = 1024

        static func bucket(of build: String) -> Int {
            Int(UInt(bitPattern: build.hashValue) % UInt(bucketCount))
        }

        /// A new generation for each of `topics`; progress of `build` also advances that build's bucket, progress of
        /// no build in particular every build's.
        mutating func advance(_ topics: Topics, build: String? = nil) {
            for bit in 0..<4 where topics.contains(Topics(rawValue: 1 << bit)) { generations[bit] &+= 1 }
            guard topics.contains(.progress) else { return }
            if let build {
                progressBuckets[Self.bucket(of: build)] &+= 1
            } else {
                unscopedProgress &+= 1
            }
        }

        /// The sum of the counters of `topics`; with `build`, progress counts only that build's (and unscoped) progress.
        func generation(of topics: Topics, build: String? = nil) -> UInt64 {
            (0..<4).reduce(0) { sum, bit in
                let topic = Topics(rawValue: 1 << bit)
                guard topics.contains(topic) else { return sum }
                if topic == .progress, let build {
                    return sum &+ unscopedProgress &+ progressBuckets[Self.bucket(of: build)]
                }
                return sum &+ generations[bit]
            }
        }
    }
    private let state = Mutex(State())

    public init() {}

    private let relay = Mutex<(@Sendable (Topics, [WorkHint]?) -> Void)?>(nil)

    /// Passes every local notification to `relay` as well (replicas forward them to each other): its topics and, for
    /// new jobs announced with ``notifyWork(_:also:)``, their hints (nil when the work has none).
    public func relayNotifications(to relay: @escaping @Sendable (Topics, [WorkHint]?) -> Void) {
        self.relay.withLock { $0 = relay }
    }

    /// Wakes the waiters of any of `topics`, here and, through the relay, on the other replicas. With `build`, progress
    /// wakes only that build's followers (and waiters of any build's progress); without, every follower.
    public func notify(_ topics: Topics, build: String? = nil) {
        // Other replicas hear the topics only: their followers of every build read again (see ReplicaWakeups).
        relay.withLock { $0 }?(topics, nil)
        notifyHere(topics, build: build)
    }

    /// Wakes the waiters of any of `topics` in this process only (a notification another replica sent).
    public func notifyHere(_ topics: Topics, build: String? = nil) {
        let woken = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.advance(topics, build: build)
            let ids = state.waiters.filter { $0.value.isWoken(by: topics, build: build) }.map(\.key)
            return ids.compactMap { state.waiters.removeValue(forKey: $0)?.continuation }
        }
        for continuation in woken { continuation.resume() }
    }

    /// New jobs, one hint each: wakes, of the held polls that can take them, the longest-waiting one per job (and
    /// every waiter of `.work` that gave no offer), plus the waiters of `topics`. The other replicas get the hints of
    /// the jobs no poll here was chosen for, and do the same with those: one poll in the whole cluster per job, not one
    /// per replica (three replicas once sent three polls racing for each job, each straight to a lease write under the
    /// writers' lock, and two of them lost). A chosen poll that ends before it tried to lease (its agent went away)
    /// passes the wake-up on to every replica with ``notify(_:build:)``; one that tried and was handed nothing lost the
    /// job to another poll, or its agent may no longer take it (then the job waits for the next poll that can).
    /// With `build`, progress in `topics` is that build's (a new build: the list of builds and its own followers).
    public func notifyWork(_ hints: [WorkHint], also topics: Topics = [], build: String? = nil) {
        let unplaced = notifyWorkHere(hints, also: topics, build: build)
        let relay = relay.withLock { $0 }
        if hints.isEmpty || !unplaced.isEmpty {
            relay?(topics.union(.work), hints.isEmpty ? hints : unplaced)
        } else if !topics.isEmpty {
            relay?(topics, nil)
        }
    }

    /// ``notifyWork(_:also:build:)`` in this process only (hints another replica sent). Answers the hints no held poll
    /// here was chosen for.
    @discardableResult
    public func notifyWorkHere(_ hints: [WorkHint], also topics: Topics = [], build: String? = nil) -> [WorkHint] {
        let (woken, unplaced) = state.withLock { state -> ([CheckedContinuation<Void, Never>], [WorkHint]) in
            var unplaced: [WorkHint] = []
            state.advance(topics.union(.work), build: build)
            var ids = state.waiters.filter { entry in
                entry.value.isWoken(by: topics, build: build)
                    || (entry.value.topics.contains(.work) && entry.value.offer == nil)
            }.map(\.key)
            var chosen = Set(ids)
            let polls = state.waiters.filter {
                !chosen.contains($0.key) && $0.value.offer != nil && $0.value.topics.contains(.work)
            }
            .sorted { $0.key < $1.key }
            for hint in hints {
                guard let poll = polls.first(where: { !chosen.contains($0.key) && $0.value.offer?.accepts(hint) == true })
                else {
                    unplaced.append(hint)
                    continue
                }
                chosen.insert(poll.key)
                ids.append(poll.key)
                state.chosenForWork.insert(poll.key)
            }
            return (ids.compactMap { state.waiters.removeValue(forKey: $0)?.continuation }, unplaced)
        }
        for continuation in woken { continuation.resume() }
        return unplaced
    }

    /// Wakes every waiter.
    public func notifyAll() { notify(.all) }

    /// The topics whose waits a shutdown ends: held polls (`work`) and event streams (`progress`), which are requests
    /// the server waits for. The verifier's and publisher's waits are not: those services run until their own turn
    /// in the graceful shutdown cancels them, and a wait that returned at once would turn each of their loops into a
    /// busy one for as long as the server takes to finish its requests (once seen: a core and a store read per
    /// iteration for a minute, and two thousand log lines a second when the database was gone too).
    static let endedByShutdown: Topics = [.work, .progress]

    /// Wakes held polls and event streams in this process, and makes their waits return at once from now on, so a
    /// graceful shutdown does not wait out their timeouts (other replicas are not told: nothing changed for them).
    public func shutDown() {
        state.withLock { $0.shuttingDown = true }
        notifyHere(Self.endedByShutdown)
    }

    public var isShuttingDown: Bool { state.withLock { $0.shuttingDown } }

    /// Whether two builds' progress is counted in the same bucket (tests).
    func sharesBucket(_ build: String, with other: String) -> Bool {
        State.bucket(of: build) == State.bucket(of: other)
    }

    /// How many waits are registered right now (tests wait for their waiters to be in place).
    var waiting: Int { state.withLock { $0.waiters.count } }

    /// The current generation of `topics`; pass it to `wait(for:after:until:)` so a notification between a
    /// check and the wait is not missed. A follower of one `build` passes it here and to the wait: then only that
    /// build's progress (or progress of no build in particular) since makes the wait return at once.
    public func generation(of topics: Topics, build: String? = nil) -> UInt64 {
        state.withLock { $0.generation(of: topics, build: build) }
    }

    /// Returns when `topics` were notified after `generation`, at `deadline`, or when the task is cancelled; answers
    /// whether it returned before the deadline. A held poll passes its `offer`, so work announced with hints wakes it
    /// only when it can take some of it; a follower of one build passes the `build` (here and to
    /// ``generation(of:build:)``), so other builds' progress leaves it asleep, and does not make it return at once
    /// either. (Once, a global progress generation made every follower's wait return at once whenever any build moved
    /// between its read and its wait: under load, each stream re-read its build in a loop.)
    @discardableResult
    public func wait(
        for topics: Topics, after generation: UInt64, until deadline: ContinuousClock.Instant, offer: WorkOffer? = nil,
        build: String? = nil
    ) async -> Bool {
        await waitForWake(for: topics, after: generation, until: deadline, offer: offer, build: build) != .deadline
    }

    /// How a held poll's wait ended.
    public enum WorkWake: Sendable, Equatable {
        case deadline
        /// Something of its topics changed, which may or may not concern it.
        case notified
        /// It was the poll chosen for a new job that its offer can take: worth a lease attempt without reading first.
        case chosenForWork
    }

    /// ``wait(for:after:until:offer:build:)`` for a held poll: also tells whether it was chosen for a new job.
    public func waitForWork(after generation: UInt64, until deadline: ContinuousClock.Instant, offer: WorkOffer) async -> WorkWake
    {
        await waitForWake(for: .work, after: generation, until: deadline, offer: offer, build: nil)
    }

    private func waitForWake(
        for topics: Topics, after generation: UInt64, until deadline: ContinuousClock.Instant, offer: WorkOffer?,
        build: String?
    ) async -> WorkWake {
        let id = state.withLock { state -> UInt64 in
            state.nextWaiter &+= 1
            return state.nextWaiter
        }
        let woken = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                        let resumeNow = self.state.withLock { state -> Bool in
                            if state.generation(of: topics, build: build) != generation || Task.isCancelled
                                || (state.shuttingDown && !topics.isDisjoint(with: Self.endedByShutdown))
                            {
                                return true
                            }
                            state.waiters[id] = Waiter(
                                topics: topics, continuation: continuation, offer: offer, build: build)
                            return false
                        }
                        if resumeNow { continuation.resume() }
                    }
                } onCancel: {
                    self.state.withLock { $0.waiters.removeValue(forKey: id) }?.continuation.resume()
                }
                return true
            }
            group.addTask {
                try? await Task.sleep(until: deadline, clock: .continuous)
                return false
            }
            let woken = await group.next() ?? false
            group.cancelAll()
            return woken
        }
        let chosen = state.withLock { $0.chosenForWork.remove(id) != nil }
        return chosen ? .chosenForWork : woken ? .notified : .deadline
    }
}
