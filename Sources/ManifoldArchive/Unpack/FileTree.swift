import Foundation

/// File system operations on the unpack directory, each one refusing to pass through a symlink.
struct FileTree: Sendable {
    let root: URL

    private var fileManager: FileManager { .default }

    func path(_ components: some Collection<String>) -> String {
        components.reduce(root) { $0.appendingPathComponent($1) }.path
    }

    enum Existing { case none, directory, symlink, other }

    func existing(_ components: some Collection<String>) -> Existing {
        #if os(Windows)
        guard let attributes = try? fileManager.attributesOfItem(atPath: path(components)) else { return .none }
        switch attributes[.type] as? FileAttributeType {
        case .typeDirectory?: return .directory
        case .typeSymbolicLink?: return .symlink
        default: return .other
        }
        #else
        // lstat(2) directly: FileManager.attributesOfItem also looks up owner and group names, which made this
        // check, run for every parent of every entry, the bulk of unpacking time (manifold-bench).
        var info = stat()
        guard lstat(path(components), &info) == 0 else { return .none }
        switch info.st_mode & S_IFMT {
        case S_IFDIR: return .directory
        case S_IFLNK: return .symlink
        default: return .other
        }
        #endif
    }

    /// A regular file's size, or nil when `components` is not a regular file (not following a symlink).
    func regularFileSize(_ components: some Collection<String>) -> Int64? {
        #if os(Windows)
        guard let attributes = try? fileManager.attributesOfItem(atPath: path(components)),
            attributes[.type] as? FileAttributeType == .typeRegular
        else { return nil }
        return (attributes[.size] as? NSNumber)?.int64Value ?? 0
        #else
        var info = stat()
        guard lstat(path(components), &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return nil }
        return Int64(info.st_size)
        #endif
    }

    /// The names in the directory `components`, sorted.
    func children(_ components: some Collection<String>) throws -> [String] {
        do {
            return try fileManager.contentsOfDirectory(atPath: path(components)).sorted()
        } catch {
            throw ArchiveError.io(
                path: components.joined(separator: "/"), reason: "cannot list: \(error.localizedDescription)")
        }
    }

    /// The target of the symlink `components`.
    func linkTarget(_ components: some Collection<String>) throws -> String {
        do {
            return try fileManager.destinationOfSymbolicLink(atPath: path(components))
        } catch {
            throw ArchiveError.io(
                path: components.joined(separator: "/"), reason: "cannot read the link: \(error.localizedDescription)")
        }
    }

    /// Creates missing parent directories of `components`; refuses a parent that is a symlink or not a directory.
    func prepareParents(of components: [String], entry: String) throws {
        for depth in 1..<max(1, components.count) {
            let prefix = components.prefix(depth)
            switch existing(prefix) {
            case .directory: continue
            case .none: try create(directory: prefix, mode: 0o755, entry: entry)
            case .symlink:
                throw ArchiveError.unsafeEntry(
                    path: entry,
                    reason: "its parent \"\(prefix.joined(separator: "/"))\" is a symlink; "
                        + "writing through links is not allowed")
            case .other:
                throw ArchiveError.unsafeEntry(
                    path: entry, reason: "its parent \"\(prefix.joined(separator: "/"))\" is not a directory")
            }
        }
    }

    func makeDirectory(_ components: [String], mode: UInt32, entry: String) throws {
        switch existing(components) {
        case .directory: setMode(components, mode: mode | 0o700)
        case .none: try create(directory: components[...], mode: mode | 0o700, entry: entry)
        case .symlink, .other:
            try remove(components, entry: entry)
            try create(directory: components[...], mode: mode | 0o700, entry: entry)
        }
    }

    func writeFile(_ components: [String], mode: UInt32, entry: String, read: (Int) throws -> Data) throws {
        try replaceable(components, entry: entry)
        let sink = try FileSink(url: URL(fileURLWithPath: path(components)))
        while true {
            let chunk = try read(64 * 1024)
            if chunk.isEmpty { break }
            try sink.write(chunk)
        }
        try sink.finish()
        setMode(components, mode: (mode & 0o777) | 0o600)
    }

    func makeSymlink(_ components: [String], target: String, entry: String) throws {
        try replaceable(components, entry: entry)
        do {
            try fileManager.createSymbolicLink(atPath: path(components), withDestinationPath: target)
        } catch {
            throw ArchiveError.io(path: entry, reason: "cannot create symlink: \(error.localizedDescription)")
        }
    }

    func makeHardLink(_ components: [String], to target: [String], entry: String, target raw: String) throws {
        for depth in 1..<max(1, target.count) where existing(target.prefix(depth)) != .directory {
            throw ArchiveError.unsafeEntry(
                path: entry, reason: "the hard link target \"\(raw)\" passes through a symlink or non-directory")
        }
        guard existing(target) == .other,
            (try? fileManager.attributesOfItem(atPath: path(target)))?[.type] as? FileAttributeType == .typeRegular
        else {
            throw ArchiveError.unsafeEntry(
                path: entry, reason: "the hard link target \"\(raw)\" is not a regular file unpacked earlier")
        }
        try replaceable(components, entry: entry)
        do {
            try fileManager.linkItem(atPath: path(target), toPath: path(components))
        } catch {
            throw ArchiveError.io(path: entry, reason: "cannot create hard link: \(error.localizedDescription)")
        }
    }

    /// Follows `components` from the root the way the kernel would, through symlinks already on disk, and says
    /// whether it stays inside. Components that do not exist yet count as plain directories.
    func resolvesInside(_ components: [String]) -> Bool {
        var resolved: [String] = []
        var pending: [String] = components.reversed()
        var hops = 0
        while let component = pending.popLast() {
            if component.isEmpty || component == "." { continue }
            if component == ".." {
                if resolved.isEmpty { return false }
                resolved.removeLast()
                continue
            }
            let candidate = resolved + [component]
            if existing(candidate) == .symlink {
                hops += 1
                guard hops <= 40, let link = try? fileManager.destinationOfSymbolicLink(atPath: path(candidate)),
                    !EntryPath.isAbsolute(link)
                else { return false }
                // The link's target is relative to the directory holding it, which is `resolved`.
                pending.append(contentsOf: EntryPath.split(link).reversed())
            } else {
                resolved = candidate
            }
        }
        return true
    }

    private func replaceable(_ components: [String], entry: String) throws {
        switch existing(components) {
        case .none: return
        case .directory:
            throw ArchiveError.unsafeEntry(path: entry, reason: "a directory of the same name was unpacked earlier")
        case .symlink, .other: try remove(components, entry: entry)
        }
    }

    private func remove(_ components: [String], entry: String) throws {
        do {
            try fileManager.removeItem(atPath: path(components))
        } catch {
            throw ArchiveError.io(path: entry, reason: "cannot replace an earlier entry: \(error.localizedDescription)")
        }
    }

    private func create(directory components: ArraySlice<String>, mode: UInt32, entry: String) throws {
        do {
            try fileManager.createDirectory(
                atPath: path(components), withIntermediateDirectories: false,
                attributes: [.posixPermissions: NSNumber(value: mode & 0o777)])
        } catch {
            throw ArchiveError.io(path: entry, reason: "cannot create directory: \(error.localizedDescription)")
        }
    }

    private func setMode(_ components: [String], mode: UInt32) {
        try? fileManager.setAttributes([.posixPermissions: NSNumber(value: mode & 0o777)], ofItemAtPath: path(components))
    }
}
