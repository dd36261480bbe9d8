import Foundation
import Subprocess
import Synchronization

#if canImport(System)
import System
#else
import SystemPackage
#endif

/// Why a running build is being stopped.
public enum StopReason: String, Sendable {
    /// The coordinator said the job was cancelled.
    case cancelled
    /// The coordinator answered 409: this attempt's lease is gone.
    case leaseLost
    /// The coordinator answered 401: it no longer accepts this agent's credential (the agent was removed), so
    /// the lease is gone too.
    case credentialRefused
    /// No heartbeat was acknowledged for a whole lease TTL: the coordinator may already have given the job to
    /// another agent.
    case leaseExpired
    /// The job ran past its timeout.
    case timeout
    /// A second shutdown signal (or the drain timeout).
    case shutdown

    /// Why, in words, for the agent's log and the build log.
    public var explanation: String {
        switch self {
        case .cancelled: "the coordinator cancelled the job"
        case .leaseLost: "the coordinator refused this attempt as superseded (409): its lease is gone"
        case .credentialRefused:
            "the coordinator no longer accepts this agent's credential (401; the agent was probably removed), so the lease is gone"
        case .leaseExpired:
            "no heartbeat was acknowledged for a whole lease TTL, so the lease may already belong to another agent"
        case .timeout: "the build ran past its timeout"
        case .shutdown: "the agent is shutting down"
        }
    }
}

/// A one-shot flag the job's watchers set and the process runner waits on.
public final class StopSignal: Sendable {
    private let reason = Mutex<StopReason?>(nil)
    private let waiters = ConditionWaiters<StopReason?>()

    public init() {}

    public var requested: StopReason? { reason.withLock { $0 } }

    /// Records the first reason; later ones are ignored.
    public func request(_ newReason: StopReason) {
        let reason = reason.withLock { reason in
            if reason == nil { reason = newReason }
            return reason
        }
        waiters.resume(in: reason)
    }

    /// Returns once a stop is requested (or the task is cancelled); the request resumes it.
    func wait() async {
        await waiters.wait(until: { $0 != nil }, current: { self.requested })
    }

    /// Runs `operation` unless a stop is requested first: then `operation` is cancelled and the answer is nil.
    func unlessRequested<Value: Sendable>(
        _ operation: @escaping @Sendable () async throws -> Value
    ) async throws -> Value? {
        guard requested == nil else { return nil }
        return try await withThrowingTaskGroup(of: Value?.self) { group in
            group.addTask { try await operation() }
            group.addTask {
                await self.wait()
                return nil
            }
            defer { group.cancelAll() }
            return try await group.next() ?? nil
        }
    }
}

/// Runs builder processes without a shell, streaming their combined output into a ``LogSpool``, and stops the
/// whole process tree on request: terminate, then kill after a grace period.
enum ProcessRunner {
    struct Outcome {
        /// The exit code, or 128 + signal number for a process killed by a signal.
        var exitCode: Int32
        var stoppedFor: StopReason?
    }

    static func run(
        _ executable: String, _ arguments: [String], environment: [String: String], workingDirectory: URL?,
        log: LogSpool, stop: StopSignal, grace: Duration, tracker: ProcessTracker? = nil
    ) async throws -> Outcome {
        guard let path = ExecutableLocator.find(executable, environment: environment) else {
            throw AgentError("\(executable) was not found on PATH (\(environment["PATH"] ?? "unset"))")
        }
        var keys: [Environment.Key: String] = [:]
        for (name, value) in environment {
            if let key = Environment.Key(rawValue: name) { keys[key] = value }
        }
        let result = try await Subprocess.run(
            .path(FilePath(path)), arguments: Arguments(arguments), environment: .custom(keys),
            workingDirectory: workingDirectory.map { FilePath($0.path) }, platformOptions: ProcessTree.platformOptions(),
            input: .none, output: .sequence, error: .combinedWithOutput
        ) { execution in
            tracker?.started(ProcessTree.groupID(execution.processIdentifier))
            let killer = Task {
                await stop.wait()
                guard !Task.isCancelled else { return }
                ProcessTree.terminate(execution)
                try? await Task.sleep(for: grace)
                guard !Task.isCancelled else { return }
                ProcessTree.kill(execution)
            }
            defer { killer.cancel() }
            for try await buffer in execution.standardOutput {
                buffer.withUnsafeBytes { log.append(Data($0)) }
            }
        }
        // Children that outlived the builder (or closed their output early) do not survive the job.
        ProcessTree.reap(result.processIdentifier)
        tracker?.finished(ProcessTree.groupID(result.processIdentifier))
        log.flushPartialLine()
        let code: Int32
        switch result.terminationStatus {
        case .exited(let value): code = Int32(truncatingIfNeeded: value)
        #if !os(Windows)
        case .signaled(let signal): code = 128 + signal
        #endif
        }
        return Outcome(exitCode: code, stoppedFor: stop.requested)
    }

    /// Runs a short command and captures its output (for detection and `doctor`), killing it after `timeout`.
    static func capture(
        _ executable: String, _ arguments: [String], timeout: Duration = .seconds(20)
    ) async -> (
        status: Int32, output: String
    ) {
        guard let path = ExecutableLocator.find(executable) else { return (127, "\(executable): not found on PATH") }
        do {
            let result = try await withThrowingTaskGroup(of: (Int32, String)?.self) { group in
                group.addTask {
                    let run = try await Subprocess.run(
                        .path(FilePath(path)), arguments: Arguments(arguments), output: .string(limit: 1 << 20),
                        error: .combinedWithOutput)
                    let code: Int32
                    switch run.terminationStatus {
                    case .exited(let value): code = Int32(truncatingIfNeeded: value)
                    #if !os(Windows)
                    case .signaled(let signal): code = 128 + signal
                    #endif
                    }
                    return (code, run.standardOutput ?? "")
                }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    return nil
                }
                let first = try await group.next() ?? nil
                group.cancelAll()
                return first ?? (124, "\(executable) did not finish within \(timeout)")
            }
            return result
        } catch {
            return (126, "\(executable): \(error)")
        }
    }

    static func succeeds(_ executable: String, _ arguments: [String]) async -> Bool {
        await capture(executable, arguments, timeout: .seconds(10)).status == 0
    }
}
