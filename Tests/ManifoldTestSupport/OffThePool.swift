import Foundation

/// Runs blocking `work` (waiting for a child process, sleeping between checks) on a thread of its own, and waits for
/// it without holding a thread of the concurrency pool.
///
/// The pool has one thread per core, two on CI. A test that blocks them stalls every task of the test process for as
/// long: in the parallel end-to-end phase, the packaging and CLI tests waited 40 s on child processes and a scripted
/// agent's heartbeats, which sleep and resume on that pool, stopped for longer than its lease TTL (the journey test's
/// "the attempt is lost").
public func offThePool<Result: Sendable>(_ work: @escaping @Sendable () throws -> Result) async throws -> Result {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread {
            continuation.resume(with: Swift.Result { try work() })
        }
    }
}

/// `runCommand` for async code: the wait for the command happens off the concurrency pool (see ``offThePool(_:)``).
@discardableResult
public func runCommand(
    _ executable: String, _ arguments: [String], input: Data? = nil, environment: [String: String]? = nil,
    timeout: TimeInterval = 300
) async throws -> (status: Int32, stdout: String, stderr: String) {
    try await offThePool {
        try runCommand(executable, arguments, input: input, environment: environment, timeout: timeout)
    }
}

/// `runChecked` for async code: the wait for the command happens off the concurrency pool.
@discardableResult
public func runChecked(_ executable: String, _ arguments: [String], input: Data? = nil) async throws -> String {
    try await offThePool { try runChecked(executable, arguments, input: input) }
}

/// `manifold` for async code: the wait for the CLI happens off the concurrency pool.
public func manifold(
    _ arguments: [String], input: String? = nil, environment: [String: String] = [:]
) async throws -> (status: Int32, stdout: String, stderr: String) {
    try await offThePool { try manifold(arguments, input: input, environment: environment) }
}
