import Foundation
import Testing

@testable import ManifoldAgent

@Suite struct HeartbeatCadenceTests {
    let cadence = HeartbeatCadence(intervalSeconds: 10, leaseTTLSeconds: 60)

    @Test func eachHeartbeatHasADeadlineOfAThirdOfTheTTL() {
        #expect(cadence.requestTimeout == .seconds(20))
        #expect(HeartbeatCadence(intervalSeconds: 1, leaseTTLSeconds: 2).requestTimeout == .seconds(1))
        // A coordinator that now leases for less than it said at join: a third of its lease, not of the join's.
        #expect(cadence.requestTimeout(leaseLength: .seconds(12)) == .seconds(4))
        #expect(cadence.requestTimeout(leaseLength: .seconds(600)) == .seconds(20))
        #expect(cadence.requestTimeout(leaseLength: .seconds(2)) == .seconds(1))
    }

    @Test func theNextHeartbeatComesAtAThirdOfTheLeaseLeftBetweenOneSecondAndTheInterval() {
        #expect(cadence.delay(remaining: .seconds(60)) == .seconds(10))
        #expect(cadence.delay(remaining: .seconds(30)) == .seconds(10))
        #expect(cadence.delay(remaining: .seconds(15)) == .seconds(5))
        #expect(cadence.delay(remaining: .seconds(6)) == .seconds(2))
        #expect(cadence.delay(remaining: .milliseconds(1500)) == .seconds(1))
        #expect(cadence.delay(remaining: .seconds(-5)) == .seconds(1))
        // A short lease the coordinator announces later than join wins over the join-time interval.
        let short = HeartbeatCadence(intervalSeconds: 10, leaseTTLSeconds: 9)
        #expect(short.delay(remaining: .seconds(9)) == .seconds(3))
    }

    @Test func theLeaseLengthFollowsTheCoordinatorsAnswerButNeverPassesTheTTL() {
        let now = Date(timeIntervalSince1970: 1_000_000)
        #expect(cadence.leaseLength(expiresAt: now.addingTimeInterval(30), now: now) == .seconds(30))
        #expect(cadence.leaseLength(expiresAt: now.addingTimeInterval(12.5), now: now) == .milliseconds(12_500))
        // A host clock behind the coordinator's would stretch the lease: capped at the TTL.
        #expect(cadence.leaseLength(expiresAt: now.addingTimeInterval(600), now: now) == .seconds(60))
        // A host clock ahead of it makes the answer look expired: the TTL is all that can be trusted.
        #expect(cadence.leaseLength(expiresAt: now.addingTimeInterval(-5), now: now) == .seconds(60))
    }

    @Test func aFailedHeartbeatMakesTheRetriesComeFasterAsTheLeaseRunsOut() {
        var remaining = Duration.seconds(60)
        var delays: [Duration] = []
        while remaining > .zero {
            let delay = cadence.delay(remaining: remaining)
            delays.append(delay)
            remaining -= delay
        }
        #expect(delays.prefix(4) == [.seconds(10), .seconds(10), .seconds(10), .seconds(10)])
        #expect(delays.last == .seconds(1))
        #expect(zip(delays, delays.dropFirst()).allSatisfy { $0 >= $1 })
        // At least one more try within the last third of the lease.
        #expect(delays.count >= 8, "\(delays)")
    }
}
