import Foundation

/// Runs blocking work (starting a server and waiting for it, `initdb`) on a thread of its own and returns its result.
///
/// Tests run as tasks on the Swift concurrency pool, which has one thread per core. Work that blocks one of those
/// threads for seconds stops every other test of the process meanwhile, and a test waiting with a deadline then
/// fails for no fault of its own.
///
/// ```swift
/// let cluster = try await onOwnThread { try Cluster.create() }
/// ```
public func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
    }
}
