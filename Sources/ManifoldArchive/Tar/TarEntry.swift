/// One entry of a tar archive as ``TarReader`` reports it.
public struct TarEntry: Sendable, Hashable {
    /// What the entry is.
    public enum Kind: Sendable, Hashable {
        case file
        case directory
        case symlink(target: String)
        /// A hard link to an earlier entry of the same archive, named by its path in the archive.
        case hardLink(target: String)
        case characterDevice
        case blockDevice
        case fifo
        /// A type flag this reader does not know.
        case other(typeFlag: UInt8)
    }

    /// The path inside the archive, as stored (may start with `./`; directories may end with `/`).
    public var path: String
    public var kind: Kind
    /// Permission bits and setuid/setgid/sticky, as stored.
    public var mode: UInt32
    /// Content size in bytes; zero for everything but files.
    public var size: Int64
    /// Seconds since 1970 as stored.
    public var modificationTime: Int64

    public init(path: String, kind: Kind, mode: UInt32, size: Int64, modificationTime: Int64 = 0) {
        self.path = path
        self.kind = kind
        self.mode = mode
        self.size = size
        self.modificationTime = modificationTime
    }
}

/// Field layout of the 512-byte ustar header block (POSIX.1-1988, extended by POSIX.1-2001 pax headers).
enum TarLayout {
    static let blockSize = 512
    static let name = 0..<100
    static let mode = 100..<108
    static let uid = 108..<116
    static let gid = 116..<124
    static let size = 124..<136
    static let mtime = 136..<148
    static let checksum = 148..<156
    static let typeFlag = 156
    static let linkName = 157..<257
    static let magic = 257..<263
    static let version = 263..<265
    static let prefix = 345..<500
    /// The largest size the 11-digit octal field holds; bigger files get a pax `size` record.
    static let maxOctalSize: Int64 = 0o77777777777
    /// pax header data larger than this is refused when reading.
    static let maxPaxHeaderBytes = 1 << 20

    static func checksum(of block: [UInt8]) -> (unsigned: Int, signed: Int) {
        var unsigned = 0
        var signed = 0
        for (index, byte) in block.enumerated() {
            let value = checksumRange.contains(index) ? 0x20 : byte
            unsigned += Int(value)
            signed += Int(Int8(bitPattern: value))
        }
        return (unsigned, signed)
    }

    private static let checksumRange = checksum
}
