import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An exclusive advisory lock (`flock`) on `STATE_DIR/manifold.lock`, held by the running coordinator, so a
/// second coordinator on the same state directory refuses to start instead of sharing its database.
///
/// The kernel releases the lock when the process ends, however it ends (`kill -9` included); the file itself
/// stays and holds the last holder's pid, which the refusal names.
///
/// ```swift
/// let lock = try StateDirectoryLock.acquire(state)
/// defer { lock.release() }
/// ```
public final class StateDirectoryLock: Sendable {
    /// The lock file.
    public let file: URL
    private let descriptor: Int32

    private init(file: URL, descriptor: Int32) {
        self.file = file
        self.descriptor = descriptor
    }

    /// Takes the lock without waiting and writes this process's pid into the file; throws
    /// ``StateDirectoryLockError/held(directory:pid:)`` when another process holds it.
    public static func acquire(_ state: StateDirectory) throws -> StateDirectoryLock {
        let path = state.lockFile.path
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw StateDirectoryLockError.unusable(path: path, reason: String(cString: strerror(errno)))
        }
        while flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            if code == EINTR { continue }
            let holder = code == EWOULDBLOCK ? readPID(descriptor) : nil
            close(descriptor)
            if code == EWOULDBLOCK { throw StateDirectoryLockError.held(directory: state.root.path, pid: holder) }
            throw StateDirectoryLockError.unusable(path: path, reason: String(cString: strerror(code)))
        }
        let text = Array("\(getpid())\n".utf8)
        // The pid is a hint for the message above; failing to write it (a full disk) must not stop the start.
        if ftruncate(descriptor, 0) == 0 {
            _ = text.withUnsafeBytes { pwrite(descriptor, $0.baseAddress!, $0.count, 0) }
        }
        return StateDirectoryLock(file: state.lockFile, descriptor: descriptor)
    }

    /// Gives the lock up (also done by the kernel when the process exits).
    public func release() {
        close(descriptor)
    }

    private static func readPID(_ descriptor: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress!, $0.count, 0) }
        guard count > 0 else { return nil }
        return Int32(String(decoding: buffer[..<count], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }
}

/// Why the state directory lock could not be taken.
public enum StateDirectoryLockError: Error, CustomStringConvertible, Equatable {
    /// Another process, a coordinator most likely, holds the lock.
    case held(directory: String, pid: Int32?)
    /// The lock file could not be opened or locked.
    case unusable(path: String, reason: String)

    public var description: String {
        switch self {
        case .held(let directory, let pid):
            let holder = pid.map { "process \($0)" } ?? "another process"
            return "another coordinator (\(holder)) is already running with the state directory \(directory): "
                + "it holds \(directory)/manifold.lock. Two coordinators must never share one database; stop that one "
                + "first, or give this one its own state directory."
        case .unusable(let path, let reason):
            return "cannot lock \(path): \(reason). The coordinator locks this file so that no second coordinator "
                + "uses the same state directory; check the directory's owner and permissions."
        }
    }
}
