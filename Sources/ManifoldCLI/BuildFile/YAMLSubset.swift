import Foundation

/// A node of a parsed YAML document, with the line it starts on (1-based).
struct YAMLNode: Sendable, Equatable {
    struct Entry: Sendable, Equatable {
        var key: String
        var line: Int
        var value: YAMLNode
    }

    enum Value: Sendable, Equatable {
        /// Nothing after the colon, `~` or `null`.
        case null
        /// Text exactly as written (plain scalars are never turned into numbers or booleans).
        case scalar(String, quoted: Bool)
        case sequence([YAMLNode])
        /// Entries in the order written; keys are unique.
        case mapping([Entry])
    }

    var value: Value
    var line: Int

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

/// A document outside the supported subset, or malformed, at `line`.
struct YAMLError: Error, CustomStringConvertible, Equatable {
    var line: Int
    var message: String
    var description: String { "line \(line): \(message)" }
}

/// A small YAML parser for build files, written for the CLI so it depends on Foundation only.
///
/// The subset:
/// - block mappings (`key: value`) and block sequences (`- item`), nested by indentation with spaces
///   (a sequence may sit at its key's indentation, as is common);
/// - flow sequences `[a, b]` and flow mappings `{a: b}` on one line, nestable;
/// - plain scalars, `'single'` (`''` is a quote) and `"double"` quoted scalars (escapes `\\ \" \n \t \r \0 \/ \xHH
///   \uHHHH \UHHHHHHHH`);
/// - `#` comments (at the start of a line or after whitespace), blank lines, a leading `---`, a final `...`.
///
/// Not supported, and reported with the line: tabs for indentation, block scalars (`|`, `>`), multi-line plain or
/// quoted scalars, anchors and aliases (`&`, `*`), tags (`!`), complex keys (`?`), directives (`%`), several
/// documents. Scalars stay text as written: `1.0` is `"1.0"`, never a number; callers interpret booleans.
enum YAMLSubset {
    struct Line {
        var number: Int
        var indent: Int
        var content: String
    }

    /// Parses `text`; nil when the document is empty.
    static func parse(_ text: String) throws(YAMLError) -> YAMLNode? {
        var parser = Parser(lines: try lines(of: text))
        guard !parser.lines.isEmpty else { return nil }
        let root = try parser.node(indent: parser.lines[0].indent)
        if parser.position < parser.lines.count {
            let line = parser.lines[parser.position]
            throw YAMLError(
                line: line.number,
                message: "unexpected \"\(line.content)\" at column \(line.indent + 1); check the indentation")
        }
        return root
    }

    /// Splits into non-blank lines without comments, measuring indentation.
    static func lines(of text: String) throws(YAMLError) -> [Line] {
        var result: [Line] = []
        let normalized = text.replacingOccurrences(of: "\r\n", with: "\n")
        for (index, raw) in normalized.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = index + 1
            var indent = 0
            for character in raw {
                if character == " " {
                    indent += 1
                } else if character == "\t" {
                    throw YAMLError(line: number, message: "a tab is used for indentation; indent with spaces")
                } else {
                    break
                }
            }
            var content = stripComment(String(raw.dropFirst(indent)))
            while let last = content.last, last == " " || last == "\t" { content.removeLast() }
            if content.isEmpty { continue }
            if indent == 0 && content == "---" {
                guard result.isEmpty else {
                    throw YAMLError(line: number, message: "several documents (---) are not supported; keep one")
                }
                continue
            }
            if indent == 0 && content == "..." { break }
            if indent == 0 && content.hasPrefix("%") {
                throw YAMLError(line: number, message: "directives (%) are not supported")
            }
            result.append(Line(number: number, indent: indent, content: content))
        }
        return result
    }

    /// Removes a `#` comment that is outside quotes and at the start or after whitespace.
    static func stripComment(_ line: String) -> String {
        var quote: Character? = nil
        var previous: Character? = nil
        var escaped = false
        var index = line.startIndex
        while index < line.endIndex {
            let character = line[index]
            if let open = quote {
                let next = line.index(after: index)
                if open == "'" && character == "'" && next < line.endIndex && line[next] == "'" {
                    // `''` is a quote inside a single-quoted string.
                    previous = character
                    index = line.index(after: next)
                    continue
                }
                if open == "\"" && escaped {
                    escaped = false
                } else if open == "\"" && character == "\\" {
                    escaped = true
                } else if character == open {
                    quote = nil
                }
            } else if character == "\"" || character == "'" {
                if previous == nil || " [{,:-".contains(previous!) { quote = character }
            } else if character == "#" && (previous == nil || previous == " " || previous == "\t") {
                return String(line[..<index])
            }
            previous = character
            index = line.index(after: index)
        }
        return line
    }

    static func isSequenceItem(_ content: String) -> Bool { content == "-" || content.hasPrefix("- ") }

    struct Parser {
        var lines: [Line]
        var position = 0

        /// The block node starting at the current line, whose indentation is `indent`.
        mutating func node(indent: Int) throws(YAMLError) -> YAMLNode {
            let line = lines[position]
            if isSequenceItem(line.content) { return try sequence(indent: indent) }
            if try YAMLSubset.mappingKey(line.content, line: line.number) != nil { return try mapping(indent: indent) }
            position += 1
            let value = try YAMLSubset.inline(line.content, line: line.number)
            if position < lines.count, lines[position].indent > indent {
                throw YAMLError(
                    line: lines[position].number,
                    message: "a value continues on this line; multi-line values are not supported, put it on one line in quotes")
            }
            return value
        }

        mutating func sequence(indent: Int) throws(YAMLError) -> YAMLNode {
            let first = lines[position].number
            var items: [YAMLNode] = []
            while position < lines.count, lines[position].indent == indent, isSequenceItem(lines[position].content) {
                let line = lines[position]
                let rest = line.content.dropFirst().drop(while: { $0 == " " })
                if rest.isEmpty {
                    position += 1
                    if position < lines.count, lines[position].indent > indent {
                        items.append(try node(indent: lines[position].indent))
                    } else {
                        items.append(YAMLNode(value: .null, line: line.number))
                    }
                } else {
                    // `- key: value` starts a block at the column of `key`: treat the rest as its own line.
                    let column = indent + (line.content.count - rest.count)
                    lines[position] = Line(number: line.number, indent: column, content: String(rest))
                    items.append(try node(indent: column))
                }
                if position < lines.count, lines[position].indent > indent {
                    let next = lines[position]
                    throw YAMLError(
                        line: next.number, message: "unexpected indentation of \"\(next.content)\"; align it with its list item")
                }
            }
            return YAMLNode(value: .sequence(items), line: first)
        }

        mutating func mapping(indent: Int) throws(YAMLError) -> YAMLNode {
            let first = lines[position].number
            var entries: [YAMLNode.Entry] = []
            var seen: [String: Int] = [:]
            while position < lines.count, lines[position].indent == indent {
                let line = lines[position]
                if isSequenceItem(line.content) {
                    throw YAMLError(line: line.number, message: "a list item where a \"key: value\" was expected")
                }
                guard let (key, rest) = try YAMLSubset.mappingKey(line.content, line: line.number) else {
                    throw YAMLError(line: line.number, message: "expected \"key: value\", found \"\(line.content)\"")
                }
                if let earlier = seen[key] {
                    throw YAMLError(line: line.number, message: "key \"\(key)\" appears twice (first on line \(earlier))")
                }
                seen[key] = line.number
                position += 1
                let value: YAMLNode
                if rest.isEmpty {
                    if position < lines.count, lines[position].indent > indent {
                        value = try node(indent: lines[position].indent)
                    } else if position < lines.count, lines[position].indent == indent, isSequenceItem(lines[position].content) {
                        value = try sequence(indent: indent)
                    } else {
                        value = YAMLNode(value: .null, line: line.number)
                    }
                } else {
                    value = try YAMLSubset.inline(rest, line: line.number)
                    if position < lines.count, lines[position].indent > indent {
                        throw YAMLError(
                            line: lines[position].number,
                            message:
                                "unexpected indentation: \"\(key)\" already has a value on line \(line.number) "
                                + "(multi-line values are not supported)")
                    }
                }
                entries.append(YAMLNode.Entry(key: key, line: line.number, value: value))
            }
            return YAMLNode(value: .mapping(entries), line: first)
        }
    }

    /// The key and the text after `key:` when `content` is a mapping entry.
    static func mappingKey(_ content: String, line: Int) throws(YAMLError) -> (String, String)? {
        let characters = Array(content)
        guard let first = characters.first, !"[{".contains(first) else { return nil }
        if first == "?" && (characters.count == 1 || characters[1] == " ") {
            throw YAMLError(line: line, message: "complex keys (?) are not supported")
        }
        var scanner = FlowScanner(characters: characters, line: line)
        let key: String
        if first == "\"" || first == "'" {
            key = try scanner.quoted()
            scanner.skipSpaces()
            guard scanner.peek == ":" else { return nil }
        } else {
            var index = 0
            while index < characters.count {
                if characters[index] == ":" && (index + 1 == characters.count || characters[index + 1] == " ") { break }
                index += 1
            }
            guard index < characters.count else { return nil }
            key = String(characters[..<index]).trimmingCharacters(in: .whitespaces)
            scanner.index = index
        }
        scanner.index += 1
        let rest = String(characters[min(scanner.index, characters.count)...]).trimmingCharacters(in: .whitespaces)
        return (key, rest)
    }

    /// A value written on one line: flow collection, quoted or plain scalar.
    static func inline(_ text: String, line: Int) throws(YAMLError) -> YAMLNode {
        let characters = Array(text)
        var scanner = FlowScanner(characters: characters, line: line)
        let node = try scanner.value(inFlow: false)
        scanner.skipSpaces()
        if scanner.index < characters.count {
            throw YAMLError(
                line: line,
                message: "unexpected \"\(String(characters[scanner.index...]))\" after the value; quote the whole value")
        }
        return node
    }

    /// Reads values character by character on one line.
    struct FlowScanner {
        var characters: [Character]
        var line: Int
        var index = 0

        var peek: Character? { index < characters.count ? characters[index] : nil }

        mutating func skipSpaces() {
            while let character = peek, character == " " || character == "\t" { index += 1 }
        }

        mutating func value(inFlow: Bool) throws(YAMLError) -> YAMLNode {
            skipSpaces()
            guard let character = peek else { return YAMLNode(value: .null, line: line) }
            switch character {
            case "[": return try sequence()
            case "{": return try mapping()
            case "\"", "'": return YAMLNode(value: .scalar(try quoted(), quoted: true), line: line)
            case "|", ">":
                throw YAMLError(
                    line: line, message: "block scalars (| and >) are not supported; write the value on one line in quotes")
            case "&", "*": throw YAMLError(line: line, message: "anchors and aliases (& and *) are not supported")
            case "!": throw YAMLError(line: line, message: "tags (!) are not supported")
            case "@", "`": throw YAMLError(line: line, message: "a value cannot start with \(character); quote it")
            default: return plain(inFlow: inFlow)
            }
        }

        mutating func plain(inFlow: Bool) -> YAMLNode {
            let start = index
            while let character = peek {
                if inFlow && ",]}".contains(character) { break }
                if character == ":"
                    && (index + 1 == characters.count || characters[index + 1] == " "
                        || (inFlow && ",]}".contains(characters[index + 1])))
                {
                    break
                }
                index += 1
            }
            let text = String(characters[start..<index]).trimmingCharacters(in: .whitespaces)
            if text.isEmpty || text == "~" || text == "null" { return YAMLNode(value: .null, line: line) }
            return YAMLNode(value: .scalar(text, quoted: false), line: line)
        }

        mutating func sequence() throws(YAMLError) -> YAMLNode {
            index += 1
            var items: [YAMLNode] = []
            while true {
                skipSpaces()
                guard let character = peek else { throw YAMLError(line: line, message: "a [ list is not closed on its line") }
                if character == "]" {
                    index += 1
                    return YAMLNode(value: .sequence(items), line: line)
                }
                items.append(try value(inFlow: true))
                skipSpaces()
                if peek == nil { throw YAMLError(line: line, message: "a [ list is not closed on its line") }
                if peek == "," {
                    index += 1
                } else if peek != "]" {
                    throw YAMLError(line: line, message: "expected , or ] in a [ list, found \(describe(peek))")
                }
            }
        }

        mutating func mapping() throws(YAMLError) -> YAMLNode {
            index += 1
            var entries: [YAMLNode.Entry] = []
            while true {
                skipSpaces()
                guard let character = peek else { throw YAMLError(line: line, message: "a { mapping is not closed on its line") }
                if character == "}" {
                    index += 1
                    return YAMLNode(value: .mapping(entries), line: line)
                }
                let keyNode = try value(inFlow: true)
                guard case .scalar(let key, _) = keyNode.value else {
                    throw YAMLError(line: line, message: "a key in a { mapping must be text, found \(keyNode.kind)")
                }
                skipSpaces()
                guard peek == ":" else { throw YAMLError(line: line, message: "expected : after \"\(key)\" in a { mapping") }
                index += 1
                if entries.contains(where: { $0.key == key }) {
                    throw YAMLError(line: line, message: "key \"\(key)\" appears twice")
                }
                entries.append(YAMLNode.Entry(key: key, line: line, value: try value(inFlow: true)))
                skipSpaces()
                if peek == nil { throw YAMLError(line: line, message: "a { mapping is not closed on its line") }
                if peek == "," {
                    index += 1
                } else if peek != "}" {
                    throw YAMLError(line: line, message: "expected , or } in a { mapping, found \(describe(peek))")
                }
            }
        }

        mutating func quoted() throws(YAMLError) -> String {
            let quote = characters[index]
            index += 1
            var result = ""
            while let character = peek {
                index += 1
                if quote == "'" {
                    if character == "'" {
                        if peek == "'" {
                            result.append("'")
                            index += 1
                            continue
                        }
                        return result
                    }
                    result.append(character)
                    continue
                }
                if character == "\"" { return result }
                guard character == "\\" else {
                    result.append(character)
                    continue
                }
                guard let escape = peek else { break }
                index += 1
                switch escape {
                case "\\": result.append("\\")
                case "\"": result.append("\"")
                case "/": result.append("/")
                case "n": result.append("\n")
                case "t": result.append("\t")
                case "r": result.append("\r")
                case "0": result.append("\0")
                case " ": result.append(" ")
                case "x": result.append(try hexScalar(digits: 2))
                case "u": result.append(try hexScalar(digits: 4))
                case "U": result.append(try hexScalar(digits: 8))
                default: throw YAMLError(line: line, message: "unknown escape \\\(escape) in a double-quoted string")
                }
            }
            throw YAMLError(
                line: line,
                message: "a \(quote == "'" ? "single" : "double")-quoted string is not closed on its line "
                    + "(multi-line strings are not supported)")
        }

        mutating func hexScalar(digits: Int) throws(YAMLError) -> Character {
            guard index + digits <= characters.count, let value = UInt32(String(characters[index..<index + digits]), radix: 16),
                let scalar = Unicode.Scalar(value)
            else { throw YAMLError(line: line, message: "a \\x, \\u or \\U escape needs \(digits) hex digits") }
            index += digits
            return Character(scalar)
        }

        func describe(_ character: Character?) -> String { character.map { "\"\($0)\"" } ?? "the end of the line" }
    }
}
