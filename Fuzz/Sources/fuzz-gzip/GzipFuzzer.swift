import Foundation
import FuzzSupport
import ManifoldArchive

let maxOutputBytes: Int64 = 1 << 20

/// Gzip reader: any bytes decompress or fail with an `ArchiveError` within the output limit; and whatever the
/// writer compresses, the reader gives back unchanged.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGzip(_ bytes: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let input = fuzzInput(bytes, count)
    // The input as a gzip stream, read in pieces of varying sizes.
    do {
        let reader = try GzipReader(from: MemorySource(input), maxOutputBytes: maxOutputBytes)
        var produced: Int64 = 0
        var pieceSize = 1
        while case let chunk = try reader.read(upToCount: pieceSize), !chunk.isEmpty {
            fuzzExpect(chunk.count <= pieceSize, "asked for \(pieceSize) bytes, got \(chunk.count)")
            produced += Int64(chunk.count)
            fuzzExpect(produced <= maxOutputBytes, "\(produced) bytes produced past the \(maxOutputBytes) byte limit")
            pieceSize = pieceSize * 7 % 70_001 + 1
        }
        fuzzExpect(try reader.read(upToCount: 100).isEmpty, "data after the end of the stream")
    } catch is ArchiveError {
    } catch {
        fuzzExpect(false, "an error that is not an ArchiveError: \(error)")
    }
    // The input as plain data: compress, then decompress.
    do {
        let sink = MemorySink()
        let writer = try GzipWriter(to: sink, level: count % 10)
        try writer.write(input.prefix(count / 2))
        try writer.write(input.dropFirst(count / 2))
        try writer.finish()
        let reader = try GzipReader(from: MemorySource(sink.data))
        var output = Data()
        while case let chunk = try reader.read(upToCount: 4096), !chunk.isEmpty { output.append(chunk) }
        fuzzExpect(output == input, "\(count) bytes came back as \(output.count) different bytes after a gzip round trip")
    } catch {
        fuzzExpect(false, "a gzip round trip of \(count) bytes failed: \(error)")
    }
    return 0
}
