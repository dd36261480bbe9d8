/// The text of a YAML document as libyaml counts it: Unicode scalars, and lines ended by `\r\n`, `\r`, `\n`, NEL, LS
/// or PS. A libyaml mark (line and column, 1-based, the column in scalars) points into it.
struct YAMLText {
    let scalars: [Unicode.Scalar]
    /// The index in ``scalars`` where each line starts.
    let lineStarts: [Int]

    init(_ text: String) {
        scalars = Array(text.unicodeScalars)
        var starts = [0]
        var index = 0
        while index < scalars.count {
            if scalars[index] == "\r", index + 1 < scalars.count, scalars[index + 1] == "\n" { index += 1 }
            if Self.isBreak(scalars[index]) { starts.append(index + 1) }
            index += 1
        }
        lineStarts = starts
    }

    /// The scalar at a libyaml mark, nil when the mark is past the end of its line's text.
    func scalar(line: Int, column: Int) -> Unicode.Scalar? {
        guard line >= 1, line <= lineStarts.count, column >= 1 else { return nil }
        let index = lineStarts[line - 1] + column - 1
        let end = line < lineStarts.count ? lineStarts[line] : scalars.count
        return index < end ? scalars[index] : nil
    }

    /// A libyaml mark moved inside the text: at the end of the text, libyaml marks the start of a line after the last
    /// when the text does not end with a line break.
    func position(line: Int, column: Int) -> (line: Int, column: Int) {
        guard line > lineStarts.count else { return (max(1, line), max(1, column)) }
        return (lineStarts.count, scalars.count - lineStarts[lineStarts.count - 1] + 1)
    }

    static func isBreak(_ scalar: Unicode.Scalar) -> Bool {
        scalar == "\n" || scalar == "\r" || scalar == "\u{85}" || scalar == "\u{2028}" || scalar == "\u{2029}"
    }

    static func isBlank(_ scalar: Unicode.Scalar) -> Bool { scalar == " " || scalar == "\t" }

    /// A blank, a line break or the end of the text: what must follow `-`, `?` and `:` for libyaml to take them as
    /// indicators.
    static func isBlankOrEnd(_ scalar: Unicode.Scalar?) -> Bool { scalar.map { isBlank($0) || isBreak($0) } ?? true }
}

/// A cautious upper bound on how deeply a YAML document nests lists and mappings, found without parsing it.
///
/// Yams 5 builds its tree of nodes recursively, with about 1.6 KB of stack per level, and the libyaml it bundles sets
/// no limit on nesting: a line of a few thousand `[` crashes the process (a thread of the concurrency pool has 512 KiB
/// of stack on macOS). So a document is handed to Yams only when this bound is small. The bound is never below the
/// nesting libyaml finds; it can be above it for odd documents, not for the usual build file:
///
/// - A block list or mapping starts at a column where a line's text starts, or after a `- `, `? ` or `: ` that starts
///   a line, deeper than its parent's, except a list that sits at its key's column (`key:`, then lines starting with
///   `- `). So the block nesting is at most the number of such columns plus the number of columns where a line starts
///   with `- `.
/// - Every `{` counts as an opening, and every `[` as two (a list, and the mapping `[key: value]` makes inside it), in
///   strings and comments too. A `]` or `}` takes its opening's count off only when a scan that follows libyaml's
///   rules for the inside of a flow collection (plain and quoted scalars, `,`, `:`, `?`) from that `[` or `{` pairs
///   the two on one line. If the opening is real to libyaml, so is the closing, so what is taken off wrongly never
///   exceeds what was counted wrongly. A flow collection that spans lines or holds a comment, an anchor or a tag is not
///   followed, and stays counted as open.
enum YAMLNesting {
    /// The bound, and the line and column (1-based) where it is first reached; the scan stops at the first place
    /// where it passes `limit`.
    static func bound(_ text: YAMLText, stoppingAbove limit: Int = .max) -> (levels: Int, line: Int, column: Int) {
        let scalars = text.scalars
        let paired = pairedClosings(scalars)
        var open = 0
        var columns = Set<Int>()
        var listColumns = Set<Int>()
        var best = (levels: 0, line: 1, column: 1)
        for (lineIndex, start) in text.lineStarts.enumerated() {
            let end = lineIndex + 1 < text.lineStarts.count ? text.lineStarts[lineIndex + 1] : scalars.count
            blockColumns(scalars[start..<end], columns: &columns, listColumns: &listColumns)
            for index in start..<end {
                switch scalars[index] {
                case "[": open += 2
                case "{": open += 1
                default: open -= Int(paired[index])
                }
                let levels = open + columns.count + listColumns.count
                if levels > best.levels {
                    best = (levels, lineIndex + 1, index - start + 1)
                    if levels > limit { return best }
                }
            }
        }
        return best
    }

    /// Adds the columns where a block collection could start on `line`: where its text starts, and after each `- `,
    /// `? ` or `: ` that starts it; and to `listColumns` the column of a leading `- `.
    static func blockColumns(_ line: ArraySlice<Unicode.Scalar>, columns: inout Set<Int>, listColumns: inout Set<Int>) {
        func at(_ index: Int) -> Unicode.Scalar? { index < line.endIndex ? line[index] : nil }
        var index = line.startIndex
        while let scalar = at(index), YAMLText.isBlank(scalar) { index += 1 }
        guard let first = at(index), !YAMLText.isBreak(first) else { return }
        columns.insert(index - line.startIndex)
        if first == "-", YAMLText.isBlankOrEnd(at(index + 1)) { listColumns.insert(index - line.startIndex) }
        while let indicator = at(index), indicator == "-" || indicator == "?" || indicator == ":",
            YAMLText.isBlankOrEnd(at(index + 1))
        {
            index += 1
            while let scalar = at(index), YAMLText.isBlank(scalar) { index += 1 }
            guard let next = at(index), !YAMLText.isBreak(next) else { return }
            columns.insert(index - line.startIndex)
        }
    }

    /// For each `]` and `}` that closes a `[` or `{` as libyaml reads them (if that opening is one), the opening's count
    /// (2 for `[`, 1 for `{`); 0 for every other scalar.
    ///
    /// The scan covers the text, then the inside of each quoted scalar it met in a flow collection: a `[` in there
    /// may be real to libyaml (if the scan took a wrong turn earlier), and pairing it within the string, never past
    /// it, keeps every closing paired at most once.
    static func pairedClosings(_ scalars: [Unicode.Scalar]) -> [UInt8] {
        var paired = [UInt8](repeating: 0, count: scalars.count)
        var ranges: [(range: Range<Int>, depth: Int)] = [(0..<scalars.count, 0)]
        while let (range, depth) = ranges.popLast() {
            let scan = FlowScan(scalars: scalars, end: range.upperBound)
            // Strings in strings are rare and short; a few levels are enough, and skipping one only costs accuracy.
            scan.pair(from: range.lowerBound, into: &paired) { inside in
                if depth < 4 { ranges.append((inside, depth + 1)) }
            }
        }
        return paired
    }

    /// libyaml's reading of the inside of flow collections, over the scalars before `end`.
    struct FlowScan {
        let scalars: [Unicode.Scalar]
        let end: Int

        func at(_ index: Int) -> Unicode.Scalar? { index < end ? scalars[index] : nil }

        /// From each `[` or `{` outside a flow collection, follows the tokens and marks the closings it pairs; gives up
        /// on a flow collection (its openings stay unpaired) at a line break or anything it does not follow.
        func pair(from start: Int, into paired: inout [UInt8], quoted: (Range<Int>) -> Void) {
            // The counts of the openings followed and not yet closed; empty outside a flow collection the scan follows.
            var open: [UInt8] = []
            var index = start
            while let scalar = at(index) {
                if open.isEmpty {
                    if scalar == "[" || scalar == "{" { open.append(scalar == "[" ? 2 : 1) }
                    index += 1
                    continue
                }
                // At the start of a token inside a flow collection.
                switch scalar {
                case " ", "\t", ",", "?", ":":
                    index += 1
                case "[", "{":
                    open.append(scalar == "[" ? 2 : 1)
                    index += 1
                case "]", "}":
                    paired[index] = open.removeLast()
                    index += 1
                case "'", "\"":
                    if let after = quotedEnd(from: index) {
                        quoted(index + 1..<after - 1)
                        index = after
                    } else {
                        open.removeAll()
                        index += 1
                    }
                case "#", "!", "&", "*", "|", ">", "%", "@", "`", "\u{FEFF}", "\0":
                    // A comment, an anchor, a tag or an error: not followed.
                    open.removeAll()
                    index += 1
                default:
                    let blockEntry = scalar == "-" && YAMLText.isBlankOrEnd(at(index + 1))
                    if !blockEntry, !YAMLText.isBreak(scalar), let after = plainEnd(from: index) {
                        index = after
                    } else {
                        open.removeAll()
                        index += 1
                    }
                }
            }
        }

        /// The index after the quoted scalar starting at `start`, nil when it does not end on its line.
        func quotedEnd(from start: Int) -> Int? {
            let quote = scalars[start]
            var index = start + 1
            while let scalar = at(index) {
                if YAMLText.isBreak(scalar) { return nil }
                if quote == "'", scalar == "'" {
                    // `''` is a quote inside the string.
                    guard at(index + 1) == "'" else { return index + 1 }
                    index += 2
                } else if quote == "\"", scalar == "\\" {
                    guard let escaped = at(index + 1), !YAMLText.isBreak(escaped) else { return nil }
                    index += 2
                } else if quote == "\"", scalar == "\"" {
                    return index + 1
                } else {
                    index += 1
                }
            }
            return nil
        }

        /// Where the plain scalar starting at `start` ends (at the `,`, `[`, `]`, `{`, `}` or `: ` after it), nil when
        /// it goes on to the next line, meets a comment, or is an error to libyaml.
        func plainEnd(from start: Int) -> Int? {
            func isFlowIndicator(_ scalar: Unicode.Scalar?) -> Bool {
                scalar == "," || scalar == "[" || scalar == "]" || scalar == "{" || scalar == "}"
            }
            var index = start
            while true {
                while let scalar = at(index), !YAMLText.isBlank(scalar), !YAMLText.isBreak(scalar) {
                    if isFlowIndicator(scalar) { return index }
                    if scalar == ":" {
                        if YAMLText.isBlankOrEnd(at(index + 1)) { return index }
                        // libyaml: "found unexpected ':'".
                        if isFlowIndicator(at(index + 1)) || at(index + 1) == "?" { return nil }
                    }
                    index += 1
                }
                guard let blank = at(index), YAMLText.isBlank(blank) else { return nil }
                while let scalar = at(index), YAMLText.isBlank(scalar) { index += 1 }
                guard let next = at(index), !YAMLText.isBreak(next), next != "#" else { return nil }
                if isFlowIndicator(next) || (next == ":" && YAMLText.isBlankOrEnd(at(index + 1))) { return index }
            }
        }
    }
}
