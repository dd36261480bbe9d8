/// How log records are written: `text` for a person reading a terminal or the journal, `json` for a collector
/// (Loki, Elasticsearch, CloudWatch, `jq`): one JSON object a line.
public enum LogFormat: String, CaseIterable, Sendable {
    case text
    case json

    /// Parses a format name case-insensitively; the error names the value and the accepted names.
    public init(parsing value: String, source: String) throws(LogFormatError) {
        guard let format = LogFormat(rawValue: value.trimmingWhitespace().lowercased()) else {
            throw LogFormatError(value: value, source: source)
        }
        self = format
    }
}

/// A log format name that is neither `text` nor `json`.
public struct LogFormatError: Error, CustomStringConvertible, Equatable {
    public let value: String
    public let source: String

    public var description: String {
        "\(source): \"\(value)\" is not a log format; use "
            + LogFormat.allCases.map(\.rawValue).joined(separator: " or ")
    }
}

extension String {
    fileprivate func trimmingWhitespace() -> Substring {
        let start = firstIndex { !$0.isWhitespace } ?? endIndex
        let end = lastIndex { !$0.isWhitespace }.map { index(after: $0) } ?? start
        return self[start..<end]
    }
}
