import Foundation

extension ContextUnpacker {
    /// Checks a context that did not come from an archive — a git checkout — by the rules an unpacked archive
    /// follows: only directories, regular files and symlinks; no symlink whose target is absolute or resolves outside
    /// `directory` (also through other symlinks); Windows names when ``checksWindowsNames`` is on; and ``limits``.
    ///
    /// A checkout is made by a tool that writes whatever the repository holds, so a `Dockerfile` that is a symlink
    /// to `/var/lib/manifold-agent/credential.json` arrives intact; this refuses it before any builder reads it.
    /// Throws the first problem found, naming the path relative to `directory`.
    @discardableResult
    public func validate(directory: URL) throws -> Summary {
        let tree = FileTree(root: directory)
        var entries = 0
        var totalBytes: Int64 = 0
        var pending: [[String]] = [[]]
        while let current = pending.popLast() {
            for name in try tree.children(current) {
                let components = current + [name]
                let shown = components.joined(separator: "/")
                entries += 1
                guard entries <= limits.maxEntries else {
                    throw ArchiveError.limitExceeded(
                        "more than \(limits.maxEntries) entries (at \"\(shown)\"); raise the agent's context entry limit")
                }
                if checksWindowsNames { try EntryPath.checkWindowsNames([name], entry: shown) }
                switch tree.existing(components) {
                case .directory:
                    pending.append(components)
                case .symlink:
                    let target = try tree.linkTarget(components)
                    try Self.checkLinkTarget(target, parent: current, in: tree, entry: shown)
                    if checksWindowsNames {
                        try EntryPath.checkWindowsNames(EntryPath.split(target).filter { $0 != ".." }, entry: shown)
                    }
                case .other:
                    guard let size = tree.regularFileSize(components) else {
                        throw ArchiveError.unsafeEntry(
                            path: shown, reason: "only directories, regular files and symlinks are allowed in a context")
                    }
                    totalBytes = totalBytes.saturatingAdding(size)
                    guard totalBytes <= limits.maxTotalBytes else {
                        throw ArchiveError.limitExceeded(
                            "file content exceeds \(limits.maxTotalBytes) bytes (at \"\(shown)\", \(size) bytes); "
                                + "shrink the context or raise the agent's context size limit")
                    }
                case .none:
                    throw ArchiveError.io(path: shown, reason: "disappeared while the context was checked")
                }
            }
        }
        return Summary(entries: entries, totalBytes: totalBytes)
    }
}
