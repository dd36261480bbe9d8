import Foundation
import ManifoldAPI

/// Left-aligned columns separated by two spaces, like `docker ps` and `kubectl get`.
struct TextTable {
    private var rows: [[String]]

    init(_ header: [String]) { rows = [header] }

    mutating func add(_ row: [String]) { rows.append(row) }

    /// Rendered lines, each ending in a newline; trailing spaces are trimmed.
    func render() -> String {
        let columns = rows.map(\.count).max() ?? 0
        var widths = [Int](repeating: 0, count: columns)
        for row in rows {
            for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) }
        }
        var output = ""
        for row in rows {
            var line = ""
            for (index, cell) in row.enumerated() {
                line += index == row.count - 1 ? cell : cell.padding(toLength: widths[index] + 2, withPad: " ", startingAt: 0)
            }
            while line.hasSuffix(" ") { line.removeLast() }
            output += line + "\n"
        }
        return output
    }
}

/// JSON as the API writes it (sorted keys, ISO 8601 dates), pretty-printed for people.
enum APIJSON {
    static func string(_ value: some Encodable) throws -> String {
        let encoder = APICoding.encoder()
        encoder.outputFormatting.insert(.prettyPrinted)
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    /// One compact line, for streams of events.
    static func line(_ value: some Encodable) throws -> String {
        String(decoding: try APICoding.encoder().encode(value), as: UTF8.self)
    }
}

/// Short human forms of durations, ages and digests.
enum HumanFormat {
    /// `4s`, `2m05s`, `1h02m`.
    static func duration(_ seconds: TimeInterval) -> String {
        let total = max(0, Int(seconds.rounded(.down)))
        if total < 60 { return "\(total)s" }
        if total < 3600 { return "\(total / 60)m" + String(format: "%02ds", total % 60) }
        return "\(total / 3600)h" + String(format: "%02dm", (total % 3600) / 60)
    }

    /// `12s ago`, `3m ago`, `2h ago`, `4d ago`.
    static func age(_ date: Date, now: Date) -> String {
        let seconds = max(0, Int(now.timeIntervalSince(date)))
        switch seconds {
        case ..<60: return "\(seconds)s ago"
        case ..<3600: return "\(seconds / 60)m ago"
        case ..<86_400: return "\(seconds / 3600)h ago"
        default: return "\(seconds / 86_400)d ago"
        }
    }

    /// `sha256:0123456789ab` — the algorithm and the first 12 hex digits.
    static func shortDigest(_ text: String?) -> String {
        guard let text, let colon = text.firstIndex(of: ":") else { return text ?? "" }
        return String(text[...colon]) + String(text[text.index(after: colon)...].prefix(12))
    }

    /// `2026-11-26 21:05:34Z`.
    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withFullDate, .withTime, .withColonSeparatorInTime, .withSpaceBetweenDateAndTime]
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: date) + "Z"
    }

    /// Cuts `text` to `width` characters, marking the cut with `…`.
    static func truncate(_ text: String, to width: Int) -> String {
        guard width > 0 else { return "" }
        guard text.count > width else { return text }
        return String(text.prefix(max(0, width - 1))) + "…"
    }
}
