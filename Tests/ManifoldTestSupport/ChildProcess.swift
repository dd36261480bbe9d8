import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A program the tests start with `posix_spawn`, reaped with `waitpid`.
///
/// Not Foundation's `Process`: on Linux its `run()` copies each `/proc/self/fd` entry's whole 256-byte name, reading
/// past the end of glibc's directory buffer, and with the hundreds of descriptors a test process holds it crashes it
/// now and then (SIGSEGV in `memcpy` under `Process.run()`; swift-corelibs-foundation#5472, in Swift 6.3.1). Here the
/// child gets descriptors 0–2 as given and closes every other one (`closefrom`), in a process group of its own as
/// `Process` did.
public final class ChildProcess: @unchecked Sendable {
    public let pid: pid_t
    // Safe: `waitStatus` is only touched under `lock`.
    private let lock = NSLock()
    private var waitStatus: Int32?

    private init(pid: pid_t) { self.pid = pid }

    /// Writing input to a child that has already exited must fail the write, not kill the test process.
    private static let ignoreBrokenPipes: Void = { _ = Glibc.signal(SIGPIPE, SIG_IGN) }()

    // glibc's `closefrom` and `chdir` file actions (2.34 and 2.29), which its headers only declare for GNU sources.
    private typealias AddClosefrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, Int32) -> Int32
    private typealias AddChdir =
        @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, UnsafePointer<CChar>?) -> Int32
    private static let addClosefrom = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np").map {
        unsafeBitCast($0, to: AddClosefrom.self)
    }
    private static let addChdir = dlsym(nil, "posix_spawn_file_actions_addchdir_np").map {
        unsafeBitCast($0, to: AddChdir.self)
    }

    /// Starts `path` with `arguments`, this process's environment overlaid with `environment`, and the three standard
    /// descriptors given (the caller keeps and closes its own copies).
    public static func spawn(
        _ path: String, _ arguments: [String], environment: [String: String] = [:], directory: String? = nil,
        stdin: Int32, stdout: Int32, stderr: Int32
    ) throws -> ChildProcess {
        _ = ignoreBrokenPipes
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (descriptor, target) in [(stdin, STDIN_FILENO), (stdout, STDOUT_FILENO), (stderr, STDERR_FILENO)] {
            posix_spawn_file_actions_adddup2(&actions, descriptor, target)
        }
        guard let addClosefrom = Self.addClosefrom, let addChdir = Self.addChdir else {
            throw TestEnvironmentError("the tests start programs with glibc 2.34's posix_spawn_file_actions_addclosefrom_np")
        }
        _ = addClosefrom(&actions, 3)
        if let directory { _ = addChdir(&actions, directory) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // A child inherits the spawning thread's signal mask and the signals this process ignores. Tests spawn from
        // threads of the concurrency pool, which block SIGTERM among others, and SIGPIPE is ignored here: a child
        // would then sit out every SIGTERM until `stop()` gave up on it and sent SIGKILL five seconds later, holding
        // a pool thread all that time. The child starts as a shell would start it: nothing blocked, every signal's
        // default action.
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var everySignal = sigset_t()
        sigfillset(&everySignal)
        sigdelset(&everySignal, SIGKILL)
        sigdelset(&everySignal, SIGSTOP)
        posix_spawnattr_setsigdefault(&attributes, &everySignal)
        posix_spawnattr_setflags(
            &attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        posix_spawnattr_setpgroup(&attributes, 0)

        let merged = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, path, &actions, &attributes, argv, envp)
        guard result == 0 else {
            throw TestEnvironmentError("could not start \(path): \(String(cString: strerror(result)))")
        }
        return ChildProcess(pid: pid)
    }

    /// The raw wait status once the child has ended (reaping it then), nil while it runs.
    private func reap() -> Int32? {
        lock.lock()
        defer { lock.unlock() }
        if let waitStatus { return waitStatus }
        var status: Int32 = 0
        var result: pid_t
        repeat { result = waitpid(pid, &status, WNOHANG) } while result == -1 && errno == EINTR
        if result == pid { waitStatus = status }
        return waitStatus
    }

    public var isRunning: Bool { reap() == nil }

    /// The exit status, or the number of the signal that ended the child (as `Process.terminationStatus` reports).
    public var terminationStatus: Int32 {
        guard let status = reap() else { return -1 }
        return status & 0x7f == 0 ? (status >> 8) & 0xff : status & 0x7f
    }

    /// Whether the child ended within `seconds` (polling; never longer).
    public func wait(seconds: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while isRunning {
            guard Date() < deadline else { return false }
            usleep(5_000)
        }
        return true
    }

    public func signal(_ signal: Int32) { if isRunning { kill(pid, signal) } }
}

/// A pipe whose two ends close on `exec` (the child gets its end through `dup2`, which clears the flag).
struct ClosingPipe {
    let read: Int32
    let write: Int32

    init() throws {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { throw TestEnvironmentError("pipe failed: errno \(errno)") }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        read = ends[0]
        write = ends[1]
    }
}
