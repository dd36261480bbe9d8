/// Exponential backoff with full jitter: the n-th wait is uniform in [base, min(cap, initial·2ⁿ)].
///
/// Used for every retry against the coordinator, so many agents coming back after an outage spread out.
public struct Backoff: Sendable {
    public var initial: Duration
    public var cap: Duration
    private var attempt = 0

    public init(initial: Duration = .milliseconds(500), cap: Duration = .seconds(30)) {
        self.initial = initial
        self.cap = cap
    }

    /// The next delay; each call doubles the ceiling up to `cap`.
    public mutating func next() -> Duration {
        let ceiling = min(cap, initial * (1 << min(attempt, 20)))
        attempt += 1
        let fraction = Double.random(in: 0.5...1.0)
        return ceiling * fraction
    }

    public mutating func reset() { attempt = 0 }
}
