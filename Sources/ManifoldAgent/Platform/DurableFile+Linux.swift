#if !os(Windows)
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Renames that survive a power cut: the file's bytes are synced before the rename (by the caller), and the
/// directory holding the new name is synced after it, because on Linux a rename is only durable once its
/// directory is.
enum DurableFile {
    /// Atomically puts `temporary` at `file` (replacing any file there), then syncs the directory.
    static func replace(_ file: URL, with temporary: URL) throws {
        guard rename(temporary.path, file.path) == 0 else {
            let code = errno
            throw AgentError("cannot rename \(temporary.path) to \(file.path): \(String(cString: strerror(code)))")
        }
        try synchronizeDirectory(file.deletingLastPathComponent())
    }

    /// `fsync(2)` on a directory, so the names created or renamed in it are on disk.
    static func synchronizeDirectory(_ directory: URL) throws {
        let descriptor = open(directory.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else {
            let code = errno
            throw AgentError("cannot open the directory \(directory.path) to sync it: \(String(cString: strerror(code)))")
        }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else {
            let code = errno
            throw AgentError("cannot sync the directory \(directory.path): \(String(cString: strerror(code)))")
        }
    }
}
#endif
