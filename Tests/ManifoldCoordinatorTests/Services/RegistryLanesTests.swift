import Foundation
import Synchronization
import Testing

@testable import ManifoldCoordinator

/// The scheduling rules that keep one registry's trouble to itself.
@Suite struct RegistryLanesTests {
    @Test func eachRegistryHasItsOwnLimitAndSerialKeysRunOneAtATime() {
        let lanes = RegistryLanes(perRegistry: 2)
        #expect(lanes.start(item: "1", registries: ["slow.example"], serialKey: "slow.example/a|t1"))
        #expect(lanes.start(item: "2", registries: ["slow.example"], serialKey: "slow.example/b|t1"))
        // The slow registry is full; another registry is not affected.
        #expect(!lanes.start(item: "3", registries: ["slow.example"], serialKey: "slow.example/c|t1"))
        #expect(lanes.start(item: "4", registries: ["fast.example"], serialKey: "fast.example/a|t1"))
        // An item touching both needs room on both.
        #expect(!lanes.start(item: "5", registries: ["fast.example", "slow.example"], serialKey: "fast.example/x|t1"))
        // The same item never runs twice, and the same serial key waits for the one running.
        #expect(!lanes.start(item: "4", registries: ["fast.example"], serialKey: "fast.example/a|t1"))
        #expect(!lanes.start(item: "6", registries: ["fast.example"], serialKey: "fast.example/a|t1"))
        lanes.finish(item: "4")
        #expect(lanes.start(item: "6", registries: ["fast.example"], serialKey: "fast.example/a|t1"))
        lanes.finish(item: "1")
        #expect(lanes.running(on: "slow.example") == 1)
        #expect(lanes.start(item: "3", registries: ["slow.example"], serialKey: "slow.example/c|t1"))
    }

    @Test func itemsSharingAnyOfTheirSerialKeysRunOneAtATime() {
        let lanes = RegistryLanes(perRegistry: 8)
        #expect(lanes.start(item: "1", registries: ["r"], serialKeys: ["r/app:1.0", "r/app:latest"]))
        // Another tag of the same image runs beside it; one sharing a tag waits.
        #expect(lanes.start(item: "2", registries: ["r"], serialKeys: ["r/app:2.0"]))
        #expect(!lanes.start(item: "3", registries: ["r"], serialKeys: ["r/app:latest", "r/app:3.0"]))
        #expect(!lanes.start(item: "4", registries: ["r"], serialKeys: ["r/app:2.0"]))
        lanes.finish(item: "1")
        #expect(lanes.start(item: "3", registries: ["r"], serialKeys: ["r/app:latest", "r/app:3.0"]))
        // Finishing releases every key of the item, and only its own.
        #expect(!lanes.start(item: "5", registries: ["r"], serialKeys: ["r/app:3.0"]))
        #expect(lanes.start(item: "6", registries: ["r"], serialKeys: ["r/app:1.0"]))
        lanes.finish(item: "3")
        #expect(lanes.start(item: "5", registries: ["r"], serialKeys: ["r/app:3.0"]))
        #expect(!lanes.start(item: "4", registries: ["r"], serialKeys: ["r/app:2.0"]))
    }

    @Test func workPastItsDeadlineIsCancelledAndReportedAsTransient() async throws {
        let cancelled = Cancelled()
        await #expect {
            _ = try await RegistryDeadlineExceeded.run(.milliseconds(200), registries: ["slow.example"]) {
                do {
                    try await Task.sleep(for: .seconds(60))
                } catch {
                    cancelled.set()
                    throw error
                }
                return 1
            }
        } throws: { error in
            "\(error)".contains("did not finish within 0.2 seconds (slow.example slow or not answering)")
        }
        #expect(cancelled.value)
        let quick = try await RegistryDeadlineExceeded.run(.seconds(60), registries: ["fast.example"]) { 42 }
        #expect(quick == 42)
    }

    final class Cancelled: Sendable {
        private let flag = Mutex(false)
        func set() { flag.withLock { $0 = true } }
        var value: Bool { flag.withLock { $0 } }
    }
}
