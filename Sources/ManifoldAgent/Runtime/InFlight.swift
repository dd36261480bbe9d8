import Synchronization

/// Lets a request that is already on the wire finish when the task that sent it is cancelled.
///
/// Cancelling a task aborts its curl transfer, and an aborted transfer closes its connection: the agent's next request
/// then pays a TCP and TLS handshake (through a load balancer, to whichever replica it picks). Loops that end by
/// cancellation — the log uploader, the lease keeper — send each request through ``finish(grace:_:)``: cancelling the
/// loop stops it from sending another one, while the one under way runs to its answer for at most `grace` more. A
/// coordinator that stopped answering still costs no more than `grace`, not a whole request timeout. "Under way"
/// includes a request still connecting, which may also fail over to another coordinator URL within the grace.
enum InFlight {
    static func finish<Value: Sendable>(
        grace: Duration, _ request: @escaping @Sendable () async throws -> Value
    ) async throws -> Value {
        try Task.checkCancellation()
        // A task of its own: it does not inherit the caller's cancellation.
        let running = Task { try await request() }
        let deadline = Mutex<Task<Void, Never>?>(nil)
        defer { deadline.withLock { $0?.cancel() } }
        return try await withTaskCancellationHandler {
            try await running.value
        } onCancel: {
            let cutoff = Task {
                try? await Task.sleep(for: grace)
                if !Task.isCancelled { running.cancel() }
            }
            deadline.withLock { $0 = cutoff }
        }
    }

    /// How long a request under way may go on after its loop was cancelled: a round trip to a busy coordinator.
    static let grace = Duration.seconds(2)
}
