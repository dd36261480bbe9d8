import Dispatch

/// Runs blocking work (unpacking, hashing large files) on a GCD thread, so it never occupies one of the few
/// threads of Swift's cooperative pool that heartbeats and log uploads need.
enum Blocking {
    static func run<Value: Sendable>(_ work: @escaping @Sendable () throws -> Value) async throws -> Value {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(with: Result { try work() })
            }
        }
    }
}
