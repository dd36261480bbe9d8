import Foundation
import ManifoldArchive
import ManifoldTestSupport

/// Builds small archives for the tests: with our writer, or by hand for shapes our writer refuses to make.
enum ArchiveFixture {
    static func write(_ file: URL, _ text: String, mode: Int = 0o644) throws {
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: file)
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: file.path)
    }

    /// One raw ustar header block, for entries ``TarWriter`` would refuse (absolute paths, `..`, devices).
    static func rawHeader(name: String, typeFlag: Character, size: Int = 0, linkName: String = "") -> Data {
        var block = [UInt8](repeating: 0, count: 512)
        func put(_ string: String, _ offset: Int) {
            for (index, byte) in string.utf8.enumerated() { block[offset + index] = byte }
        }
        put(name, 0)
        put("0000644", 100)
        put("0000000", 108)
        put("0000000", 116)
        put(String(format: "%011o", size), 124)
        put("00000000000", 136)
        block[156] = typeFlag.asciiValue!
        put(linkName, 157)
        put("ustar", 257)
        put("00", 263)
        for index in 148..<156 { block[index] = 0x20 }
        let sum = block.reduce(0) { $0 + Int($1) }
        put(String(format: "%06o", sum), 148)
        block[154] = 0
        return Data(block)
    }

    /// A pax extended header (`x`) carrying `records` (e.g. `["size": "9223372036854775807"]`) for the next entry;
    /// `lengthOverride` writes that length field instead of the true one, for malformed records.
    static func paxHeader(_ records: [(String, String)], lengthOverride: String? = nil) -> Data {
        var body = Data()
        for (key, value) in records {
            let content = " \(key)=\(value)\n"
            var length = content.utf8.count + 1
            while String(length).utf8.count + content.utf8.count != length { length += 1 }
            body.append(Data(((lengthOverride ?? String(length)) + content).utf8))
        }
        var data = rawHeader(name: "PaxHeaders/entry", typeFlag: "x", size: body.count)
        data.append(body)
        if body.count % 512 != 0 { data.append(Data(count: 512 - body.count % 512)) }
        return data
    }

    /// A tar.gz of already-encoded blocks (headers and content), ended by two zero blocks.
    static func rawBlocks(_ blocks: [Data], at url: URL) throws {
        var data = blocks.reduce(into: Data()) { $0.append($1) }
        data.append(Data(count: 1024))
        let tar = url.deletingPathExtension().appendingPathExtension("raw.tar")
        try data.write(to: tar)
        try Gzip.compress(file: tar, to: url)
    }

    /// A tar.gz made of raw entries: (name, type, content or link target).
    static func rawArchive(_ entries: [(String, Character, String)], at url: URL) throws {
        var data = Data()
        for (name, type, payload) in entries {
            if type == "0" {
                data.append(rawHeader(name: name, typeFlag: type, size: payload.utf8.count))
                data.append(Data(payload.utf8))
                let remainder = payload.utf8.count % 512
                if remainder != 0 { data.append(Data(count: 512 - remainder)) }
            } else {
                data.append(rawHeader(name: name, typeFlag: type, linkName: payload))
            }
        }
        data.append(Data(count: 1024))
        let tar = url.deletingPathExtension().appendingPathExtension("raw.tar")
        try data.write(to: tar)
        try Gzip.compress(file: tar, to: url)
    }
}
