import Foundation

/// Writes a tar archive (ustar, with pax extended headers for long names, long link targets and huge files).
///
/// Output is deterministic: modification times are 0, owners are uid/gid 0 with empty names, and entries appear
/// in the order they are appended (sorting them is the caller's job). Packing the same tree twice gives the same
/// bytes, so the same context digest.
///
/// ```swift
/// let writer = try TarWriter(to: URL(fileURLWithPath: "context.tar.gz"), compression: .gzip)
/// try writer.appendDirectory(at: "src")
/// try writer.append(file: URL(fileURLWithPath: "/work/app/src/main.c"), at: "src/main.c")
/// try writer.appendSymlink(at: "latest", target: "src")
/// try writer.finish()
/// ```
///
/// Paths are `/`-separated and relative; absolute paths and `..` components are refused.
public final class TarWriter {
    /// Whether the archive is compressed on the fly.
    public enum Compression: Sendable { case none, gzip }

    private let sink: any ByteSink
    private var finished = false

    /// Writes to `url` (created or truncated), gzip-compressed when `compression` is `.gzip`.
    public convenience init(to url: URL, compression: Compression = .none) throws {
        let file = try FileSink(url: url)
        switch compression {
        case .none: self.init(to: file)
        case .gzip: self.init(to: try GzipWriter(to: file))
        }
    }

    /// Writes to an open file handle, which stays open after `finish()`.
    public convenience init(to handle: FileHandle, compression: Compression = .none) throws {
        let file = FileSink(handle: handle)
        switch compression {
        case .none: self.init(to: file)
        case .gzip: self.init(to: try GzipWriter(to: file))
        }
    }

    /// Writes to any sink, e.g. a ``GzipWriter``.
    public init(to sink: any ByteSink) {
        self.sink = sink
    }

    /// Appends the regular file at `file` under `path`, streaming its content.
    ///
    /// `mode` defaults to the file's permission bits. Fails if the file changes size while it is read.
    public func append(file: URL, at path: String, mode: UInt32? = nil) throws {
        let attributes: [FileAttributeKey: Any]
        do {
            attributes = try FileManager.default.attributesOfItem(atPath: file.path)
        } catch {
            throw ArchiveError.io(path: file.path, reason: "cannot read attributes: \(error.localizedDescription)")
        }
        guard (attributes[.type] as? FileAttributeType) == .typeRegular else {
            throw ArchiveError.invalidEntry(path: path, reason: "\(file.path) is not a regular file")
        }
        let size = (attributes[.size] as? NSNumber)?.int64Value ?? 0
        let permissions = mode ?? ((attributes[.posixPermissions] as? NSNumber)?.uint32Value ?? 0o644) & 0o7777
        try writeHeader(path: try Self.validated(path), typeFlag: UInt8(ascii: "0"), mode: permissions, size: size)
        let source = try FileSource(url: file)
        var remaining = size
        while remaining > 0 {
            let chunk = try source.read(upToCount: Int(min(remaining, 64 * 1024)))
            if chunk.isEmpty {
                throw ArchiveError.io(path: file.path, reason: "file shrank while being archived")
            }
            try sink.write(chunk)
            remaining -= Int64(chunk.count)
        }
        if !(try source.read(upToCount: 1)).isEmpty {
            throw ArchiveError.io(path: file.path, reason: "file grew while being archived")
        }
        try pad(size)
    }

    /// Appends a regular file with the given content.
    public func append(data: Data, at path: String, mode: UInt32 = 0o644) throws {
        try writeHeader(path: try Self.validated(path), typeFlag: UInt8(ascii: "0"), mode: mode, size: Int64(data.count))
        try sink.write(data)
        try pad(Int64(data.count))
    }

    /// Appends a directory entry.
    public func appendDirectory(at path: String, mode: UInt32 = 0o755) throws {
        var name = try Self.validated(path)
        if !name.hasSuffix("/") { name += "/" }
        try writeHeader(path: name, typeFlag: UInt8(ascii: "5"), mode: mode, size: 0)
    }

    /// Appends a symbolic link whose content is `target` (stored verbatim, usually relative).
    public func appendSymlink(at path: String, target: String, mode: UInt32 = 0o777) throws {
        guard !target.isEmpty, !target.utf8.contains(0) else {
            throw ArchiveError.invalidEntry(path: path, reason: "symlink target is empty or contains NUL")
        }
        try writeHeader(path: try Self.validated(path), typeFlag: UInt8(ascii: "2"), mode: mode, size: 0, linkName: target)
    }

    /// Appends a hard link to `target`, an entry appended earlier (its path in the archive).
    public func appendHardLink(at path: String, target: String, mode: UInt32 = 0o644) throws {
        try writeHeader(
            path: try Self.validated(path), typeFlag: UInt8(ascii: "1"), mode: mode, size: 0,
            linkName: try Self.validated(target))
    }

    /// Writes the two zero blocks that end a tar archive and finishes the sink (closing files this writer opened).
    public func finish() throws {
        guard !finished else { return }
        finished = true
        try sink.write(Data(count: TarLayout.blockSize * 2))
        try sink.finish()
    }

    // MARK: - Encoding

    static func validated(_ path: String) throws -> String {
        guard !path.isEmpty, !path.utf8.contains(0) else {
            throw ArchiveError.invalidEntry(path: path, reason: "the path is empty or contains NUL")
        }
        guard !path.hasPrefix("/") else {
            throw ArchiveError.invalidEntry(path: path, reason: "absolute paths cannot be archived; use a relative path")
        }
        guard !path.split(separator: "/").contains("..") else {
            throw ArchiveError.invalidEntry(path: path, reason: "the path contains a \"..\" component")
        }
        return path
    }

    private func writeHeader(path: String, typeFlag: UInt8, mode: UInt32, size: Int64, linkName: String = "") throws {
        guard !finished else { throw ArchiveError.invalidEntry(path: path, reason: "the archive is already finished") }
        var pax: [(String, String)] = []
        if path.utf8.count > TarLayout.name.count { pax.append(("path", path)) }
        if linkName.utf8.count > TarLayout.linkName.count { pax.append(("linkpath", linkName)) }
        if size > TarLayout.maxOctalSize { pax.append(("size", String(size))) }
        if !pax.isEmpty {
            let records = Self.paxRecords(pax)
            let base = path.split(separator: "/").last.map(String.init) ?? "entry"
            try sink.write(
                Self.headerBlock(
                    name: Self.truncated("PaxHeaders/" + base, to: TarLayout.name.count), typeFlag: UInt8(ascii: "x"),
                    mode: 0o644, size: Int64(records.count), linkName: []))
            try sink.write(records)
            try pad(Int64(records.count))
        }
        try sink.write(
            Self.headerBlock(
                name: Self.truncated(path, to: TarLayout.name.count), typeFlag: typeFlag, mode: mode,
                size: size > TarLayout.maxOctalSize ? 0 : size,
                linkName: Self.truncated(linkName, to: TarLayout.linkName.count)))
    }

    private func pad(_ size: Int64) throws {
        let remainder = Int(size % Int64(TarLayout.blockSize))
        if remainder != 0 { try sink.write(Data(count: TarLayout.blockSize - remainder)) }
    }

    static func paxRecords(_ pairs: [(String, String)]) -> Data {
        var data = Data()
        for (key, value) in pairs {
            // "LEN key=value\n" where LEN counts the whole record including its own digits.
            let body = " \(key)=\(value)\n"
            var length = body.utf8.count + 1
            while String(length).count + body.utf8.count != length { length += 1 }
            data.append(contentsOf: Array((String(length) + body).utf8))
        }
        return data
    }

    static func truncated(_ string: String, to limit: Int) -> [UInt8] {
        Array(string.utf8.prefix(limit))
    }

    static func headerBlock(name: [UInt8], typeFlag: UInt8, mode: UInt32, size: Int64, linkName: [UInt8]) -> Data {
        var block = [UInt8](repeating: 0, count: TarLayout.blockSize)
        func put(_ bytes: [UInt8], at range: Range<Int>) {
            for (offset, byte) in bytes.prefix(range.count).enumerated() { block[range.lowerBound + offset] = byte }
        }
        func octal(_ value: Int64, _ range: Range<Int>) {
            let digits = String(value, radix: 8)
            let padded = String(repeating: "0", count: max(0, range.count - 1 - digits.count)) + digits
            put(Array(padded.utf8), at: range)
        }
        put(name, at: TarLayout.name)
        octal(Int64(mode & 0o7777), TarLayout.mode)
        octal(0, TarLayout.uid)
        octal(0, TarLayout.gid)
        octal(size, TarLayout.size)
        octal(0, TarLayout.mtime)
        block[TarLayout.typeFlag] = typeFlag
        put(linkName, at: TarLayout.linkName)
        put(Array("ustar\0".utf8), at: TarLayout.magic)
        put(Array("00".utf8), at: TarLayout.version)
        let sum = TarLayout.checksum(of: block).unsigned
        let digits = String(sum, radix: 8)
        put(Array((String(repeating: "0", count: max(0, 6 - digits.count)) + digits).utf8) + [0, 0x20], at: TarLayout.checksum)
        return Data(block)
    }
}
