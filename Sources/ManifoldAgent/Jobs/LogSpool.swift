import Foundation
import Synchronization

/// A job's log on the agent's disk: builder output, redacted line by line, appended to a file the uploader reads
/// from by byte offset. Memory stays bounded: at most one partial line (capped at 64 KiB) is held.
///
/// Disk stays bounded too: once builder output would take the file past `maxBytes`, one marker line says so and
/// the rest of the builder's output is dropped. The agent's own notes (a handful of short lines per job, such as
/// the pushed digest) are still written after the marker.
public final class LogSpool: Sendable {
    public let file: URL
    /// The most builder output kept on disk, in bytes.
    public let maxBytes: Int64
    private let redactions: [Data]
    private struct State {
        var handle: FileHandle?
        var written: Int64 = 0
        var partial = Data()
        var closed = false
        var capped = false
        var lastByte: UInt8 = 0x0a
    }
    private let state: Mutex<State>
    static let maxPartialLine = 64 * 1024
    /// The default of ``maxBytes`` (and of the agent's `max_spool_bytes`): 64 MiB, the coordinator's default
    /// per-attempt log limit, so the spool never drops what the coordinator would still have kept.
    public static let defaultMaxBytes: Int64 = 64 << 20

    /// Creates (or truncates) `file`; every occurrence of each non-empty `secrets` value is replaced by `***`.
    public init(file: URL, secrets: [String], maxBytes: Int64 = LogSpool.defaultMaxBytes) throws {
        self.file = file
        self.maxBytes = max(0, maxBytes)
        // Longest first, so a secret containing another is redacted whole.
        redactions = secrets.filter { !$0.isEmpty }.sorted { $0.count > $1.count }.map { Data($0.utf8) }
        guard FileManager.default.createFile(atPath: file.path, contents: nil) else {
            throw AgentError("cannot create the log spool \(file.path)")
        }
        state = Mutex(State(handle: try FileHandle(forWritingTo: file)))
    }

    /// Bytes on disk so far: what the uploader may send.
    public var size: Int64 { state.withLock { $0.written } }

    /// Whether builder output reached ``maxBytes`` and later output was dropped.
    public var isCapped: Bool { state.withLock { $0.capped } }

    /// The line written once when the cap is reached.
    static func capMarker(_ maxBytes: Int64) -> String {
        "[manifold-agent] this log reached the agent's spool limit of \(maxBytes) bytes (max_spool_bytes); "
            + "the rest of the build's output was dropped\n"
    }

    /// Appends builder output; complete lines are redacted and written at once.
    public func append(_ data: Data) {
        state.withLock { state in
            guard !state.capped else { return }
            state.partial.append(data)
            while let newline = state.partial.firstIndex(of: 0x0a) {
                let line = state.partial[state.partial.startIndex...newline]
                writeOutput(Data(line), into: &state)
                state.partial = Data(state.partial[state.partial.index(after: newline)...])
            }
            if state.partial.count > Self.maxPartialLine {
                writeOutput(state.partial, into: &state)
                state.partial = Data()
            }
        }
    }

    /// Writes the unfinished last line, if any.
    public func flushPartialLine() {
        state.withLock { state in
            if !state.partial.isEmpty {
                writeOutput(state.partial, into: &state)
                state.partial = Data()
            }
        }
    }

    /// Adds a line from the agent itself, prefixed so users can tell it from builder output. Notes are written
    /// even after the cap was reached.
    public func note(_ text: String) {
        state.withLock { state in
            if !state.partial.isEmpty {
                writeOutput(state.partial, into: &state)
                state.partial = Data()
            }
            write(Data("[manifold-agent] \(text)\n".utf8), into: &state)
        }
    }

    public func close() {
        flushPartialLine()
        state.withLock { state in
            try? state.handle?.close()
            state.handle = nil
            state.closed = true
        }
    }

    /// The last `count` lines on disk, for a failure reason.
    public func tail(lines count: Int) -> String {
        guard let handle = try? FileHandle(forReadingFrom: file) else { return "" }
        defer { try? handle.close() }
        let size = self.size
        let start = max(0, size - 4096)
        try? handle.seek(toOffset: UInt64(start))
        let data = (try? handle.read(upToCount: Int(size - start))) ?? Data()
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n").suffix(count)
        return lines.joined(separator: "\n")
    }

    func redact(_ line: Data) -> Data {
        var result = line
        for secret in redactions {
            var searchStart = result.startIndex
            while let range = result.range(of: secret, in: searchStart..<result.endIndex) {
                result.replaceSubrange(range, with: Data("***".utf8))
                searchStart = result.index(range.lowerBound, offsetBy: 3)
            }
        }
        return result
    }

    /// Writes builder output unless it would pass the cap; the first piece that would writes the marker instead.
    private func writeOutput(_ data: Data, into state: inout State) {
        guard !state.capped else { return }
        let redacted = redact(data)
        guard state.written + Int64(redacted.count) <= maxBytes else {
            state.capped = true
            // A cut line is ended first, so the marker stands on a line of its own.
            let separator = state.written > 0 && state.lastByte != 0x0a ? "\n" : ""
            writeRaw(Data((separator + Self.capMarker(maxBytes)).utf8), into: &state)
            return
        }
        writeRaw(redacted, into: &state)
    }

    private func write(_ data: Data, into state: inout State) {
        writeRaw(redact(data), into: &state)
    }

    private func writeRaw(_ bytes: Data, into state: inout State) {
        guard !state.closed, let handle = state.handle, !bytes.isEmpty else { return }
        do {
            try handle.write(contentsOf: bytes)
            state.written += Int64(bytes.count)
            state.lastByte = bytes[bytes.index(before: bytes.endIndex)]
        } catch {
            // A full disk must not kill the build; the uploader sends what was written.
        }
    }
}
