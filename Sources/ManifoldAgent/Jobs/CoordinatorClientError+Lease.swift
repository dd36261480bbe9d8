import ManifoldClient
import ManifoldHTTP

extension CoordinatorClientError {
    /// Whether the agent tries the call again while its lease holds: every failure to get an answer at all, and
    /// the answers that mean "later" (5xx — a restarting coordinator's 503, a full disk's 507 — 429, 408).
    ///
    /// Wider than ``isRetryable`` on purpose: a TLS handshake cut short — what an agent sees when a TCP load
    /// balancer accepts the connection for a coordinator that is restarting — is no verdict on the job, and a
    /// persistent one ends with the lease anyway.
    var isWorthRetryingWithinLease: Bool {
        switch self {
        case .transport(let error): error != .cancelled && error != .shutDown
        case .api, .unexpectedAnswer: isRetryable
        }
    }
}
