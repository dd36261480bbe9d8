#if !os(Windows)
import Foundation

/// Owner-only permissions for the state directory and credential files.
enum FilePermissions {
    /// 0700 for directories, 0600 for files.
    static func restrictToOwner(_ url: URL, isDirectory: Bool) throws {
        try FileManager.default.setAttributes(
            [.posixPermissions: NSNumber(value: isDirectory ? 0o700 : 0o600)], ofItemAtPath: url.path)
    }
}
#endif
