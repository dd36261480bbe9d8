import Foundation
import ManifoldCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The uploaded build contexts on disk: one file per digest, `sha256-HEX.tar.gz`, content-addressed.
///
/// An upload is written to a hidden `.upload-…` file, recorded in the store once its digest is verified, and
/// only then renamed into place. Retention removes a context by deleting its row first and then moving the file
/// aside; if the same context was uploaded again in between, the file is put back (same name, same bytes), so a
/// recorded context never loses its file.
public struct ContextDirectory: Sendable {
    /// The directory itself (`STATE_DIR/contexts`).
    public let url: URL

    public init(_ url: URL) {
        self.url = url
    }

    static let uploadPrefix = ".upload-"
    static let removalPrefix = ".removing-"
    static let probePrefix = ".probe-"

    /// Where the context with `digest` is kept.
    public func file(for digest: Digest) -> URL {
        url.appendingPathComponent("\(digest.algorithm.rawValue)-\(digest.hex).tar.gz")
    }

    /// A fresh hidden file name for an upload in progress.
    public func uploadFile() -> URL {
        url.appendingPathComponent(Self.uploadPrefix + UUID().uuidString)
    }

    /// The digest a context file's name stands for, or nil for any other name.
    static func digest(ofFileNamed name: String) -> Digest? {
        guard name.hasSuffix(".tar.gz"), let dash = name.firstIndex(of: "-") else { return nil }
        let algorithm = name[..<dash]
        let hex = name[name.index(after: dash)...].dropLast(".tar.gz".count)
        return try? Digest(parsing: "\(algorithm):\(hex)")
    }

    /// Writes, syncs and deletes a small file, proving the directory's file system takes writes again.
    public func probe() async throws {
        let file = url.appendingPathComponent(Self.probePrefix + UUID().uuidString)
        try await Self.onFileQueue {
            let descriptor = open(file.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard descriptor >= 0 else { throw ContextDirectoryError(operation: "create", path: file.path, code: errno) }
            defer {
                close(descriptor)
                unlink(file.path)
            }
            let block = [UInt8](repeating: 0, count: 4096)
            let written = block.withUnsafeBytes { write(descriptor, $0.baseAddress!, $0.count) }
            guard written == block.count else {
                throw ContextDirectoryError(operation: "write", path: file.path, code: written < 0 ? errno : ENOSPC)
            }
            guard fsync(descriptor) == 0 else { throw ContextDirectoryError(operation: "sync", path: file.path, code: errno) }
        }
    }

    /// Removes the file of a context whose row was just deleted. `stillRecorded` is asked after the file was
    /// moved aside: when the context was uploaded again meanwhile, the file is put back instead.
    /// Returns whether a file was deleted.
    func remove(_ digest: Digest, stillRecorded: @Sendable () async throws -> Bool) async throws -> Bool {
        let file = file(for: digest)
        let aside = url.appendingPathComponent(Self.removalPrefix + "\(digest.hex)-\(UUID().uuidString)")
        let moved = try await Self.onFileQueue { () throws -> Bool in
            if rename(file.path, aside.path) == 0 { return true }
            if errno == ENOENT { return false }
            throw ContextDirectoryError(operation: "move aside", path: file.path, code: errno)
        }
        guard moved else { return false }
        let keep = try await stillRecorded()
        return try await Self.onFileQueue {
            if keep {
                // Same digest, same bytes: replacing a file a new upload put in place changes nothing.
                guard rename(aside.path, file.path) == 0 else {
                    throw ContextDirectoryError(operation: "put back", path: file.path, code: errno)
                }
                return false
            }
            guard unlink(aside.path) == 0 || errno == ENOENT else {
                throw ContextDirectoryError(operation: "delete", path: aside.path, code: errno)
            }
            return true
        }
    }

    /// A file in the directory as the sweep sees it.
    struct Entry: Sendable {
        var name: String
        var modified: Date
    }

    /// The directory's regular files with their modification times (none when the directory is missing).
    func entries() async throws -> [Entry] {
        let url = url
        return try await Self.onFileQueue {
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: url.path) else { return [] }
            return names.compactMap { name in
                guard let attributes = try? FileManager.default.attributesOfItem(atPath: url.appendingPathComponent(name).path),
                    attributes[.type] as? FileAttributeType == .typeRegular,
                    let modified = attributes[.modificationDate] as? Date
                else { return nil }
                return Entry(name: name, modified: modified)
            }
        }
    }

    /// Deletes one file by name; a file already gone is not an error.
    func delete(named name: String) async throws {
        let path = url.appendingPathComponent(name).path
        try await Self.onFileQueue {
            guard unlink(path) == 0 || errno == ENOENT else {
                throw ContextDirectoryError(operation: "delete", path: path, code: errno)
            }
        }
    }

    /// Runs blocking file-system calls on a dispatch queue, never on the cooperative thread pool.
    static func onFileQueue<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global(qos: .utility).async { continuation.resume(with: Result { try work() }) }
        }
    }
}

/// A file-system call on the contexts directory failed.
public struct ContextDirectoryError: Error, CustomStringConvertible, Sendable {
    public var operation: String
    public var path: String
    /// The `errno` of the failed call.
    public var code: Int32

    public init(operation: String, path: String, code: Int32) {
        self.operation = operation
        self.path = path
        self.code = code
    }

    public var description: String { "could not \(operation) \(path): \(String(cString: strerror(code)))" }
}
