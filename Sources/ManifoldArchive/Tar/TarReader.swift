import Foundation

/// Reads a tar archive entry by entry: ustar, pax (`x`/`g` headers) and GNU (`L`/`K` long names, base-256
/// numbers), as GNU tar, bsdtar and ``TarWriter`` produce them.
///
/// ```swift
/// let reader = try TarReader(url: archiveURL, gzip: true)
/// while let entry = try reader.next() {
///     if case .file = entry.kind {
///         while case let chunk = try reader.readContent(upToCount: 65536), !chunk.isEmpty { … }
///     }
/// }
/// ```
public final class TarReader {
    private let source: any ByteSource
    private var remainingContent: Int64 = 0
    private var remainingPadding = 0
    private var ended = false

    /// Reads from any source, e.g. a ``GzipReader``.
    public init(from source: any ByteSource) {
        self.source = source
    }

    /// Reads the archive at `url`, decompressing it first when `gzip` is true.
    public convenience init(url: URL, gzip: Bool, maxDecompressedBytes: Int64? = nil) throws {
        let file = try FileSource(url: url)
        self.init(from: gzip ? try GzipReader(from: file, maxOutputBytes: maxDecompressedBytes) : file)
    }

    /// The next entry, or nil at the end of the archive. Unread content of the previous entry is skipped.
    public func next() throws -> TarEntry? {
        guard !ended else { return nil }
        try skipRest()
        var paxPath: String?
        var paxLinkPath: String?
        var paxSize: Int64?
        var gnuLongName: String?
        var gnuLongLink: String?
        while true {
            guard let block = try readBlock() else {
                // Archives cut right after the last entry (no end blocks) are accepted, like GNU tar does.
                ended = true
                return nil
            }
            if block.allSatisfy({ $0 == 0 }) {
                ended = true
                return nil
            }
            let sums = TarLayout.checksum(of: block)
            let stored = try Self.number(block[TarLayout.checksum], field: "checksum")
            guard stored == Int64(sums.unsigned) || stored == Int64(sums.signed) else {
                throw ArchiveError.corruptTar("header checksum mismatch (is this a tar archive?)")
            }
            let typeFlag = block[TarLayout.typeFlag]
            let headerSize = try Self.number(block[TarLayout.size], field: "size")
            guard headerSize >= 0 else { throw ArchiveError.corruptTar("negative entry size") }
            switch typeFlag {
            case UInt8(ascii: "x"), UInt8(ascii: "g"), UInt8(ascii: "L"), UInt8(ascii: "K"):
                guard headerSize <= TarLayout.maxPaxHeaderBytes else {
                    throw ArchiveError.limitExceeded("an extended header of \(headerSize) bytes is over the 1 MiB limit")
                }
                let data = try readExactly(Int(headerSize))
                try skipExactly(Self.padding(headerSize))
                switch typeFlag {
                case UInt8(ascii: "x"):
                    for (key, value) in try Self.parsePax(data) {
                        switch key {
                        case "path": paxPath = value
                        case "linkpath": paxLinkPath = value
                        case "size":
                            guard let size = Int64(value), size >= 0 else {
                                throw ArchiveError.corruptTar("pax size \"\(value)\" is not a number")
                            }
                            paxSize = size
                        default: break
                        }
                    }
                case UInt8(ascii: "L"): gnuLongName = Self.string(data)
                case UInt8(ascii: "K"): gnuLongLink = Self.string(data)
                default: break  // global pax headers carry nothing this reader needs
                }
                continue
            default:
                break
            }
            var name = Self.string(block[TarLayout.name])
            let magic = Array(block[TarLayout.magic])
            if magic == Array("ustar\0".utf8) {
                let prefix = Self.string(block[TarLayout.prefix])
                if !prefix.isEmpty { name = prefix + "/" + name }
            }
            let path = paxPath ?? gnuLongName ?? name
            let linkName = paxLinkPath ?? gnuLongLink ?? Self.string(block[TarLayout.linkName])
            let mode = UInt32(truncatingIfNeeded: try Self.number(block[TarLayout.mode], field: "mode"))
            let mtime = (try? Self.number(block[TarLayout.mtime], field: "mtime")) ?? 0
            var size = paxSize ?? headerSize
            let kind: TarEntry.Kind
            switch typeFlag {
            case 0, UInt8(ascii: "0"), UInt8(ascii: "7"):
                kind = path.hasSuffix("/") && typeFlag == 0 ? .directory : .file
            case UInt8(ascii: "1"): kind = .hardLink(target: linkName)
            case UInt8(ascii: "2"): kind = .symlink(target: linkName)
            case UInt8(ascii: "3"): kind = .characterDevice
            case UInt8(ascii: "4"): kind = .blockDevice
            case UInt8(ascii: "5"): kind = .directory
            case UInt8(ascii: "6"): kind = .fifo
            default: kind = .other(typeFlag: typeFlag)
            }
            // Only files (and unknown types, to skip them) carry data blocks; links, directories and devices
            // have none whatever their size field says.
            switch kind {
            case .file, .other: break
            default: size = 0
            }
            remainingContent = size
            remainingPadding = Self.padding(size)
            return TarEntry(path: path, kind: kind, mode: mode, size: size, modificationTime: mtime)
        }
    }

    /// Reads up to `count` bytes of the current entry's content; empty at its end.
    public func readContent(upToCount count: Int) throws -> Data {
        guard remainingContent > 0, count > 0 else { return Data() }
        let chunk = try source.read(upToCount: Int(min(Int64(count), remainingContent)))
        guard !chunk.isEmpty else { throw ArchiveError.corruptTar("the archive ends in the middle of an entry") }
        remainingContent -= Int64(chunk.count)
        return chunk
    }

    private func skipRest() throws {
        while remainingContent > 0 {
            _ = try readContent(upToCount: 64 * 1024)
        }
        try skipExactly(remainingPadding)
        remainingPadding = 0
    }

    private func readBlock() throws -> [UInt8]? {
        var block = Data()
        while block.count < TarLayout.blockSize {
            let chunk = try source.read(upToCount: TarLayout.blockSize - block.count)
            if chunk.isEmpty {
                if block.isEmpty { return nil }
                throw ArchiveError.corruptTar("the archive ends in the middle of a header")
            }
            block.append(chunk)
        }
        return [UInt8](block)
    }

    private func readExactly(_ count: Int) throws -> Data {
        var data = Data()
        while data.count < count {
            let chunk = try source.read(upToCount: count - data.count)
            guard !chunk.isEmpty else { throw ArchiveError.corruptTar("the archive ends in the middle of an entry") }
            data.append(chunk)
        }
        return data
    }

    private func skipExactly(_ count: Int) throws {
        if count > 0 { _ = try readExactly(count) }
    }

    static func padding(_ size: Int64) -> Int {
        let remainder = Int(size % Int64(TarLayout.blockSize))
        return remainder == 0 ? 0 : TarLayout.blockSize - remainder
    }

    static func string(_ bytes: some Collection<UInt8>) -> String {
        String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// Parses an octal field (spaces and NULs around it allowed) or a GNU base-256 field (high bit set).
    static func number(_ field: ArraySlice<UInt8>, field name: String) throws -> Int64 {
        if let first = field.first, first & 0x80 != 0 {
            var value: Int64 = Int64(first & 0x3f)
            guard first & 0x40 == 0 else { throw ArchiveError.corruptTar("negative base-256 \(name)") }
            for byte in field.dropFirst() {
                guard value < Int64.max >> 8 else { throw ArchiveError.corruptTar("\(name) does not fit in 64 bits") }
                value = value << 8 | Int64(byte)
            }
            return value
        }
        let text = String(decoding: field.prefix { $0 != 0 }, as: UTF8.self).trimmingCharacters(in: .whitespaces)
        if text.isEmpty { return 0 }
        guard let value = Int64(text, radix: 8) else {
            throw ArchiveError.corruptTar("header field \(name) \"\(text)\" is not an octal number")
        }
        return value
    }

    static func parsePax(_ data: Data) throws -> [(String, String)] {
        var records: [(String, String)] = []
        let bytes = [UInt8](data)
        var index = 0
        while index < bytes.count {
            guard let space = bytes[index...].firstIndex(of: 0x20),
                let length = Int(String(decoding: bytes[index..<space], as: UTF8.self)),
                length > space - index, length <= bytes.count - index, bytes[index + length - 1] == 0x0a
            else { throw ArchiveError.corruptTar("malformed pax extended header record") }
            let record = bytes[(space + 1)..<(index + length - 1)]
            guard let equals = record.firstIndex(of: UInt8(ascii: "=")) else {
                throw ArchiveError.corruptTar("pax record without \"=\"")
            }
            records.append(
                (
                    String(decoding: record[record.startIndex..<equals], as: UTF8.self),
                    String(decoding: record[(equals + 1)...], as: UTF8.self)
                ))
            index += length
        }
        return records
    }
}
