import Foundation

/// Where a setting's value came from, named in error messages so the user knows what to edit.
public enum SettingSource: Sendable, Equatable, CustomStringConvertible {
    /// The built-in default.
    case defaults
    /// A key in the config file, with the line when the YAML parser reported it.
    case file(path: String, key: String, line: Int?)
    /// An environment variable.
    case environment(String)
    /// A command-line flag, by its setting name (e.g. `listen`, shown as `--listen`).
    case flag(String)

    public var description: String {
        switch self {
        case .defaults:
            "the default"
        case .file(let path, let key, let line):
            "\(path)\(line.map { " line \($0)" } ?? ""), key \(key)"
        case .environment(let name):
            "environment variable \(name)"
        case .flag(let name):
            "flag --\(name.replacingOccurrences(of: "_", with: "-"))"
        }
    }
}

/// Why the coordinator's settings could not be resolved. Every case names where the bad value came from,
/// the value, and what would be valid.
public enum CoordinatorSettingsError: Error, CustomStringConvertible, Equatable {
    /// A value is malformed or out of range.
    case invalidValue(source: SettingSource, value: String, expected: String)
    /// The config file has a key that is not a setting (a typo must not be ignored silently).
    case unknownKey(path: String, key: String, line: Int?, validKeys: [String])
    /// The caller passed a flag that is not a setting.
    case unknownFlag(String, validFlags: [String])
    /// The config file could not be read or is not valid YAML, or is not a mapping of settings.
    case unreadableFile(path: String, reason: String)
    /// Two settings are individually valid but contradict each other.
    case inconsistent(String)

    public var description: String {
        switch self {
        case .invalidValue(let source, let value, let expected):
            return "Invalid value \"\(value)\" from \(source): expected \(expected)."
        case .unknownKey(let path, let key, let line, let validKeys):
            let suggestion = Self.closest(to: key, in: validKeys).map { " Did you mean \"\($0)\"?" } ?? ""
            return "Unknown key \"\(key)\" in \(path)\(line.map { " line \($0)" } ?? "").\(suggestion) "
                + "Valid keys: \(validKeys.joined(separator: ", "))."
        case .unknownFlag(let flag, let validFlags):
            return "Unknown setting flag \"\(flag)\"; valid: \(validFlags.joined(separator: ", "))."
        case .unreadableFile(let path, let reason):
            return "Cannot read the config file \(path): \(reason)"
        case .inconsistent(let message):
            return message
        }
    }

    /// The valid key closest to a misspelt one, if it is close enough to be a plausible typo.
    static func closest(to key: String, in candidates: [String]) -> String? {
        let scored = candidates.map { ($0, editDistance(key.lowercased(), $0)) }
        guard let best = scored.min(by: { $0.1 < $1.1 }), best.1 <= max(2, key.count / 3) else { return nil }
        return best.0
    }

    private static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a)
        let b = Array(b)
        if a.isEmpty { return b.count }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in stride(from: 1, through: b.count, by: 1) {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }
}
