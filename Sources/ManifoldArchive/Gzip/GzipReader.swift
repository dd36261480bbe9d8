import CZlib
import Foundation

/// Decompresses a gzip stream (one or more concatenated members) read from another source.
///
/// Memory stays bounded by the buffer sizes whatever the stream's size; `maxOutputBytes` stops a
/// decompression bomb early.
public final class GzipReader: ByteSource {
    private let source: any ByteSource
    private let stream: UnsafeMutablePointer<z_stream>
    private var input = Data()
    private var inputOffset = 0
    private var sourceEnded = false
    private var ended = false
    private var produced: Int64 = 0
    private let maxOutputBytes: Int64?

    /// Creates a reader; `maxOutputBytes` (if set) is the most decompressed bytes it will produce before failing.
    /// The most bytes one ``read(upToCount:)`` returns.
    static let maxReadBytes = 16 << 20

    public init(from source: any ByteSource, maxOutputBytes: Int64? = nil) throws {
        self.source = source
        self.maxOutputBytes = maxOutputBytes
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let status = manifold_inflate_init_gzip(stream)
        guard status == Z_OK else {
            stream.deallocate()
            throw ArchiveError.gzip("inflateInit2 failed with status \(status)")
        }
    }

    deinit {
        inflateEnd(stream)
        stream.deallocate()
    }

    public func read(upToCount requested: Int) throws -> Data {
        guard requested > 0, !ended else { return Data() }
        // zlib counts in 32 bits (`uInt`): a larger request would trap in the conversion, so read at most 16 MiB.
        let count = Swift.min(requested, Self.maxReadBytes)
        var out = Data(count: count)
        var written = 0
        while written == 0 && !ended {
            if inputOffset >= input.count && !sourceEnded {
                input = try source.read(upToCount: 64 * 1024)
                inputOffset = 0
                if input.isEmpty { sourceEnded = true }
            }
            let available = input.count - inputOffset
            let (status, consumed, made) = input.withUnsafeBytes { (inRaw: UnsafeRawBufferPointer) in
                out.withUnsafeMutableBytes { (outRaw: UnsafeMutableRawBufferPointer) -> (Int32, Int, Int) in
                    let inBase = inRaw.bindMemory(to: Bytef.self).baseAddress.map { $0 + inputOffset }
                    stream.pointee.next_in = UnsafeMutablePointer(mutating: inBase)
                    stream.pointee.avail_in = uInt(available)
                    stream.pointee.next_out = outRaw.bindMemory(to: Bytef.self).baseAddress! + written
                    stream.pointee.avail_out = uInt(count - written)
                    let status = inflate(stream, Z_NO_FLUSH)
                    let consumed = available - Int(stream.pointee.avail_in)
                    let made = (count - written) - Int(stream.pointee.avail_out)
                    stream.pointee.next_in = nil
                    stream.pointee.next_out = nil
                    return (status, consumed, made)
                }
            }
            inputOffset += consumed
            written += made
            produced = produced.saturatingAdding(Int64(made))
            if let maxOutputBytes, produced > maxOutputBytes {
                throw ArchiveError.limitExceeded("decompressed data exceeds \(maxOutputBytes) bytes")
            }
            switch status {
            case Z_OK:
                continue
            case Z_STREAM_END:
                // Another gzip member may follow (as `cat a.gz b.gz` produces).
                if inputOffset >= input.count && !sourceEnded {
                    input = try source.read(upToCount: 64 * 1024)
                    inputOffset = 0
                    if input.isEmpty { sourceEnded = true }
                }
                if inputOffset < input.count {
                    inflateReset(stream)
                } else {
                    ended = true
                }
            case Z_BUF_ERROR:
                if sourceEnded && inputOffset >= input.count {
                    throw ArchiveError.gzip("the gzip stream is truncated")
                }
            case Z_DATA_ERROR:
                let message = stream.pointee.msg.map { String(cString: $0) } ?? "invalid data"
                throw ArchiveError.gzip("not valid gzip data (\(message))")
            default:
                throw ArchiveError.gzip("inflate failed with status \(status)")
            }
        }
        out.count = written
        return out
    }
}
