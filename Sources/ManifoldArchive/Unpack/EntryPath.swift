/// Turns an archive entry's stored path into safe relative components, or says why it cannot be.
enum EntryPath {
    /// The components of `raw` without `.` and empty ones; `[]` is the archive root itself (`./`).
    ///
    /// Both `/` and `\` separate components, so an entry cannot smuggle `..\..` past a Windows host.
    static func components(of raw: String) throws -> [String] {
        guard !raw.isEmpty else { throw ArchiveError.unsafeEntry(path: raw, reason: "the entry has an empty name") }
        guard !raw.utf8.contains(0) else { throw ArchiveError.unsafeEntry(path: raw, reason: "the name contains NUL") }
        if raw.hasPrefix("/") || raw.hasPrefix("\\") || hasDrivePrefix(raw) {
            throw ArchiveError.unsafeEntry(path: raw, reason: "absolute paths are not allowed in a context")
        }
        let parts = split(raw)
        if parts.contains("..") {
            throw ArchiveError.unsafeEntry(path: raw, reason: "the path contains a \"..\" component")
        }
        return parts
    }

    static func split(_ path: String) -> [String] {
        path.split(whereSeparator: { $0 == "/" || $0 == "\\" }).map(String.init).filter { $0 != "." }
    }

    static func isAbsolute(_ path: String) -> Bool {
        path.hasPrefix("/") || path.hasPrefix("\\") || hasDrivePrefix(path)
    }

    /// `C:` and the like: absolute (or drive-relative) on Windows.
    static func hasDrivePrefix(_ path: String) -> Bool {
        let scalars = Array(path.unicodeScalars.prefix(2))
        guard scalars.count == 2, scalars[1] == ":", scalars[0].isASCII else { return false }
        return scalars[0].properties.isAlphabetic
    }
}
