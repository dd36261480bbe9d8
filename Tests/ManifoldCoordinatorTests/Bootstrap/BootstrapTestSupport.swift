import Foundation
import ManifoldTestSupport

/// Runs real programs (openssl) for the bootstrap tests, with output in files (no pipe can fill up and block)
/// and a deadline after which the program is killed.
struct BootstrapProcess {
    struct Result {
        var status: Int32
        var output: String
        var error: String
        var timedOut: Bool
    }

    let process: ChildProcess
    let outputFile: URL
    let errorFile: URL

    /// Starts `arguments[0]` (found on PATH) with the rest as arguments; stdin is /dev/null unless `input` is
    /// given.
    init(_ arguments: [String], input: Data? = nil, directory: URL) throws {
        let id = UUID().uuidString
        outputFile = directory.appendingPathComponent("\(id).out")
        errorFile = directory.appendingPathComponent("\(id).err")
        _ = FileManager.default.createFile(atPath: outputFile.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errorFile.path, contents: nil)
        let stdout = try FileHandle(forWritingTo: outputFile)
        let stderr = try FileHandle(forWritingTo: errorFile)
        var stdin = FileHandle.nullDevice
        if let input {
            let inputFile = directory.appendingPathComponent("\(id).in")
            try input.write(to: inputFile)
            stdin = try FileHandle(forReadingFrom: inputFile)
        }
        defer { for handle in [stdout, stderr, stdin] { try? handle.close() } }
        process = try ChildProcess.spawn(
            "/usr/bin/env", arguments, directory: directory.path, stdin: stdin.fileDescriptor,
            stdout: stdout.fileDescriptor, stderr: stderr.fileDescriptor)
    }

    var output: String { (try? String(contentsOf: outputFile, encoding: .utf8)) ?? "" }
    var error: String { (try? String(contentsOf: errorFile, encoding: .utf8)) ?? "" }

    /// Waits for the program to exit, killing it after `timeout` seconds.
    func wait(timeout: TimeInterval = 20) async -> Result {
        let deadline = Date().addingTimeInterval(timeout)
        var timedOut = false
        while process.isRunning {
            if Date() > deadline {
                timedOut = true
                stop()
                break
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        _ = process.wait(seconds: 10)
        return Result(status: process.terminationStatus, output: output, error: error, timedOut: timedOut)
    }

    /// Polls the program's standard output until `predicate` finds what it needs, or `timeout` passes.
    func awaitOutput<T>(timeout: TimeInterval = 10, _ predicate: (String) -> T?) async -> T? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let found = predicate(output) { return found }
            if !process.isRunning { return predicate(output) }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return nil
    }

    /// Ends the program: SIGTERM, then SIGKILL if it is still running a second later.
    func stop() {
        guard process.isRunning else { return }
        process.signal(SIGTERM)
        if !process.wait(seconds: 1) { process.signal(SIGKILL) }
    }

    /// Runs a program to completion.
    static func run(
        _ arguments: [String], input: Data? = nil, directory: URL, timeout: TimeInterval = 20
    ) async throws -> Result {
        try await BootstrapProcess(arguments, input: input, directory: directory).wait(timeout: timeout)
    }
}

/// A fresh directory under the system's temporary directory, removed by ``remove()``.
struct BootstrapScratchDirectory {
    let url: URL

    init(_ name: String = #function) throws {
        let safe = name.filter { $0.isLetter || $0.isNumber }
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("manifold-bootstrap-\(safe)-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func remove() {
        try? FileManager.default.removeItem(at: url)
    }
}
