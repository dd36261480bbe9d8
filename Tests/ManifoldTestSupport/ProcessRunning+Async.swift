import Foundation

// Async overloads of the process helpers: in async code the compiler prefers them, so a test waits for its child
// processes off the concurrency pool. Synchronous end-to-end tests once held both of CI's pool threads for up to 45 s
// while packaging and CLI runs finished, and a scripted agent's heartbeats (tasks on that pool) stopped for longer
// than its lease TTL ("the attempt is lost" in the journey test).

/// `runCommand` for async code: the wait for the command happens off the concurrency pool (``onOwnThread(_:)``).
@discardableResult
public func runCommand(
    _ executable: String, _ arguments: [String], input: Data? = nil, environment: [String: String]? = nil,
    timeout: TimeInterval = 300
) async throws -> (status: Int32, stdout: String, stderr: String) {
    try await onOwnThread {
        try runCommand(executable, arguments, input: input, environment: environment, timeout: timeout)
    }
}

/// `runChecked` for async code: the wait for the command happens off the concurrency pool.
@discardableResult
public func runChecked(_ executable: String, _ arguments: [String], input: Data? = nil) async throws -> String {
    try await onOwnThread { try runChecked(executable, arguments, input: input) }
}

/// `manifold` for async code: the wait for the CLI happens off the concurrency pool.
public func manifold(
    _ arguments: [String], input: String? = nil, environment: [String: String] = [:]
) async throws -> (status: Int32, stdout: String, stderr: String) {
    try await onOwnThread { try manifold(arguments, input: input, environment: environment) }
}
