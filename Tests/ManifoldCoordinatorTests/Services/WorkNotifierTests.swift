import Foundation
import ManifoldCore
import Synchronization
import Testing

@testable import ManifoldCoordinator

/// Who a notification wakes: a new job wakes one held poll that can take it (the longest waiting), never the polls of
/// other platforms or labels; waiters that gave no offer and waiters of the other topics wake as before.
@Suite struct WorkNotifierTests {
    @Test func aNewJobWakesOneHeldPollThatCanTakeIt() async throws {
        let notifier = WorkNotifier()
        let woken = WokenWaiters()
        let amd64 = WorkNotifier.WorkOffer(platforms: [try Platform(parsing: "linux/amd64")], labels: [:])
        let arm64 = WorkNotifier.WorkOffer(platforms: [try Platform(parsing: "linux/arm64")], labels: [:])
        let waiters: [(name: String, topics: WorkNotifier.Topics, offer: WorkNotifier.WorkOffer?)] = [
            ("amd64-1", .work, amd64), ("arm64", .work, arm64), ("amd64-2", .work, amd64), ("amd64-3", .work, amd64),
            ("no-offer", .work, nil), ("stream", .progress, nil),
        ]
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, waiter) in waiters.enumerated() {
                // One at a time, so the order they wait in is the order above.
                group.addTask {
                    await notifier.wait(
                        for: waiter.topics, after: notifier.generation(of: waiter.topics), until: .now + .seconds(120),
                        offer: waiter.offer)
                    woken.withLock { $0.append(waiter.name) }
                }
                try await Self.until { notifier.waiting == index + 1 }
            }

            notifier.notifyWork([WorkNotifier.WorkHint(platform: try Platform(parsing: "linux/amd64"))], also: .progress)
            try await Self.until { woken.withLock { $0.count } == 3 }
            #expect(Set(woken.withLock { $0 }) == ["amd64-1", "no-offer", "stream"])
            #expect(notifier.waiting == 3)

            // A job whose labels no held poll offers wakes none; a second amd64 job wakes the next amd64 poll.
            notifier.notifyWork([
                WorkNotifier.WorkHint(platform: try Platform(parsing: "linux/amd64"), labels: ["gpu": "yes"]),
                WorkNotifier.WorkHint(platform: try Platform(parsing: "linux/amd64")),
            ])
            try await Self.until { woken.withLock { $0.count } == 4 }
            #expect(woken.withLock { $0.last } == "amd64-2")
            #expect(notifier.waiting == 2)

            // Work without hints (a lost lease came back, another replica's submission) wakes every held poll.
            notifier.notify(.work)
            try await group.waitForAll()
            #expect(Set(woken.withLock { $0 }.suffix(2)) == ["arm64", "amd64-3"])
        }
    }

    /// The poll chosen for a new job learns that it was (it leases without reading first); a poll woken by work
    /// without hints, or by nothing before its deadline, learns that too, and a later wait of the chosen poll is not
    /// taken for chosen again.
    @Test func aHeldPollLearnsWhetherItWasChosenForANewJob() async throws {
        let notifier = WorkNotifier()
        let amd64 = WorkNotifier.WorkOffer(platforms: [try Platform(parsing: "linux/amd64")], labels: [:])
        let first = Task {
            await notifier.waitForWork(after: notifier.generation(of: .work), until: .now + .seconds(120), offer: amd64)
        }
        try await Self.until { notifier.waiting == 1 }
        let second = Task {
            await notifier.waitForWork(after: notifier.generation(of: .work), until: .now + .seconds(120), offer: amd64)
        }
        try await Self.until { notifier.waiting == 2 }
        notifier.notifyWork([WorkNotifier.WorkHint(platform: try Platform(parsing: "linux/amd64"))])
        #expect(await first.value == .chosenForWork)
        #expect(notifier.waiting == 1)
        notifier.notify(.work)
        #expect(await second.value == .notified)
        let again = await notifier.waitForWork(
            after: notifier.generation(of: .work), until: .now + .milliseconds(50), offer: amd64)
        #expect(again == .deadline)
    }

    /// Replicas hear only of the new jobs no poll here was chosen for: one poll in the whole cluster per job. When
    /// every job found a poll here, the others hear the other topics alone; a chosen poll that ends without trying to
    /// lease is not this notifier's business (the poll passes it on with `notify`, which always reaches them).
    @Test func otherReplicasHearOnlyOfJobsNoPollHereWasChosenFor() async throws {
        let notifier = WorkNotifier()
        let relayed = Mutex<[(topics: WorkNotifier.Topics, hints: [WorkNotifier.WorkHint]?)]>([])
        notifier.relayNotifications { topics, hints in relayed.withLock { $0.append((topics, hints)) } }
        let amd64 = try Platform(parsing: "linux/amd64")
        let arm64 = try Platform(parsing: "linux/arm64")
        let poll = Task {
            await notifier.waitForWork(
                after: notifier.generation(of: .work), until: .now + .seconds(120),
                offer: WorkNotifier.WorkOffer(platforms: [amd64], labels: [:]))
        }
        try await Self.until { notifier.waiting == 1 }
        notifier.notifyWork(
            [WorkNotifier.WorkHint(platform: amd64), WorkNotifier.WorkHint(platform: arm64)], also: .progress, build: "b1")
        #expect(await poll.value == .chosenForWork)
        var sent = relayed.withLock { $0 }
        #expect(sent.count == 1)
        #expect(sent.first?.topics == [.work, .progress])
        #expect(sent.first?.hints == [WorkNotifier.WorkHint(platform: arm64)])

        // Every job placed here: the others hear of the progress, not of work.
        let second = Task {
            await notifier.waitForWork(
                after: notifier.generation(of: .work), until: .now + .seconds(120),
                offer: WorkNotifier.WorkOffer(platforms: [arm64], labels: [:]))
        }
        try await Self.until { notifier.waiting == 1 }
        notifier.notifyWork([WorkNotifier.WorkHint(platform: arm64)], also: .progress, build: "b2")
        #expect(await second.value == .chosenForWork)
        sent = relayed.withLock { $0 }
        #expect(sent.count == 2)
        #expect(sent.last?.topics == .progress)
        #expect(sent.last?.hints == nil)

        // No poll here at all: every hint goes on.
        notifier.notifyWork([WorkNotifier.WorkHint(platform: amd64)])
        sent = relayed.withLock { $0 }
        #expect(sent.last?.topics == .work)
        #expect(sent.last?.hints == [WorkNotifier.WorkHint(platform: amd64)])
    }

    /// A shutdown ends held polls and event streams, now and for every later wait, but not the verifier's and the
    /// publisher's waits: those run on until their service is cancelled, and a wait returning at once made their loops
    /// busy ones while the server finished its requests.
    @Test func aShutdownEndsPollsAndStreamsButNotTheServicesWaits() async throws {
        let notifier = WorkNotifier()
        let amd64 = WorkNotifier.WorkOffer(platforms: [try Platform(parsing: "linux/amd64")], labels: [:])
        let poll = Task {
            await notifier.waitForWork(after: notifier.generation(of: .work), until: .now + .seconds(120), offer: amd64)
        }
        let stream = Task {
            await notifier.wait(
                for: .progress, after: notifier.generation(of: .progress, build: "b1"), until: .now + .seconds(120),
                build: "b1")
        }
        let verifier = Task {
            await notifier.wait(
                for: .verification, after: notifier.generation(of: .verification), until: .now + .milliseconds(300))
        }
        try await Self.until { notifier.waiting == 3 }
        notifier.shutDown()
        #expect(await poll.value == .notified)
        #expect(await stream.value)
        #expect(await verifier.value == false, "the verifier's wait ran to its deadline")
        // Later waits: polls and streams return at once, the services' waits still wait.
        #expect(
            await notifier.waitForWork(after: notifier.generation(of: .work), until: .now + .seconds(120), offer: amd64)
                == .notified)
        #expect(
            await notifier.wait(
                for: .publication, after: notifier.generation(of: .publication), until: .now + .milliseconds(200)) == false)
        // They still wake for their own topic.
        let publisher = Task {
            await notifier.wait(for: .publication, after: notifier.generation(of: .publication), until: .now + .seconds(120))
        }
        try await Self.until { notifier.waiting == 1 }
        notifier.notify(.publication)
        #expect(await publisher.value)
    }

    /// A submission wakes the held polls that can take its jobs, the list of builds (followers of every build) and the
    /// new build's own followers, not the followers of other builds, which once all read their builds again.
    @Test func aSubmissionWakesNoFollowerOfAnotherBuild() async throws {
        let notifier = WorkNotifier()
        let woken = WokenWaiters()
        let followers: [(name: String, build: String?)] = [("other", "bld_other"), ("list", nil)]
        try await withThrowingTaskGroup(of: Void.self) { group in
            for follower in followers {
                group.addTask {
                    await notifier.wait(
                        for: .progress, after: notifier.generation(of: .progress, build: follower.build),
                        until: .now + .seconds(120), build: follower.build)
                    woken.withLock { $0.append(follower.name) }
                }
            }
            try await Self.until { notifier.waiting == 2 }
            let other = notifier.generation(of: .progress, build: "bld_other")
            notifier.notifyWork(
                [WorkNotifier.WorkHint(platform: try Platform(parsing: "linux/amd64"))], also: .progress, build: "bld_new")
            try await Self.until { woken.withLock { $0.count } == 1 }
            #expect(woken.withLock { $0 } == ["list"])
            #expect(notifier.waiting == 1)
            #expect(
                notifier.generation(of: .progress, build: "bld_other") == other
                    || notifier.sharesBucket("bld_other", with: "bld_new"))
            notifier.notify(.progress, build: "bld_other")
            try await group.waitForAll()
        }
    }

    /// A build's progress (a log chunk, a phase) wakes that build's followers and those of every build, not the
    /// followers of other builds; progress without a build (another replica's, an admin action) wakes them all. A wait
    /// says whether it was woken, so a stream sends its keep-alive only after a quiet 15 s, however busy other builds are.
    @Test func progressOfOneBuildWakesOnlyItsFollowers() async throws {
        let notifier = WorkNotifier()
        let woken = WokenWaiters()
        let outcomes = WakeOutcomes()
        let followers: [(name: String, build: String?)] = [
            ("a-events", "bld_a"), ("a-log", "bld_a"), ("b", "bld_b"), ("any", nil),
        ]
        try await withThrowingTaskGroup(of: Void.self) { group in
            for follower in followers {
                group.addTask {
                    let notified = await notifier.wait(
                        for: .progress, after: notifier.generation(of: .progress, build: follower.build),
                        until: .now + .seconds(120), build: follower.build)
                    outcomes.record(follower.name, notified)
                    woken.withLock { $0.append(follower.name) }
                }
            }
            try await Self.until { notifier.waiting == 4 }

            notifier.notify(.progress, build: "bld_a")
            try await Self.until { woken.withLock { $0.count } == 3 }
            #expect(Set(woken.withLock { $0 }) == ["a-events", "a-log", "any"])
            #expect(notifier.waiting == 1)
            notifier.notify(.verification, build: "bld_a")
            #expect(notifier.waiting == 1, "other topics do not concern followers")

            notifier.notify(.progress)
            try await group.waitForAll()
            #expect(woken.withLock { $0.last } == "b")
        }
        #expect(outcomes.all == ["a-events": true, "a-log": true, "b": true, "any": true])
        let quiet = await notifier.wait(
            for: .progress, after: notifier.generation(of: .progress, build: "bld_a"), until: .now + .milliseconds(200),
            build: "bld_a")
        #expect(!quiet, "a wait that reached its deadline says so")
    }

    /// A follower reads, then waits: progress of its build in between makes the wait return at once (nothing is
    /// missed), progress of other builds does not (under load, every stream once re-read its build in a loop).
    @Test func aFollowersWaitReturnsAtOnceOnlyForItsOwnBuildsProgressSinceItsRead() async throws {
        let notifier = WorkNotifier()
        var others = notifier.generation(of: .progress, build: "bld_a")
        for number in 0..<5000 { notifier.notify(.progress, build: "bld_other_\(number)") }
        // Some of 5,000 other builds may share the follower's bucket: those count, the rest do not.
        let collisions = (0..<5000).filter { notifier.sharesBucket("bld_other_\($0)", with: "bld_a") }.count
        #expect(notifier.generation(of: .progress, build: "bld_a") == others &+ UInt64(collisions))
        others = notifier.generation(of: .progress, build: "bld_a")
        for number in 0..<5000 where !notifier.sharesBucket("bld_other_\(number)", with: "bld_a") {
            notifier.notify(.progress, build: "bld_other_\(number)")
        }
        let slept = ContinuousClock.now
        let asleep = await notifier.wait(for: .progress, after: others, until: .now + .milliseconds(300), build: "bld_a")
        #expect(!asleep, "other builds' progress since the read woke the follower")
        #expect(ContinuousClock.now - slept >= .milliseconds(300))

        let before = notifier.generation(of: .progress, build: "bld_a")
        notifier.notify(.progress, build: "bld_a")
        #expect(await notifier.wait(for: .progress, after: before, until: .now + .seconds(120), build: "bld_a"))
        // Progress of no build in particular concerns every follower, and every build's progress the ones of all.
        let scoped = notifier.generation(of: .progress, build: "bld_a")
        let all = notifier.generation(of: .progress)
        notifier.notify(.progress)
        #expect(await notifier.wait(for: .progress, after: scoped, until: .now + .seconds(120), build: "bld_a"))
        let allAgain = notifier.generation(of: .progress)
        #expect(allAgain != all)
        notifier.notify(.progress, build: "bld_other_1")
        #expect(await notifier.wait(for: .progress, after: allAgain, until: .now + .seconds(120)))
    }

    @Test func anOfferAcceptsWhatTheStoreWouldLeaseToIt() throws {
        let windows = WorkNotifier.WorkOffer(
            platforms: [try Platform(parsing: "windows/amd64:10.0.20348.2227")], labels: ["pool": "release", "gpu": "yes"])
        #expect(windows.accepts(WorkNotifier.WorkHint(platform: try Platform(parsing: "windows/amd64:10.0.20348"))))
        #expect(windows.accepts(WorkNotifier.WorkHint(platform: try Platform(parsing: "windows/amd64"), labels: ["gpu": "yes"])))
        #expect(!windows.accepts(WorkNotifier.WorkHint(platform: try Platform(parsing: "windows/amd64:10.0.17763"))))
        #expect(!windows.accepts(WorkNotifier.WorkHint(platform: try Platform(parsing: "windows/amd64"), labels: ["gpu": "no"])))
        #expect(!windows.accepts(WorkNotifier.WorkHint(platform: try Platform(parsing: "linux/amd64"))))
    }

    private static func until(_ condition: @Sendable () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while !condition() {
            guard ContinuousClock.now < deadline else { throw CancellationError() }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}

/// The names of waiters in the order they were woken, shared with the tasks that wait.
final class WokenWaiters: Sendable {
    private let names = Mutex<[String]>([])
    func withLock<T: Sendable>(_ body: (inout [String]) -> T) -> T { names.withLock { body(&$0) } }
}

/// Whether each named waiter was woken by a notification (true) or its deadline (false).
final class WakeOutcomes: Sendable {
    private let outcomes = Mutex<[String: Bool]>([:])
    func record(_ name: String, _ notified: Bool) { outcomes.withLock { $0[name] = notified } }
    var all: [String: Bool] { outcomes.withLock { $0 } }
}
