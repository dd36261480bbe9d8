import Foundation
import Synchronization

/// A job's log on the agent's disk: builder output, redacted line by line, appended to a file the uploader reads
/// from by byte offset. Memory stays bounded: at most one partial line (capped at 64 KiB) is held.
public final class LogSpool: Sendable {
    public let file: URL
    private let redactions: [Data]
    private struct State {
        var handle: FileHandle?
        var written: Int64 = 0
        var partial = Data()
        var closed = false
    }
    private let state: Mutex<State>
    static let maxPartialLine = 64 * 1024

    /// Creates (or truncates) `file`; every occurrence of each non-empty `secrets` value is replaced by `***`.
    public init(file: URL, secrets: [String]) throws {
        self.file = file
        // Longest first, so a secret containing another is redacted whole.
        redactions = secrets.filter { !$0.isEmpty }.sorted { $0.count > $1.count }.map { Data($0.utf8) }
        guard FileManager.default.createFile(atPath: file.path, contents: nil) else {
            throw AgentError("cannot create the log spool \(file.path)")
        }
        state = Mutex(State(handle: try FileHandle(forWritingTo: file)))
    }

    /// Bytes on disk so far: what the uploader may send.
    public var size: Int64 { state.withLock { $0.written } }

    /// Appends builder output; complete lines are redacted and written at once.
    public func append(_ data: Data) {
        state.withLock { state in
            state.partial.append(data)
            while let newline = state.partial.firstIndex(of: 0x0a) {
                let line = state.partial[state.partial.startIndex...newline]
                write(Data(line), into: &state)
                state.partial = Data(state.partial[state.partial.index(after: newline)...])
            }
            if state.partial.count > Self.maxPartialLine {
                write(state.partial, into: &state)
                state.partial = Data()
            }
        }
    }

    /// Writes the unfinished last line, if any.
    public func flushPartialLine() {
        state.withLock { state in
            if !state.partial.isEmpty {
                write(state.partial, into: &state)
                state.partial = Data()
            }
        }
    }

    /// Adds a line from the agent itself, prefixed so users can tell it from builder output.
    public func note(_ text: String) {
        flushPartialLine()
        append(Data("[manifold-agent] \(text)\n".utf8))
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

    private func write(_ data: Data, into state: inout State) {
        guard !state.closed, let handle = state.handle else { return }
        let redacted = redact(data)
        do {
            try handle.write(contentsOf: redacted)
            state.written += Int64(redacted.count)
        } catch {
            // A full disk must not kill the build; the uploader sends what was written.
        }
    }
}
