import Foundation
import FuzzSupport
import ManifoldArchive

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Context unpacker: whatever the archive holds, nothing is written outside the target directory (a sibling
/// directory and a file in it stay untouched and unlinked), and after a successful unpack every symlink that
/// resolves at all resolves inside the directory.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzUnpack(_ bytes: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let context = Workspace.shared.freshContext()
    let unpacker = ContextUnpacker(limits: .init(maxTotalBytes: 1 << 20, maxEntries: 200))
    var succeeded = false
    do {
        try unpacker.unpack(from: TarReader(from: MemorySource(fuzzInput(bytes, count))), into: context)
        succeeded = true
    } catch is ArchiveError {
    } catch {
        fuzzExpect(false, "an error that is not an ArchiveError: \(error)")
    }
    Workspace.shared.checkOutsideUntouched()
    if succeeded { Workspace.checkSymlinksStayInside(context) }
    return 0
}

/// A directory per process: `context/` is unpacked into (emptied before every input), `outside/` holds one file
/// the unpacker must never reach.
final class Workspace: Sendable {
    static let shared = Workspace()

    let base: URL
    let outside: URL
    let secret: URL
    /// Made afresh on each use: a `Data` held in a global keeps its storage behind a tagged pointer, which
    /// LeakSanitizer cannot follow, so it would report the global as a leak.
    static var secretContent: Data { Data("not for the context\n".utf8) }

    private init() {
        let manager = FileManager.default
        let base = manager.temporaryDirectory.appendingPathComponent("manifold-fuzz-unpack-\(getpid())")
        try? manager.removeItem(at: base)
        outside = base.appendingPathComponent("outside")
        secret = outside.appendingPathComponent("secret")
        do {
            try manager.createDirectory(at: outside, withIntermediateDirectories: true)
            try Self.secretContent.write(to: secret)
        } catch {
            fatalError("cannot prepare \(base.path): \(error)")
        }
        self.base = base
        atexit { try? FileManager.default.removeItem(at: Workspace.shared.base) }
    }

    func freshContext() -> URL {
        let context = base.appendingPathComponent("context")
        let manager = FileManager.default
        if manager.fileExists(atPath: context.path) {
            do { try manager.removeItem(at: context) } catch { fatalError("cannot empty \(context.path): \(error)") }
        }
        do { try manager.createDirectory(at: context, withIntermediateDirectories: false) } catch {
            fatalError("cannot create \(context.path): \(error)")
        }
        return context
    }

    func checkOutsideUntouched() {
        let manager = FileManager.default
        let baseEntries = (try? manager.contentsOfDirectory(atPath: base.path))?.sorted() ?? []
        fuzzExpect(baseEntries == ["context", "outside"], "the unpacker wrote next to its directory: \(baseEntries)")
        let outsideEntries = (try? manager.contentsOfDirectory(atPath: outside.path)) ?? []
        fuzzExpect(outsideEntries == ["secret"], "the unpacker wrote outside its directory: \(outsideEntries)")
        var info = stat()
        fuzzExpect(lstat(secret.path, &info) == 0 && info.st_nlink == 1, "a hard link to a file outside the directory")
        fuzzExpect(
            (try? Data(contentsOf: secret)) == Self.secretContent, "a file outside the directory was changed")
    }

    /// Walks `context` without following links; every symlink that resolves must land inside it.
    static func checkSymlinksStayInside(_ context: URL) {
        guard let resolvedRoot = realpath(context.path, nil) else { fatalError("cannot resolve \(context.path)") }
        let root = String(cString: resolvedRoot)
        free(resolvedRoot)
        var pending = [root]
        while let directory = pending.popLast() {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
                let path = directory + "/" + name
                var info = stat()
                guard lstat(path, &info) == 0 else { continue }
                switch info.st_mode & S_IFMT {
                case S_IFDIR:
                    pending.append(path)
                case S_IFLNK:
                    guard let resolved = realpath(path, nil) else { continue }  // dangling or looping: harmless
                    let target = String(cString: resolved)
                    free(resolved)
                    fuzzExpect(
                        target == root || target.hasPrefix(root + "/"),
                        "the symlink \(path) resolves to \(target), outside \(root)")
                default:
                    break
                }
            }
        }
    }
}
