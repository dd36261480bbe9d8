import Testing

@testable import ManifoldCLI

@Suite struct YAMLSubsetTests {
    func parse(_ text: String) throws -> YAMLNode { try #require(try YAMLSubset.parse(text)) }

    func scalar(_ text: String, line: Int, quoted: Bool = false) -> YAMLNode {
        YAMLNode(value: .scalar(text, quoted: quoted), line: line)
    }

    @Test func mappingsSequencesAndScalarsWithLines() throws {
        let root = try parse(
            """
            # a build file
            image: registry.local/app   # trailing comment
            tags:
              - "1.0"
              - latest
            platforms:
            - linux/amd64
            - platform: windows/amd64:10.0.20348
              dockerfile: 'Dockerfile.windows'

              build_args: {BASE: "mcr.microsoft.com/windows:ltsc2022", N: 1}
            empty:
            url: https://example.com/a#b
            """)
        guard case .mapping(let entries) = root.value else { Issue.record("not a mapping"); return }
        #expect(entries.map(\.key) == ["image", "tags", "platforms", "empty", "url"])
        #expect(entries.map(\.line) == [2, 3, 6, 12, 13])
        #expect(entries[0].value == scalar("registry.local/app", line: 2))
        #expect(
            entries[1].value
                == YAMLNode(value: .sequence([scalar("1.0", line: 4, quoted: true), scalar("latest", line: 5)]), line: 4))
        guard case .sequence(let platforms) = entries[2].value.value, platforms.count == 2,
            case .mapping(let windows) = platforms[1].value
        else { Issue.record("platforms: \(entries[2].value)"); return }
        #expect(platforms[0] == scalar("linux/amd64", line: 7))
        #expect(windows.map(\.key) == ["platform", "dockerfile", "build_args"])
        #expect(windows[1].value == scalar("Dockerfile.windows", line: 9, quoted: true))
        #expect(windows[2].line == 11)
        guard case .mapping(let args) = windows[2].value.value else { Issue.record("args"); return }
        #expect(args.map(\.key) == ["BASE", "N"])
        #expect(args[0].value == scalar("mcr.microsoft.com/windows:ltsc2022", line: 11, quoted: true))
        #expect(args[1].value == scalar("1", line: 11))
        #expect(entries[3].value.value == .null)
        #expect(entries[4].value == scalar("https://example.com/a#b", line: 13))
    }

    @Test func quotedStringsAndEscapes() throws {
        let root = try parse(
            #"""
            a: "tab\there \"q\" \u00e9 # not a comment"
            b: 'it''s # also not'
            c: it's plain
            d: [ "x, y", 'z', plain words , ]
            e: {}
            f: []
            g: ~
            """#)
        guard case .mapping(let entries) = root.value else { Issue.record("not a mapping"); return }
        #expect(entries[0].value == scalar("tab\there \"q\" é # not a comment", line: 1, quoted: true))
        #expect(entries[1].value == scalar("it's # also not", line: 2, quoted: true))
        #expect(entries[2].value == scalar("it's plain", line: 3))
        #expect(
            entries[3].value
                == YAMLNode(
                    value: .sequence([
                        scalar("x, y", line: 4, quoted: true), scalar("z", line: 4, quoted: true), scalar("plain words", line: 4),
                    ]), line: 4))
        #expect(entries[4].value == YAMLNode(value: .mapping([]), line: 5))
        #expect(entries[5].value == YAMLNode(value: .sequence([]), line: 6))
        #expect(entries[6].value.value == .null)
    }

    @Test func nestedSequencesAndDocumentMarkers() throws {
        let root = try parse("---\n- - a\n  - b\n- c\n...\nignored: after end\n")
        #expect(
            root
                == YAMLNode(
                    value: .sequence([
                        YAMLNode(value: .sequence([scalar("a", line: 2), scalar("b", line: 3)]), line: 2), scalar("c", line: 4),
                    ]), line: 2))
        #expect(try YAMLSubset.parse("# only a comment\n\n") == nil)
        #expect(
            try parse("\"quoted key\": 1\n")
                == YAMLNode(value: .mapping([.init(key: "quoted key", line: 1, value: scalar("1", line: 1))]), line: 1))
    }

    @Test(arguments: [
        ("a: 1\n\tb: 2\n", 2, "tab"),
        ("a: 1\na: 2\n", 2, "appears twice (first on line 1)"),
        ("a: |\n  text\n", 1, "block scalars"),
        ("a: &x 1\n", 1, "anchors"),
        ("a: *x\n", 1, "anchors"),
        ("a: !!str 1\n", 1, "tags"),
        ("a: [1, 2\n", 1, "not closed"),
        ("a: \"open\n", 1, "not closed"),
        ("a: 1\n  b: 2\n", 2, "unexpected indentation"),
        ("a:\n  - x\n  y: 1\n", 3, "check the indentation"),
        ("- a\n   b\n", 2, "multi-line"),
        ("- a: 1\n     b: 2\n", 2, "unexpected indentation"),
        ("- a\nb: 1\n", 2, "unexpected"),
        ("a: b\nplain\n", 2, "expected \"key: value\""),
        ("a: {x: 1, x: 2}\n", 1, "appears twice"),
        ("a: \"\\q\"\n", 1, "unknown escape"),
        ("---\na: 1\n---\nb: 2\n", 3, "several documents"),
        ("text\n  more\n", 2, "multi-line"),
    ])
    func errorsNameTheLine(_ text: String, _ line: Int, _ mention: String) {
        do {
            let node = try YAMLSubset.parse(text)
            Issue.record("parsed \(String(describing: node)) from \(text)")
        } catch {
            #expect(error.line == line, "\(text): \(error)")
            #expect(error.message.contains(mention), "\(text): \(error)")
        }
    }
}
