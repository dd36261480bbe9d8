import Foundation

/// `.dockerignore` patterns with Docker's semantics.
///
/// - One pattern per line; `#` lines are comments; surrounding whitespace is trimmed; a leading `/` is dropped and
///   the pattern is cleaned (`./a//b/` → `a/b`).
/// - `*` matches any run of characters except `/`, `?` one character except `/`, `[a-c]` / `[^a-c]` a class,
///   `\` escapes the next character, `**` any number of directories (also none).
/// - A pattern excludes a path when it matches the path or any of its parent directories.
/// - `!pattern` re-includes what it matches; the last matching line wins.
///
/// ```swift
/// let ignore = DockerIgnore(text: "node_modules\n**/*.log\n!keep.log\n")
/// ignore.excludes("src/debug.log")  // true
/// ignore.excludes("keep.log")       // false
/// ```
struct DockerIgnore: Sendable {
    struct Pattern: Sendable {
        var text: String
        var exception: Bool
        var expression: NSRegularExpression
    }

    private(set) var patterns: [Pattern] = []

    init(text: String) {
        for rawLine in text.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n") {
            var line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            var exception = false
            if line.hasPrefix("!") {
                exception = true
                line = String(line.dropFirst()).trimmingCharacters(in: .whitespaces)
            }
            let cleaned = Self.clean(line)
            if cleaned.isEmpty { continue }
            guard let expression = try? NSRegularExpression(pattern: Self.regex(for: cleaned)) else { continue }
            patterns.append(Pattern(text: cleaned, exception: exception, expression: expression))
        }
    }

    /// Reads `DIR/.dockerignore`; no file means nothing is excluded.
    init(directory: URL) throws {
        let file = directory.appendingPathComponent(".dockerignore")
        guard FileManager.default.fileExists(atPath: file.path) else {
            self.init(text: "")
            return
        }
        do {
            self.init(text: try String(contentsOf: file, encoding: .utf8))
        } catch {
            throw CLIError("cannot read \(file.path): \(error.localizedDescription)")
        }
    }

    var hasExceptions: Bool { patterns.contains(where: \.exception) }

    /// Whether `path` (relative, `/`-separated) is left out of the context.
    func excludes(_ path: String) -> Bool {
        let components = path.split(separator: "/").map(String.init)
        var excluded = false
        for pattern in patterns {
            var matched = Self.matches(pattern.expression, path)
            if !matched {
                // A pattern also applies to everything below a directory it matches.
                var parent = ""
                for component in components.dropLast() {
                    parent = parent.isEmpty ? component : parent + "/" + component
                    if Self.matches(pattern.expression, parent) {
                        matched = true
                        break
                    }
                }
            }
            if matched { excluded = !pattern.exception }
        }
        return excluded
    }

    static func matches(_ expression: NSRegularExpression, _ path: String) -> Bool {
        let range = NSRange(path.startIndex..<path.endIndex, in: path)
        return expression.firstMatch(in: path, options: [], range: range) != nil
    }

    /// Cleans like Go's `filepath.Clean`, relative to the context root.
    static func clean(_ pattern: String) -> String {
        var parts: [String] = []
        for part in pattern.split(separator: "/", omittingEmptySubsequences: true) {
            switch part {
            case ".": continue
            case "..": if !parts.isEmpty { parts.removeLast() }
            default: parts.append(String(part))
            }
        }
        return parts.joined(separator: "/")
    }

    /// The anchored regular expression of a cleaned pattern.
    static func regex(for pattern: String) -> String {
        var result = "^"
        let characters = Array(pattern)
        var index = 0
        while index < characters.count {
            let character = characters[index]
            switch character {
            case "*":
                if index + 1 < characters.count && characters[index + 1] == "*" {
                    index += 1
                    if index + 1 < characters.count && characters[index + 1] == "/" {
                        // `**/` matches no directory or any number of them.
                        index += 1
                        result += "(.*/)?"
                    } else {
                        result += ".*"
                    }
                } else {
                    result += "[^/]*"
                }
            case "?": result += "[^/]"
            case "\\":
                if index + 1 < characters.count {
                    index += 1
                    result += NSRegularExpression.escapedPattern(for: String(characters[index]))
                } else {
                    result += "\\\\"
                }
            case "[":
                // A character class: copied with `!` negation turned into `^`; an unclosed `[` is literal.
                if let close = characters[(index + 1)...].firstIndex(of: "]"), close > index + 1 {
                    var body = String(characters[(index + 1)..<close])
                    if body.hasPrefix("!") { body = "^" + body.dropFirst() }
                    body = body.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "[", with: "\\[")
                    result += "[" + body + "]"
                    index = close
                } else {
                    result += "\\["
                }
            default:
                result += NSRegularExpression.escapedPattern(for: String(character))
            }
            index += 1
        }
        return result + "$"
    }
}
