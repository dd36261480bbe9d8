import Dispatch
import Foundation
import ManifoldHTTP

#if os(Linux)
import Glibc
#endif

// A process that exits the way the throughput benchmark did, run by `HTTPClientShutdownTests`:
//
//   manifold-http-exit-probe BASE_URL CA_FILE CLIENTS
//
// Opens CLIENTS HTTPS clients, each with a finished request whose connection it keeps. Half of them are released
// (their threads start shutting down as the process exits), the other half each hold a request the server sleeps
// on; then `exit(0)`. An exit handler registered before the first client runs after OpenSSL's own, since handlers
// run in reverse order, and ends the process with status 3 if a thread of the process other than the exiting one and
// libdispatch's workers is still alive: such a thread was inside libcurl or still exiting when OpenSSL freed its
// global state, which is how the benchmark crashed with "corrupted double-linked list".
//
// The clients are made on the main thread, so their threads are never named like a libdispatch worker, whatever
// name the library gives them.

#if os(Linux)
/// The exiting thread's id, from `/proc/thread-self` (`PID/task/TID`).
func currentThreadID() -> String? {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/thread-self"))?.split(separator: "/").last
        .map(String.init)
}

/// Threads of this process, other than the caller and libdispatch's workers (named `…qos…`), as `TID name`.
func leftoverThreads() -> [String] {
    let current = currentThreadID()
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
    return tasks.filter { $0 != current }.compactMap { id in
        guard let name = try? String(contentsOfFile: "/proc/self/task/\(id)/comm", encoding: .utf8) else { return nil }
        let trimmed = name.trimmingCharacters(in: .whitespacesAndNewlines)
        return trimmed.contains("qos") ? nil : "\(id) \(trimmed)"
    }
}

let arguments = CommandLine.arguments
guard arguments.count == 4, let base = URL(string: arguments[1]), let count = Int(arguments[3]), count >= 2 else {
    FileHandle.standardError.write(Data("usage: manifold-http-exit-probe BASE_URL CA_FILE CLIENTS (2 or more)\n".utf8))
    exit(64)
}
guard FileManager.default.fileExists(atPath: "/proc/thread-self") else {
    FileHandle.standardError.write(Data("manifold-http-exit-probe needs Linux's /proc/thread-self\n".utf8))
    exit(65)
}

atexit {
    // A thread that has just been joined can stay listed for a few microseconds while the kernel finishes it.
    for _ in 0..<20 {
        if leftoverThreads().isEmpty { return }
        usleep(10_000)
    }
    let message = "threads alive after OpenSSL's exit handler: \(leftoverThreads().joined(separator: ", "))\n"
    FileHandle.standardError.write(Data(message.utf8))
    _exit(3)
}

let configuration = HTTPClientConfiguration(tls: TLSConfiguration(caFile: arguments[2]))
nonisolated(unsafe) var released: [HTTPClient]? = (0..<count / 2).map { _ in HTTPClient(configuration: configuration) }
let kept = (0..<(count - count / 2)).map { _ in HTTPClient(configuration: configuration) }
let observer = HTTPClient(configuration: configuration)

let tag = UUID().uuidString
let ready = DispatchSemaphore(value: 0)
let failure = DispatchSemaphore(value: 0)
Task.detached { [released] in
    do {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for client in (released ?? []) + kept {
                group.addTask { _ = try await client.execute(HTTPRequest(url: base.appendingPathComponent("echo"))) }
            }
            try await group.waitForAll()
        }
        for client in kept {
            let held = URL(string: base.absoluteString + "/slow?delay=120&tag=\(tag)")!
            Task { _ = try? await client.execute(HTTPRequest(url: held, timeout: .seconds(300), checksStalls: false)) }
        }
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            let answer = try await observer.execute(HTTPRequest(url: URL(string: base.absoluteString + "/held?tag=\(tag)")!))
            let held = (try JSONSerialization.jsonObject(with: answer.body) as? [String: Int])?["held"] ?? 0
            if held == kept.count {
                ready.signal()
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        FileHandle.standardError.write(Data("the server never held \(kept.count) requests\n".utf8))
    } catch {
        FileHandle.standardError.write(Data("manifold-http-exit-probe: \(error)\n".utf8))
    }
    failure.signal()
}

while ready.wait(timeout: .now() + .milliseconds(50)) == .timedOut {
    if failure.wait(timeout: .now()) == .success { exit(2) }
}
released = nil
print("\(count / 2) clients released, \(kept.count) holding a request; exiting")
exit(0)
#else
FileHandle.standardError.write(Data("manifold-http-exit-probe runs on Linux only (it reads /proc)\n".utf8))
exit(65)
#endif
