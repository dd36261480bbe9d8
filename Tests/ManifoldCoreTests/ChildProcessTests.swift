import Foundation
import ManifoldTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The processes tests start (registries, proxies, coordinators) start as a shell would start them, whatever thread
/// starts them: a child that inherited a blocked SIGTERM sat out every `stop()` for five seconds, on a thread of the
/// concurrency pool, until SIGKILL.
@Suite struct ChildProcessTests {
    @Test func aChildStartedFromAThreadBlockingSIGTERMStillEndsOnIt() async throws {
        let scratch = try ScratchDirectory(prefix: "child-process")
        defer { scratch.remove() }
        // Started from a thread that blocks SIGTERM and SIGINT, as the threads of the concurrency pool do.
        let process = try await onOwnThread {
            var blocked = sigset_t()
            sigemptyset(&blocked)
            sigaddset(&blocked, SIGTERM)
            sigaddset(&blocked, SIGINT)
            pthread_sigmask(SIG_BLOCK, &blocked, nil)
            return try ManagedProcess(
                name: "sleeper", executable: "sleep", arguments: ["600"], logDirectory: scratch.url)
        }
        defer { process.stop() }
        let status = try String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8)
        let masks = Dictionary(
            uniqueKeysWithValues: status.split(separator: "\n").compactMap { line -> (String, UInt64)? in
                let parts = line.split(separator: ":", maxSplits: 1)
                guard parts.count == 2, ["SigBlk", "SigIgn"].contains(parts[0]) else { return nil }
                return (String(parts[0]), UInt64(parts[1].trimmingCharacters(in: .whitespaces), radix: 16) ?? .max)
            })
        #expect(masks["SigBlk"] == 0, "signals blocked in the child: \(status)")
        // SIGPIPE, which this process ignores, has its default action again.
        #expect((masks["SigIgn"] ?? .max) & (1 << (UInt64(SIGPIPE) - 1)) == 0, "signals ignored in the child: \(status)")
        kill(process.processIdentifier, SIGTERM)
        let ended = try await onOwnThread { () -> Bool in
            let deadline = Date().addingTimeInterval(30)
            while process.isRunning && Date() < deadline { usleep(10_000) }
            return !process.isRunning
        }
        #expect(ended, "SIGTERM did not end the child")
        #expect(process.terminationStatus == SIGTERM)
    }
}
