import Foundation

/// Unpacks an untrusted build context (a tar or tar.gz archive) into a directory, refusing every entry that could
/// write or point outside it.
///
/// Refused, with an ``ArchiveError`` naming the entry: absolute paths, `..` components, symlinks whose target
/// resolves outside the directory (also through other symlinks, whatever their order in the archive), entries
/// whose parent is a symlink, hard links to anything but an earlier regular file, device files and FIFOs, unknown
/// entry types, and archives over ``Limits``. With ``checksWindowsNames`` (on by default on Windows), also names
/// Windows cannot hold safely: reserved device names (`CON`, `NUL`, `COM1`, … with any extension), names ending in a
/// dot or space, and `< > : " | ? *`. The caller owns `directory` and removes it after a failure.
///
/// ``validate(directory:)`` applies the same rules to a tree that arrived another way, such as a git checkout.
///
/// ```swift
/// let unpacker = ContextUnpacker(limits: .init(maxTotalBytes: 2 << 30, maxEntries: 100_000))
/// let summary = try unpacker.unpack(archive: contextURL, into: workDirectory)
/// ```
public struct ContextUnpacker: Sendable {
    /// Bounds on what one context may contain.
    public struct Limits: Sendable, Hashable {
        /// The most bytes of file content, summed over all files.
        public var maxTotalBytes: Int64
        /// The most entries of any kind.
        public var maxEntries: Int

        public init(maxTotalBytes: Int64 = 4 << 30, maxEntries: Int = 200_000) {
            self.maxTotalBytes = maxTotalBytes
            self.maxEntries = maxEntries
        }
    }

    /// What was unpacked.
    public struct Summary: Sendable, Hashable {
        public var entries: Int
        public var totalBytes: Int64
    }

    public var limits: Limits
    /// Whether entry names (and symlink targets) must be valid, non-device Windows file names.
    public var checksWindowsNames: Bool

    /// True on Windows, where ``checksWindowsNames`` is on by default.
    public static let hostIsWindows: Bool = {
        #if os(Windows)
        true
        #else
        false
        #endif
    }()

    public init(limits: Limits = Limits(), checksWindowsNames: Bool = ContextUnpacker.hostIsWindows) {
        self.limits = limits
        self.checksWindowsNames = checksWindowsNames
    }

    /// Unpacks the archive at `archive` (gzip-compressed when `gzip` is true) into `directory`, which must exist.
    @discardableResult
    public func unpack(archive: URL, into directory: URL, gzip: Bool = true) throws -> Summary {
        // Headers and padding add at most a block or two per entry on top of the content. The limits are
        // configuration, possibly huge: saturating arithmetic, never a trap.
        let perEntry = Int64(clamping: limits.maxEntries).saturatingAdding(4).saturatingMultiplied(
            by: 3 * Int64(TarLayout.blockSize))
        let bound = limits.maxTotalBytes.saturatingAdding(perEntry).saturatingAdding(
            64 * Int64(TarLayout.maxPaxHeaderBytes))
        let reader = try TarReader(url: archive, gzip: gzip, maxDecompressedBytes: bound)
        return try unpack(from: reader, into: directory)
    }

    /// Unpacks every entry `reader` yields into `directory`, which must exist.
    @discardableResult
    public func unpack(from reader: TarReader, into directory: URL) throws -> Summary {
        let root = FileTree(root: directory)
        var entries = 0
        var totalBytes: Int64 = 0
        var symlinks: [(path: String, parent: [String], target: String)] = []
        while let entry = try reader.next() {
            entries += 1
            guard entries <= limits.maxEntries else {
                throw ArchiveError.limitExceeded(
                    "more than \(limits.maxEntries) entries (at \"\(entry.path)\"); raise the agent's context entry limit")
            }
            let components = try EntryPath.components(of: entry.path)
            if checksWindowsNames { try EntryPath.checkWindowsNames(components, entry: entry.path) }
            if components.isEmpty {
                guard case .directory = entry.kind else {
                    throw ArchiveError.unsafeEntry(path: entry.path, reason: "only a directory may name the root")
                }
                continue
            }
            try root.prepareParents(of: components, entry: entry.path)
            switch entry.kind {
            case .directory:
                try root.makeDirectory(components, mode: entry.mode, entry: entry.path)
            case .file:
                // Sizes come from the archive: added with an overflow check (a pax size of Int64.max must be
                // refused, not trap).
                let (sum, overflow) = totalBytes.addingReportingOverflow(entry.size)
                totalBytes = overflow ? Int64.max : sum
                guard !overflow, totalBytes <= limits.maxTotalBytes else {
                    throw ArchiveError.limitExceeded(
                        "file content exceeds \(limits.maxTotalBytes) bytes (at \"\(entry.path)\", \(entry.size) bytes); "
                            + "shrink the context (.dockerignore) or raise the agent's context size limit")
                }
                try root.writeFile(components, mode: entry.mode, entry: entry.path) { try reader.readContent(upToCount: $0) }
            case .symlink(let target):
                let parent = Array(components.dropLast())
                try Self.checkLinkTarget(target, parent: parent, in: root, entry: entry.path)
                if checksWindowsNames {
                    try EntryPath.checkWindowsNames(EntryPath.split(target).filter { $0 != ".." }, entry: entry.path)
                }
                try root.makeSymlink(components, target: target, entry: entry.path)
                symlinks.append((entry.path, parent, target))
            case .hardLink(let target):
                let targetComponents = try EntryPath.components(of: target)
                if checksWindowsNames { try EntryPath.checkWindowsNames(targetComponents, entry: entry.path) }
                guard !targetComponents.isEmpty else {
                    throw ArchiveError.unsafeEntry(path: entry.path, reason: "hard link to the root directory")
                }
                try root.makeHardLink(components, to: targetComponents, entry: entry.path, target: target)
            case .characterDevice, .blockDevice:
                throw ArchiveError.unsafeEntry(path: entry.path, reason: "device files are not allowed in a context")
            case .fifo:
                throw ArchiveError.unsafeEntry(path: entry.path, reason: "FIFOs are not allowed in a context")
            case .other(let flag):
                throw ArchiveError.unsafeEntry(
                    path: entry.path, reason: "unsupported entry type \"\(String(UnicodeScalar(flag)))\"")
            }
        }
        // A later entry may have turned a component of an earlier link's target into a symlink; check again on the
        // final tree.
        for link in symlinks {
            try Self.checkLinkTarget(link.target, parent: link.parent, in: root, entry: link.path)
        }
        return Summary(entries: entries, totalBytes: totalBytes)
    }

    static func checkLinkTarget(_ target: String, parent: [String], in root: FileTree, entry: String) throws {
        guard !target.isEmpty else { throw ArchiveError.unsafeEntry(path: entry, reason: "the symlink target is empty") }
        guard !EntryPath.isAbsolute(target) else {
            throw ArchiveError.unsafeEntry(
                path: entry, reason: "the symlink points to the absolute path \"\(target)\", outside the context")
        }
        guard root.resolvesInside(parent + EntryPath.split(target)) else {
            throw ArchiveError.unsafeEntry(path: entry, reason: "the symlink target \"\(target)\" points outside the context")
        }
    }
}
