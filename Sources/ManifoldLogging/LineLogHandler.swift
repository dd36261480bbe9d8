import Foundation
import Logging
import Synchronization

/// A swift-log handler that writes one line a record to standard error or a file, as text or as JSON.
///
/// JSON lines hold `time` (ISO 8601 UTC with milliseconds), `level`, `label`, `message`, `source` and each metadata
/// key at the top level (`build`, `job`, `attempt`, `agent`, …), so a collector can filter on them:
///
/// ```json
/// {"agent":"win-01","build":"bld_7Q…","label":"manifold.coordinator","level":"info","message":"lease granted",…}
/// ```
///
/// A metadata key that would shadow one of those five fields is written as `metadata.KEY`.
public struct LineLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?

    private let label: String
    private let format: LogFormat
    private let sink: LogSink

    /// A handler for `label` writing `format` lines to `sink`. Give every handler of a process the same sink:
    ///
    /// ```swift
    /// let sink = LogSink.standardError
    /// LoggingSystem.bootstrap { LineLogHandler(label: $0, format: .json, sink: sink) }
    /// ```
    public init(label: String, format: LogFormat, sink: LogSink) {
        self.label = label
        self.format = format
        self.sink = sink
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let own = event.metadata { merged.merge(own) { $1 } }
        let line =
            switch format {
            case .text: Self.text(event, label: label, metadata: merged, time: Date())
            case .json: Self.json(event, label: label, metadata: merged, time: Date())
            }
        sink.write(line + "\n")
    }

    static let reservedKeys: Set<String> = ["time", "level", "label", "message", "source"]

    static func text(_ event: LogEvent, label: String, metadata: Logger.Metadata, time: Date) -> String {
        let fields =
            metadata.isEmpty
            ? "" : " " + metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        return "\(timestamp(time)) \(event.level) \(label):\(fields) \(event.message)"
    }

    static func json(_ event: LogEvent, label: String, metadata: Logger.Metadata, time: Date) -> String {
        var object: [String: Any] = [:]
        for (key, value) in metadata {
            object[reservedKeys.contains(key) ? "metadata.\(key)" : key] = jsonValue(value)
        }
        object["time"] = timestamp(time)
        object["level"] = event.level.rawValue
        object["label"] = label
        object["message"] = event.message.description
        object["source"] = event.source
        // Every value above is a string, an array or a dictionary of them: serialisation cannot fail.
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
        return data.map { String(decoding: $0, as: UTF8.self) } ?? #"{"message":"unencodable log record"}"#
    }

    private static func jsonValue(_ value: Logger.Metadata.Value) -> Any {
        switch value {
        case .string(let string): string
        case .stringConvertible(let convertible): convertible.description
        case .array(let array): array.map(jsonValue)
        case .dictionary(let dictionary): dictionary.mapValues(jsonValue)
        }
    }

    private static func timestamp(_ date: Date) -> String {
        date.formatted(
            Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: TimeZone(identifier: "UTC") ?? .gmt))
    }
}

/// Where log lines go; writes are serialised so lines from concurrent tasks never interleave. One sink per
/// destination and process: handlers of every label share it.
public final class LogSink: Sendable {
    private let handle: Mutex<FileHandle?>

    private init(handle: FileHandle?) {
        self.handle = Mutex(handle)
    }

    /// The process's standard error.
    public static let standardError = LogSink(handle: FileHandle.standardError)

    /// Appends to the file at `path`, created if missing (for a Windows service, or a host without a journal).
    public static func file(path: String) -> LogSink {
        if !FileManager.default.fileExists(atPath: path) {
            FileManager.default.createFile(atPath: path, contents: nil)
        }
        let handle = FileHandle(forWritingAtPath: path)
        _ = try? handle?.seekToEnd()
        return LogSink(handle: handle)
    }

    func write(_ line: String) {
        handle.withLock { _ = try? $0?.write(contentsOf: Data(line.utf8)) }
    }
}
