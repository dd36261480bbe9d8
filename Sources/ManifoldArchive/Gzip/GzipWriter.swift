import CZlib
import Foundation

/// Compresses everything written to it as one gzip member and passes the result to another sink.
///
/// The gzip header carries no name, a zero modification time and the "unknown" OS code, so the same input gives
/// the same bytes on every platform — and the same digest.
public final class GzipWriter: ByteSink {
    private let destination: any ByteSink
    private let stream: UnsafeMutablePointer<z_stream>
    private let header: UnsafeMutablePointer<gz_header>
    private let output: UnsafeMutablePointer<UInt8>
    private let outputCapacity = 64 * 1024
    private var finished = false

    /// Creates a writer with zlib compression `level` (0–9; 6 is zlib's default balance of speed and size).
    public init(to destination: any ByteSink, level: Int = 6) throws {
        self.destination = destination
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        header = .allocate(capacity: 1)
        header.initialize(to: gz_header())
        header.pointee.os = 255
        output = .allocate(capacity: outputCapacity)
        let status = manifold_deflate_init_gzip(stream, Int32(max(0, min(9, level))))
        guard status == Z_OK else {
            stream.deallocate()
            header.deallocate()
            output.deallocate()
            throw ArchiveError.gzip("deflateInit2 failed with status \(status)")
        }
        deflateSetHeader(stream, header)
    }

    deinit {
        deflateEnd(stream)
        stream.deallocate()
        header.deallocate()
        output.deallocate()
    }

    public func write(_ data: Data) throws {
        guard !finished else { throw ArchiveError.gzip("write after finish") }
        guard !data.isEmpty else { return }
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            stream.pointee.next_in = UnsafeMutablePointer(mutating: raw.bindMemory(to: Bytef.self).baseAddress)
            stream.pointee.avail_in = uInt(raw.count)
            defer {
                stream.pointee.next_in = nil
                stream.pointee.avail_in = 0
            }
            try pump(flush: Z_NO_FLUSH)
        }
    }

    /// Writes the gzip trailer and finishes the destination sink.
    public func finish() throws {
        guard !finished else { return }
        finished = true
        try pump(flush: Z_FINISH)
        try destination.finish()
    }

    private func pump(flush: Int32) throws {
        while true {
            stream.pointee.next_out = output
            stream.pointee.avail_out = uInt(outputCapacity)
            let status = deflate(stream, flush)
            guard status != Z_STREAM_ERROR else { throw ArchiveError.gzip("deflate failed with status \(status)") }
            let produced = outputCapacity - Int(stream.pointee.avail_out)
            if produced > 0 { try destination.write(Data(bytes: output, count: produced)) }
            if flush == Z_FINISH {
                if status == Z_STREAM_END { return }
            } else if stream.pointee.avail_out != 0 {
                return
            }
        }
    }
}
