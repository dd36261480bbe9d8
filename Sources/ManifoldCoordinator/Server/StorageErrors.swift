import Foundation
import ManifoldStore
import _NIOFileSystem

/// Finds the `errno` behind a file-system error, whichever layer threw it (NIO's file system, Foundation, our own
/// calls), to tell "the disk is full" from other failures.
enum StorageErrors {
    /// The errno of `error` or of an error it wraps, if any.
    static func code(of error: any Error) -> Int32? {
        switch error {
        case let error as ContextDirectoryError:
            return error.code
        case let error as FileSystemError.SystemCallError:
            return error.errno.rawValue
        case let error as FileSystemError:
            return error.cause.flatMap { code(of: $0) }
        case let error as POSIXError:
            return error.code.rawValue
        default:
            let error = error as NSError
            if error.domain == NSPOSIXErrorDomain { return Int32(error.code) }
            if let underlying = error.userInfo[NSUnderlyingErrorKey] as? any Error { return code(of: underlying) }
            return nil
        }
    }

    /// Whether `code` means the storage refuses writes: no space, over quota, read-only, or an I/O error.
    static func isStorageFailure(_ code: Int32) -> Bool {
        [ENOSPC, EDQUOT, EROFS, EIO].contains(code)
    }
}
