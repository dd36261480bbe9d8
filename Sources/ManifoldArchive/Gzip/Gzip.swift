import Foundation

/// Whole-file gzip compression and decompression with bounded memory.
///
/// ```swift
/// try Gzip.compress(file: tarURL, to: tarGzURL)
/// try Gzip.decompress(file: tarGzURL, to: tarURL, maxOutputBytes: 1 << 30)
/// ```
public enum Gzip {
    /// Compresses `file` into `destination` (created or truncated); the output is deterministic.
    public static func compress(file: URL, to destination: URL, level: Int = 6) throws {
        let source = try FileSource(url: file)
        let writer = try GzipWriter(to: try FileSink(url: destination), level: level)
        try copy(from: source, to: writer)
        try writer.finish()
    }

    /// Decompresses `file` into `destination`, failing once more than `maxOutputBytes` would be written.
    public static func decompress(file: URL, to destination: URL, maxOutputBytes: Int64? = nil) throws {
        let reader = try GzipReader(from: try FileSource(url: file), maxOutputBytes: maxOutputBytes)
        let sink = try FileSink(url: destination)
        try copy(from: reader, to: sink)
        try sink.finish()
    }

    static func copy(from source: any ByteSource, to sink: any ByteSink) throws {
        while true {
            let chunk = try source.read(upToCount: 64 * 1024)
            if chunk.isEmpty { return }
            try sink.write(chunk)
        }
    }
}
