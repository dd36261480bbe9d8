#if os(Windows)
import Foundation
import WinSDK

/// Renames that survive a power cut. On NTFS a rename is a journaled metadata change; `MOVEFILE_WRITE_THROUGH`
/// makes `MoveFileExW` return only once it is flushed, so there is no directory to sync separately.
enum DurableFile {
    /// Atomically puts `temporary` at `file` (replacing any file there), written through to disk.
    static func replace(_ file: URL, with temporary: URL) throws {
        let moved = temporary.path.withCString(encodedAs: UTF16.self) { source in
            file.path.withCString(encodedAs: UTF16.self) { target in
                MoveFileExW(source, target, DWORD(MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH))
            }
        }
        guard moved else {
            throw AgentError("cannot move \(temporary.path) to \(file.path) (error \(GetLastError()))")
        }
    }

    /// Nothing to do on Windows: ``replace(_:with:)`` writes the rename through.
    static func synchronizeDirectory(_ directory: URL) throws {}
}
#endif
