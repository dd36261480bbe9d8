import Foundation
import ManifoldArchive
import ManifoldCore

/// Packs a build context directory into a deterministic `tar.gz`, honouring `.dockerignore`.
///
/// Entries are sorted by path, with zero times and owners (``TarWriter``), so the same tree always gives the same
/// digest and an unchanged context is not uploaded twice. The Dockerfiles the build uses and `.dockerignore`
/// itself are always included, as Docker does, even when a pattern excludes them.
struct ContextPacker {
    struct Result: Sendable {
        var file: URL
        var digest: Digest
        var size: Int64
        var files: Int
        /// Paths left out by `.dockerignore`, directories counted once.
        var excluded: Int
        /// Sockets, devices and other entries that cannot be archived.
        var skipped: [String]
    }

    var directory: URL
    /// Paths (relative to the directory) included whatever `.dockerignore` says.
    var alwaysIncluded: Set<String> = [".dockerignore"]

    /// Writes the archive to `output` and returns its digest.
    func pack(to output: URL) throws -> Result {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CLIError("the context \(directory.path) is not a directory")
        }
        let ignore = try DockerIgnore(directory: directory)
        let writer = try TarWriter(to: output, compression: .gzip)
        var state = (files: 0, excluded: 0, skipped: [String]())
        do {
            try add(directory: directory, prefix: "", inExcluded: false, ignore: ignore, writer: writer, state: &state)
            try writer.finish()
        } catch let error as ArchiveError {
            throw CLIError("packing the context \(directory.path) failed: \(error)")
        }
        var hasher = DigestHasher(.sha256)
        let handle = try FileHandle(forReadingFrom: output)
        defer { try? handle.close() }
        var size: Int64 = 0
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
            hasher.update(chunk)
            size += Int64(chunk.count)
        }
        return Result(
            file: output, digest: hasher.finalize(), size: size, files: state.files, excluded: state.excluded,
            skipped: state.skipped)
    }

    private func add(
        directory: URL, prefix: String, inExcluded: Bool, ignore: DockerIgnore, writer: TarWriter,
        state: inout (files: Int, excluded: Int, skipped: [String])
    ) throws {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        } catch {
            throw CLIError("cannot read the directory \(directory.path): \(error.localizedDescription)")
        }
        // Byte order of the UTF-8 names, the same on every machine and locale.
        for name in names.sorted(by: { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }) {
            let path = prefix.isEmpty ? name : prefix + "/" + name
            let url = directory.appendingPathComponent(name)
            let attributes = try FileManager.default.attributesOfItem(atPath: url.path)
            let type = attributes[.type] as? FileAttributeType
            let mode = ((attributes[.posixPermissions] as? NSNumber)?.uint32Value ?? 0o644) & 0o7777
            let excluded = ignore.excludes(path) && !alwaysIncluded.contains(path)
            if type == .typeDirectory {
                if excluded {
                    if !inExcluded { state.excluded += 1 }
                    // Only an exception (or an always-included file) can bring back something inside.
                    let needed = alwaysIncluded.contains { $0.hasPrefix(path + "/") }
                    guard ignore.hasExceptions || needed else { continue }
                } else {
                    try writer.appendDirectory(at: path, mode: mode)
                }
                try add(
                    directory: url, prefix: path, inExcluded: inExcluded || excluded, ignore: ignore, writer: writer,
                    state: &state)
                continue
            }
            if excluded {
                if !inExcluded { state.excluded += 1 }
                continue
            }
            switch type {
            case .typeRegular?:
                try writer.append(file: url, at: path, mode: mode)
                state.files += 1
            case .typeSymbolicLink?:
                let target = try FileManager.default.destinationOfSymbolicLink(atPath: url.path)
                try writer.appendSymlink(at: path, target: target)
                state.files += 1
            default:
                state.skipped.append(path)
            }
        }
    }
}
