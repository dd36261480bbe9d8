import Foundation
import Yams

/// A node of a parsed YAML document, with where it starts (1-based line and column).
struct YAMLNode: Sendable, Equatable {
    struct Entry: Sendable, Equatable {
        var key: String
        var line: Int
        var column: Int
        var value: YAMLNode
    }

    enum Value: Sendable, Equatable {
        /// Nothing after the colon, `~` or `null`.
        case null
        /// Text exactly as written (plain scalars are never turned into numbers or booleans).
        case scalar(String)
        case sequence([YAMLNode])
        /// Entries in the order written; keys are unique.
        case mapping([Entry])
    }

    var value: Value
    var line: Int
    var column: Int

    /// "a list", "a mapping", "text" or "nothing", for error messages.
    var kind: String {
        switch value {
        case .null: return "nothing"
        case .scalar: return "text"
        case .sequence: return "a list"
        case .mapping: return "a mapping"
        }
    }
}

/// A document that is malformed, or uses YAML the build file refuses, at `line` (and `column`) under `key`.
struct YAMLError: Error, CustomStringConvertible, Equatable {
    var line: Int
    var column: Int?
    /// The key path of the value, e.g. `platforms[1].build_args`, when the problem is inside one.
    var key: String?
    var message: String

    var description: String {
        "line \(line)" + (column.map { ", column \($0)" } ?? "") + ": " + (key.map { "\($0): " } ?? "") + message
    }
}

/// Parses build files with Yams, keeping out what a build file has no use for and a reader could be fooled by.
///
/// Any YAML 1.1 document is read (block and flow collections, plain, quoted and block scalars, comments), except:
/// anchors and aliases (`&`, `*`), tags (`!`), merge keys (`<<`), keys that are not text, a key twice in one mapping,
/// and several documents. Scalars stay text as written: `1.0` is `"1.0"`, never a number; callers interpret booleans.
/// A file over ``maxBytes`` or nesting deeper than ``maxNesting`` (by ``YAMLNesting``'s cautious count) is refused
/// before Yams sees it.
enum YAMLDocument {
    /// The largest build file read, in bytes (1 MiB).
    static let maxBytes = 1 << 20
    /// The deepest nesting of lists and mappings handed to Yams; a build file needs 4.
    static let maxNesting = 64

    /// Parses `text`; nil when the document is empty (nothing but comments and blank lines).
    static func parse(_ text: String) throws(YAMLError) -> YAMLNode? {
        let byteCount = text.utf8.count
        guard byteCount <= maxBytes else {
            throw YAMLError(
                line: 1, message: "the file has \(byteCount) bytes, over the limit of \(maxBytes) bytes (1 MiB) for a build file")
        }
        // libyaml takes a byte order mark for a character of the first line, which then misaligns the next ones.
        var text = text
        if text.unicodeScalars.first == "\u{FEFF}" { text.unicodeScalars.removeFirst() }
        let source = YAMLText(text)
        let nesting = YAMLNesting.bound(source, stoppingAbove: maxNesting)
        guard nesting.levels <= maxNesting else {
            throw YAMLError(
                line: nesting.line, column: nesting.column,
                message: "lists and mappings nest too deeply here: over the limit of \(maxNesting) levels, counting each "
                    + "indentation column and each [ or { not closed on its line; a build file needs 4")
        }
        let root: Node?
        do {
            root = try Yams.compose(yaml: text, .default, .default, .utf8)
        } catch {
            throw Self.error(from: error, in: source)
        }
        guard let root else { return nil }
        return try Converter(source: source).node(root, key: nil)
    }

    /// Turns Yams' nodes into ``YAMLNode``s, refusing what the build file does not support.
    struct Converter {
        var source: YAMLText

        func node(_ node: Node, key: String?) throws(YAMLError) -> YAMLNode {
            let (line, column) = source.position(line: node.mark?.line ?? 1, column: node.mark?.column ?? 1)
            // An anchored or tagged node starts at its `&` or `!`; an alias gives back the anchored node.
            switch source.scalar(line: line, column: column) {
            case "&":
                throw YAMLError(
                    line: line, column: column, key: key,
                    message: "anchors and aliases (& and *) are not supported; write the value out where it is used")
            case "!":
                throw YAMLError(
                    line: line, column: column, key: key,
                    message: "tags (!) are not supported; remove the tag (values are read as text)")
            default: break
            }
            switch node {
            case .scalar(let scalar):
                let isNull = scalar.style == .plain && ["", "~", "null", "Null", "NULL"].contains(scalar.string)
                return YAMLNode(value: isNull ? .null : .scalar(scalar.string), line: line, column: column)
            case .sequence(let sequence):
                var items: [YAMLNode] = []
                for (index, item) in sequence.enumerated() {
                    items.append(try self.node(item, key: "\(key ?? "")[\(index)]"))
                }
                return YAMLNode(value: .sequence(items), line: line, column: column)
            case .mapping(let mapping):
                var entries: [YAMLNode.Entry] = []
                var seen: [String: Int] = [:]
                for (keyNode, valueNode) in mapping {
                    let entryKey = try self.key(keyNode, in: key)
                    if let earlier = seen[entryKey.text] {
                        throw YAMLError(
                            line: entryKey.line, column: entryKey.column, key: key,
                            message: "key \"\(entryKey.text)\" appears twice (first on line \(earlier)); keep one")
                    }
                    seen[entryKey.text] = entryKey.line
                    let path = key.map { "\($0).\(entryKey.text)" } ?? entryKey.text
                    entries.append(
                        YAMLNode.Entry(
                            key: entryKey.text, line: entryKey.line, column: entryKey.column,
                            value: try self.node(valueNode, key: path)))
                }
                return YAMLNode(value: .mapping(entries), line: line, column: column)
            }
        }

        func key(_ node: Node, in mappingKey: String?) throws(YAMLError) -> (text: String, line: Int, column: Int) {
            let converted = try self.node(node, key: mappingKey)
            let fail = { (message: String) in
                YAMLError(line: converted.line, column: converted.column, key: mappingKey, message: message)
            }
            guard case .scalar(let scalar) = node else { throw fail("a key must be text, found \(converted.kind)") }
            if scalar.style == .plain && scalar.string.isEmpty {
                throw fail("a key is missing before the \":\"")
            }
            if scalar.style == .plain && scalar.string == "<<" {
                throw fail("merge keys (<<) are not supported; write the keys out")
            }
            return (scalar.string, converted.line, converted.column)
        }
    }

    /// A Yams error as a ``YAMLError`` that says what to change, at the place that needs the change.
    static func error(from error: any Error, in source: YAMLText) -> YAMLError {
        guard let error = error as? YamlError else { return YAMLError(line: 1, message: "\(error)") }
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            return described(problem, at: mark, context: context, in: source)
        case .reader(let problem, let offset, _, let yaml):
            // The offset counts characters (a `\r\n` is one).
            var line = 1
            var column = 1
            for character in yaml.prefix(max(0, offset ?? 0)) {
                if character.isNewline {
                    line += 1
                    column = 1
                } else {
                    column += character.unicodeScalars.count
                }
            }
            return YAMLError(
                line: line, column: column,
                message: "\(problem); a build file is text without control characters")
        default:
            return YAMLError(line: 1, message: "\(error)")
        }
    }

    static func described(
        _ problem: String, at mark: Mark, context: YamlError.Context?, in source: YAMLText
    ) -> YAMLError {
        func at(_ mark: Mark, _ message: String) -> YAMLError {
            let (line, column) = source.position(line: mark.line, column: mark.column)
            return YAMLError(line: line, column: column, message: message)
        }
        let start = context?.mark ?? mark
        switch problem {
        case "found character that cannot start any token", "found a tab character that violates indentation",
            "found a tab character where an indentation space is expected":
            switch source.scalar(line: mark.line, column: mark.column) {
            case "\t": return at(mark, "a tab is used for indentation; indent with spaces")
            case let found?: return at(mark, "a value cannot start with \"\(found)\"; quote the value")
            case nil: return at(mark, problem)
            }
        case "mapping values are not allowed in this context":
            return at(
                mark,
                "a \"key: value\" cannot start here; check the indentation, and quote a value that contains \": \"")
        case "block sequence entries are not allowed in this context":
            return at(mark, "a list item (- ) cannot start here; put it on a line of its own, indented under its key")
        case "mapping keys are not allowed in this context":
            return at(mark, "a complex key (? ) cannot start here; check the indentation")
        case "could not find expected ':'":
            return at(start, "expected \"key: value\"; add the \":\" after the key, or check the indentation")
        case "did not find expected ',' or ']'":
            return at(start, "a [ list is not closed, or its items are not separated by commas")
        case "did not find expected ',' or '}'":
            return at(start, "a { mapping is not closed, or its entries are not separated by commas")
        case "did not find expected '-' indicator":
            return at(mark, "expected a list item (- ) at this indentation; check the indentation")
        case "did not find expected key":
            return at(mark, "expected \"key: value\" at this indentation; check the indentation")
        case "did not find expected <document start>":
            return at(mark, "unexpected text after the document's end; check the indentation")
        case "found unexpected end of stream" where context?.text == "while scanning a quoted scalar",
            "found unexpected document indicator":
            return at(start, "a quoted string is not closed")
        case "found unknown escape character":
            return at(mark, "unknown escape in a double-quoted string; write \\\\ for a backslash, or use single quotes")
        case "found unexpected ':'":
            return at(mark, "a \":\" inside [ ] or { } must be followed by a space; quote the value")
        case "found undefined alias":
            return at(mark, "anchors and aliases (& and *) are not supported; write the value out where it is used")
        case "but found another document":
            return at(mark, "several documents (---) are not supported; keep one")
        default:
            let origin = context.map {
                let (line, column) = source.position(line: $0.mark.line, column: $0.mark.column)
                return " (\($0.text) at line \(line), column \(column))"
            }
            return at(mark, problem + (origin ?? ""))
        }
    }
}
