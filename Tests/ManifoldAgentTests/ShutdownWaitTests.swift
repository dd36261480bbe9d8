import Foundation
import ManifoldTestSupport
import Synchronization
import Testing

@testable import ManifoldAgent

/// Shutdown stages and stop requests are waited for without a clock: the change itself resumes the waiters, a wait
/// for something already true returns at once, and a cancelled wait returns and leaves nothing behind.
@Suite struct ShutdownWaitTests {
    @Test func aStageChangeResumesExactlyTheWaitsItSatisfies() async throws {
        let shutdown = ShutdownState()
        let drained = Task { await shutdown.wait(for: .draining) }
        let cancelled = Task { await shutdown.wait(for: .cancelling) }
        #expect(await ProcessProbe.waitUntil { shutdown.waiting == 2 })

        shutdown.escalate()
        await drained.value
        #expect(shutdown.waiting == 1, "the wait for .cancelling still waits")

        shutdown.raise(to: .cancelling)
        await cancelled.value
        #expect(shutdown.waiting == 0)
        // Already there: returns without waiting.
        await shutdown.wait(for: .draining)
        #expect(shutdown.waiting == 0)
    }

    @Test func aCancelledWaitReturnsAndIsForgotten() async throws {
        let shutdown = ShutdownState()
        let waiting = Task { await shutdown.wait(for: .cancelling) }
        #expect(await ProcessProbe.waitUntil { shutdown.waiting == 1 })
        waiting.cancel()
        await waiting.value
        #expect(shutdown.waiting == 0)
        #expect(shutdown.stage == .running)

        let stop = StopSignal()
        let stopping = Task { await stop.wait() }
        stopping.cancel()
        await stopping.value
        #expect(stop.requested == nil)
    }

    @Test func aStopRequestEndsTheOperationItRaces() async throws {
        let stop = StopSignal()
        let raced = Task {
            try await stop.unlessRequested {
                try await Task.sleep(for: .seconds(600))
                return "finished"
            }
        }
        try await Task.sleep(for: .milliseconds(100))
        let requested = ContinuousClock.now
        stop.request(.timeout)
        stop.request(.cancelled)
        #expect(try await raced.value == nil)
        // Far below the operation's 600 s, so it was cut; not tighter: in the library phase, with hundreds of tests
        // sharing the cooperative pool, resuming has taken 30 s.
        #expect(ContinuousClock.now - requested < .seconds(300))
        #expect(stop.requested == .timeout, "the first reason is kept")
        // After a request, a new race does not even start its operation.
        let started = Mutex(false)
        #expect(try await stop.unlessRequested { started.withLock { $0 = true } } == nil)
        #expect(!started.withLock { $0 })
    }
}
