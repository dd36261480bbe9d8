import Foundation
import Synchronization

/// Counts failed authentications per client address in one-minute windows. An address over the limit is
/// answered 429 before its token is looked up, so a flood of guessed tokens costs the database nothing.
///
/// In memory and bounded: at most `capacity` addresses are tracked; when full, windows that ended are dropped
/// first, then arbitrary entries, so memory stays flat whatever the number of addresses.
final class AuthFailureLimiter: Sendable {
    private struct Entry {
        var windowStart: ContinuousClock.Instant
        var failures: Int
    }

    let limit: Int
    let window: Duration
    let capacity: Int
    private let entries = Mutex<[String: Entry]>([:])

    init(limit: Int, window: Duration = .seconds(60), capacity: Int = 10_000) {
        self.limit = limit
        self.window = window
        self.capacity = capacity
    }

    /// Whole seconds until `address` may try again, or nil when it is not blocked.
    func retryAfter(_ address: String, now: ContinuousClock.Instant = .now) -> Int? {
        entries.withLock { entries in
            guard let entry = entries[address] else { return nil }
            let ends = entry.windowStart + window
            guard now < ends else {
                entries[address] = nil
                return nil
            }
            guard entry.failures >= limit else { return nil }
            let (seconds, attoseconds) = (ends - now).components
            return Int(seconds) + (attoseconds > 0 ? 1 : 0)
        }
    }

    /// Records one failed authentication from `address`.
    func recordFailure(_ address: String, now: ContinuousClock.Instant = .now) {
        entries.withLock { entries in
            if var entry = entries[address], now < entry.windowStart + window {
                entry.failures += 1
                entries[address] = entry
                return
            }
            if entries[address] == nil, entries.count >= capacity {
                entries = entries.filter { now < $0.value.windowStart + window }
                if entries.count >= capacity {
                    for key in entries.keys.prefix(capacity / 10 + 1) { entries[key] = nil }
                }
            }
            entries[address] = Entry(windowStart: now, failures: 1)
        }
    }

    /// How many addresses are tracked (for tests of the bound).
    var trackedAddresses: Int { entries.withLock { $0.count } }
}

/// The event streams and log follows open per token: capped, and ended when their token is revoked or expires.
final class StreamRegistry: Sendable {
    private struct State {
        var open: [String: Int] = [:]
        var revoked: Set<String> = []
    }

    let limit: Int
    private let state = Mutex(State())

    init(limit: Int) { self.limit = limit }

    /// Takes one of the token's stream slots, or throws 429 when all are in use. The slot is given back when the
    /// returned object goes away (the response body finished or was dropped).
    func open(tokenId: String, expiresAt: Date?) throws -> StreamSlot {
        let limit = self.limit
        let taken = state.withLock { state -> Bool in
            let count = state.open[tokenId, default: 0]
            guard count < limit else { return false }
            state.open[tokenId] = count + 1
            return true
        }
        guard taken else {
            throw APIError(
                .tooManyRequests, code: "TOO_MANY",
                "this token already has \(limit) event streams or log follows open (max_streams_per_token); close one first")
        }
        return StreamSlot(registry: self, tokenId: tokenId, expiresAt: expiresAt)
    }

    /// Ends the token's open streams at their next wake-up (the caller wakes them).
    func revoke(tokenId: String) {
        state.withLock { _ = $0.revoked.insert(tokenId) }
    }

    func isRevoked(_ tokenId: String) -> Bool { state.withLock { $0.revoked.contains(tokenId) } }

    func openCount(_ tokenId: String) -> Int { state.withLock { $0.open[tokenId, default: 0] } }

    fileprivate func release(_ tokenId: String) {
        state.withLock { state in
            let count = state.open[tokenId, default: 0] - 1
            state.open[tokenId] = count > 0 ? count : nil
        }
    }
}

/// One open stream's claim on its token's quota; released when it is deallocated.
final class StreamSlot: Sendable {
    private let registry: StreamRegistry
    let tokenId: String
    let expiresAt: Date?

    fileprivate init(registry: StreamRegistry, tokenId: String, expiresAt: Date?) {
        self.registry = registry
        self.tokenId = tokenId
        self.expiresAt = expiresAt
    }

    /// Whether the stream must end: its token was revoked or has expired.
    var isOver: Bool {
        if let expiresAt, expiresAt <= Date() { return true }
        return registry.isRevoked(tokenId)
    }

    deinit { registry.release(tokenId) }
}
