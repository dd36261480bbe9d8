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

    /// Why `component` cannot be a file name on Windows, or nil if it can.
    ///
    /// Refused: the reserved device names (`CON`, `PRN`, `AUX`, `NUL`, `COM1`–`COM9`, `LPT1`–`LPT9`, also with the
    /// superscript digits ¹²³, `CONIN$`, `CONOUT$`) with or without an extension and in any case — `nul.txt` opens the
    /// null device —, names ending in a dot or a space (Windows drops them, so two entries could land on one file),
    /// and the characters `< > : " | ? *` and controls (a `:` would write an alternate data stream).
    static func windowsProblem(with component: String) -> String? {
        if let last = component.last, last == "." || last == " " {
            return "the name \"\(component)\" ends in a dot or a space, which Windows removes"
        }
        if let bad = component.unicodeScalars.first(where: { $0.value < 0x20 || "<>:\"|?*".unicodeScalars.contains($0) }) {
            let shown =
                bad.value < 0x20
                ? "control character U+00" + (bad.value < 0x10 ? "0" : "") + String(bad.value, radix: 16, uppercase: true)
                : String(bad)
            return "the name \"\(component)\" contains \(shown), which Windows does not allow in file names"
        }
        // The device name is what comes before the first dot, without trailing spaces ("nul .txt" is NUL too).
        var stem = Substring(component.prefix { $0 != "." })
        while stem.last == " " { stem = stem.dropLast() }
        if reservedWindowsNames.contains(stem.uppercased()) {
            return "\"\(component)\" is the reserved Windows device name \(stem.uppercased())"
        }
        return nil
    }

    static let reservedWindowsNames: Set<String> = {
        var names: Set<String> = ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
        for digit in ["1", "2", "3", "4", "5", "6", "7", "8", "9", "\u{B9}", "\u{B2}", "\u{B3}"] {
            names.insert("COM" + digit)
            names.insert("LPT" + digit)
        }
        return names
    }()

    /// Refuses `components` of `entry` when one of them cannot be a Windows file name.
    static func checkWindowsNames(_ components: [String], entry: String) throws {
        for component in components {
            if let problem = windowsProblem(with: component) {
                throw ArchiveError.unsafeEntry(path: entry, reason: problem)
            }
        }
    }
}
