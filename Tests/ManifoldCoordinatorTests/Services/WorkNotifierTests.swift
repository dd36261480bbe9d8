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
