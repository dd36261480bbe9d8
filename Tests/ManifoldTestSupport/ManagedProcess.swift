import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A child process a test started and must stop: a registry, a token server, a test HTTP server.
///
/// Output goes to a log file in the test's scratch directory, so a failing test can show it.
public final class ManagedProcess: @unchecked Sendable {
    // Safe: `child` is immutable and `stop()` takes `lock`.
    private let child: ChildProcess
    private let lock = NSLock()
    public let logFile: URL
    public let name: String

    public init(
        name: String, executable: String, arguments: [String], environment: [String: String]? = nil,
        currentDirectory: URL? = nil, logDirectory: URL
    ) throws {
        self.name = name
        self.logFile = logDirectory.appendingPathComponent("\(name).log")
        _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
        let log = try FileHandle(forWritingTo: logFile)
        defer { try? log.close() }
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(null) }
        child = try ChildProcess.spawn(
            try Self.resolve(executable), arguments, environment: environment ?? [:], directory: currentDirectory?.path,
            stdin: null, stdout: log.fileDescriptor, stderr: log.fileDescriptor)
    }

    deinit { stop() }

    public var processIdentifier: Int32 { child.pid }
    public var isRunning: Bool { child.isRunning }
    /// The exit status (or the number of the signal that ended it) once the process has ended.
    public var terminationStatus: Int32 { child.terminationStatus }

    /// The process's combined output so far.
    public func output() -> String {
        (try? String(contentsOf: logFile, encoding: .utf8)) ?? ""
    }

    /// Sends SIGTERM, waits up to five seconds, then SIGKILL and waits up to ten more. Never waits longer: a process
    /// that outlives SIGKILL (stuck in the kernel) is left, named in the test's output, rather than holding the test
    /// and the thread it runs on forever.
    public func stop() {
        lock.lock()
        defer { lock.unlock() }
        guard child.isRunning else { return }
        child.signal(SIGTERM)
        if child.wait(seconds: 5) { return }
        child.signal(SIGKILL)
        if !child.wait(seconds: 10) {
            print("ManagedProcess: \(name) (pid \(child.pid)) still running 10 s after SIGKILL")
        }
    }

    /// Finds an executable on PATH, failing with a message that names the Debian package to install.
    public static func resolve(_ executable: String) throws -> String {
        if executable.contains("/") { return executable }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        // Daemons Debian installs (haproxy) live in sbin, which a non-login PATH may lack.
        let directories = path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin"]
        for directory in directories {
            let candidate = "\(directory)/\(executable)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw TestEnvironmentError("\(executable) is not on PATH; run .ci/run or deploy/testenv/install-deps.sh to install it")
    }
}

/// A failure to set up a test's real components.
public struct TestEnvironmentError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Loopback ports and readiness.
public enum Loopback {
    /// A TCP port on 127.0.0.1 that nothing listens on right now (bound, read, released).
    public static func freePort() throws -> Int {
        let (fd, port) = try boundSocket()
        close(fd)
        return port
    }

    /// A loopback port that refuses every connection for as long as the value lives: bound and never listened on, so
    /// no other test's server can be given it meanwhile (a stopped server's port can be, at once).
    public final class RefusingPort: Sendable {
        public let port: Int
        private let fd: Int32
        public init() throws { (fd, port) = try Loopback.boundSocket() }
        deinit { close(fd) }
    }

    /// A TCP socket bound to an ephemeral port on 127.0.0.1, and the port.
    static func boundSocket() throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestEnvironmentError("socket() failed: errno \(errno)") }
        var keep = false
        defer { if !keep { close(fd) } }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw TestEnvironmentError("bind() failed: errno \(errno)") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { throw TestEnvironmentError("getsockname() failed: errno \(errno)") }
        keep = true
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }

    /// Whether something accepts TCP connections on 127.0.0.1:port.
    public static func isListening(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        return result == 0
    }

    /// Waits until the port accepts connections, failing with the process's output if it never does.
    public static func waitUntilListening(port: Int, process: ManagedProcess? = nil, timeout: TimeInterval = 20) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if isListening(port: port) { return }
            if let process, !process.isRunning {
                throw TestEnvironmentError("\(process.name) exited before listening on \(port):\n\(process.output())")
            }
            usleep(25_000)
        }
        throw TestEnvironmentError(
            "nothing listened on 127.0.0.1:\(port) after \(timeout) s\n\(process?.output() ?? "")")
    }
}

/// A scratch directory under the system temporary directory, removed by `remove()` unless `MANIFOLD_TEST_KEEP=1`
/// (then its processes' logs and state stay for reading after a failure).
public struct ScratchDirectory: Sendable {
    public let url: URL
    public init(prefix: String = "manifold-test") throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    public var path: String { url.path }
    public func file(_ name: String) -> URL { url.appendingPathComponent(name) }
    public func remove() {
        guard ProcessInfo.processInfo.environment["MANIFOLD_TEST_KEEP"] != "1" else { return }
        try? FileManager.default.removeItem(at: url)
    }
}

/// Runs a command to completion and returns its status and output (for openssl, skopeo, htpasswd). A command still
/// running after `timeout` seconds is killed and reported as an error with what it printed, so a stuck tool (or a
/// daemon it left holding the output pipe) fails its test instead of hanging the whole run.
@discardableResult
public func runCommand(
    _ executable: String, _ arguments: [String], input: Data? = nil, environment: [String: String]? = nil,
    timeout: TimeInterval = 300
) throws -> (status: Int32, stdout: String, stderr: String) {
    let path = try ManagedProcess.resolve(executable)
    let inputPipe = try ClosingPipe()
    let outputPipe = try ClosingPipe()
    let errorPipe = try ClosingPipe()
    let child: ChildProcess
    do {
        child = try ChildProcess.spawn(
            path, arguments, environment: environment ?? [:], stdin: inputPipe.read, stdout: outputPipe.write,
            stderr: errorPipe.write)
    } catch {
        for descriptor in [inputPipe.read, inputPipe.write, outputPipe.read, outputPipe.write, errorPipe.read, errorPipe.write] {
            close(descriptor)
        }
        throw error
    }
    for descriptor in [inputPipe.read, outputPipe.write, errorPipe.write] { close(descriptor) }
    // Both pipes are read on threads of their own, so a chatty child never blocks on a full pipe and the wait below
    // can give up.
    let output = CommandOutput()
    let group = DispatchGroup()
    for (descriptor, isStdout) in [(outputPipe.read, true), (errorPipe.read, false)] {
        group.enter()
        Thread.detachNewThread {
            let data = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true).readDataToEndOfFile()
            output.store(data, stdout: isStdout)
            group.leave()
        }
    }
    let writer = FileHandle(fileDescriptor: inputPipe.write, closeOnDealloc: true)
    if let input { try? writer.write(contentsOf: input) }
    try? writer.close()
    let description = ([executable] + arguments).joined(separator: " ")
    let deadline = Date().addingTimeInterval(timeout)
    guard group.wait(timeout: .now() + timeout) == .success,
        child.wait(seconds: max(1, deadline.timeIntervalSinceNow))
    else {
        child.signal(SIGKILL)
        _ = child.wait(seconds: 5)
        let (stdout, stderr) = output.text()
        throw TestEnvironmentError("\(description) did not finish within \(Int(timeout)) s; killed\n\(stderr)\(stdout)")
    }
    let (stdout, stderr) = output.text()
    return (child.terminationStatus, stdout, stderr)
}

/// What a command printed, filled in by its reader threads.
private final class CommandOutput: @unchecked Sendable {
    // Safe: every access takes `lock`.
    private let lock = NSLock()
    private var stdout = Data()
    private var stderr = Data()

    func store(_ data: Data, stdout isStdout: Bool) {
        lock.lock()
        defer { lock.unlock() }
        if isStdout { stdout = data } else { stderr = data }
    }

    func text() -> (stdout: String, stderr: String) {
        lock.lock()
        defer { lock.unlock() }
        return (String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
    }
}

/// Like `runCommand`, but throws with the command's stderr when it exits non-zero.
@discardableResult
public func runChecked(_ executable: String, _ arguments: [String], input: Data? = nil) throws -> String {
    let result = try runCommand(executable, arguments, input: input)
    guard result.status == 0 else {
        throw TestEnvironmentError(
            "\(executable) \(arguments.joined(separator: " ")) exited \(result.status):\n\(result.stderr)\(result.stdout)")
    }
    return result.stdout
}
