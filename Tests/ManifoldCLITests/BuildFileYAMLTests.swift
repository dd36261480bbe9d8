import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldTestSupport
import Testing

@testable import ManifoldCLI

/// The YAML of `manifold.yaml` as the build file reads it (Yams, with what a build file has no use for refused).
@Suite struct BuildFileYAMLTests {
    func parse(_ text: String) throws -> BuildFile { try BuildFile.parse(text, file: "manifold.yaml") }

    func failure(_ text: String) -> String {
        do {
            let file = try parse(text)
            return "accepted: \(file)"
        } catch {
            return "\(error)"
        }
    }

    @Test func commentsQuotesEscapesAndDocumentMarkers() throws {
        let file = try parse(
            #"""
            # a build file
            ---
            "image": registry.local/app   # trailing comment
            tags:
              - "1.0"
              - latest
            platforms:
            - linux/amd64
            - platform: windows/amd64:10.0.20348
              dockerfile: 'Dockerfile.windows'

              build_args: {BASE: "mcr.microsoft.com/windows:ltsc2022", N: 1, EMPTY: , NOTHING: ~}
            labels:
              url: https://example.com/a#b
              escapes: "tab\there \"q\" \u00e9 # not a comment"
              single: 'it''s # also not'
              plain: it's plain
              empty:
            secrets: [ "x, y", 'z', plain words , ]
            secret_files: {}
            secret_build_args: []
            ...
            """#)
        #expect(file.image == "registry.local/app")
        #expect(file.tags == ["1.0", "latest"])
        #expect(
            file.platforms == [
                PlatformSpec(platform: Platform(os: "linux", architecture: "amd64")),
                PlatformSpec(
                    platform: Platform(os: "windows", architecture: "amd64", osVersion: "10.0.20348"),
                    dockerfile: "Dockerfile.windows",
                    buildArgs: ["BASE": "mcr.microsoft.com/windows:ltsc2022", "N": "1", "EMPTY": "", "NOTHING": ""]),
            ])
        #expect(
            file.labels == [
                "url": "https://example.com/a#b", "escapes": "tab\there \"q\" é # not a comment",
                "single": "it's # also not", "plain": "it's plain", "empty": "",
            ])
        #expect(file.secrets == ["x, y", "z", "plain words"])
        #expect(file.secretFiles.isEmpty)
        #expect(file.secretBuildArgs.isEmpty)
    }

    @Test func valuesStayTextAsWritten() throws {
        let file = try parse("image: r.local/a\ntags: [1.0, 010, 0x10, true, 1e3]\nbuild_args: {V: 1.10, W: no}\n")
        #expect(file.tags == ["1.0", "010", "0x10", "true", "1e3"])
        #expect(file.buildArgs == ["V": "1.10", "W": "no"])
        #expect(failure("max_attempts: 0x10\n").hasPrefix("manifold.yaml:1:15: max_attempts: expected a whole number"))
    }

    /// YAML the earlier hand-written parser refused: block scalars, values over several lines, a list over several
    /// lines, a leading byte order mark, CRLF line ends.
    @Test func multiLineValuesAndCollections() throws {
        let file = try parse(
            """
            \u{FEFF}image: registry.local/app\r
            tags: [\r
              1.0,\r
              latest,\r
            ]\r
            build_args:\r
              SCRIPT: |\r
                echo one\r
                echo two\r
              FOLDED: >-\r
                one\r
                two\r
              PLAIN: a long\r
                value\r
              QUOTED: "over\r
                lines"\r
            """)
        #expect(file.image == "registry.local/app")
        #expect(file.tags == ["1.0", "latest"])
        #expect(
            file.buildArgs == [
                "SCRIPT": "echo one\necho two\n", "FOLDED": "one two", "PLAIN": "a long value", "QUOTED": "over lines",
            ])
    }

    @Test(arguments: [
        ("image: a\n\ttags: [b]\n", "manifold.yaml:2:1: a tab is used for indentation; indent with spaces"),
        ("image: a\nimage: b\n", "manifold.yaml:2:1: key \"image\" appears twice (first on line 1)"),
        ("labels: {x: 1, x: 2}\n", "manifold.yaml:1:16: labels: key \"x\" appears twice (first on line 1)"),
        ("image: &x a\n", "manifold.yaml:1:8: image: anchors and aliases (& and *) are not supported"),
        ("image: *x\n", "manifold.yaml:1:8: anchors and aliases (& and *) are not supported"),
        ("image: &x a\ndockerfile: *x\n", "manifold.yaml:1:8: image: anchors and aliases (& and *) are not supported"),
        ("platforms:\n  - &p linux/amd64\n", "manifold.yaml:2:5: platforms[0]: anchors and aliases"),
        ("image: !!str a\n", "manifold.yaml:1:8: image: tags (!) are not supported"),
        ("tags: !t [a]\n", "manifold.yaml:1:7: tags: tags (!) are not supported"),
        ("<<: {image: a}\n", "manifold.yaml:1:1: merge keys (<<) are not supported"),
        ("[a]: b\n", "manifold.yaml:1:1: a key must be text, found a list"),
        ("labels: {? : x}\n", "manifold.yaml:1:12: labels: a key is missing"),
        ("tags: [1, 2\n", "manifold.yaml:1:7: a [ list is not closed"),
        ("labels: {a: b\n", "manifold.yaml:1:9: a { mapping is not closed"),
        ("image: \"open\n", "manifold.yaml:1:8: a quoted string is not closed"),
        ("image: \"\\q\"\n", "manifold.yaml:1:9: unknown escape in a double-quoted string"),
        ("image: a\n  tags: b\n", "manifold.yaml:2:7: a \"key: value\" cannot start here; check the indentation"),
        ("tags:\n  - x\n  image: a\n", "manifold.yaml:3:3: expected a list item (- ) at this indentation"),
        ("platforms:\n- platform: linux/amd64\n     dockerfile: X\n", "manifold.yaml:3:16: a \"key: value\" cannot"),
        ("- a\nimage: b\n", "manifold.yaml:2:1: expected a list item (- ) at this indentation"),
        ("image: b\nplain\n", "manifold.yaml:2:1: expected \"key: value\"; add the \":\" after the key"),
        ("image: a\nb: - c\n", "manifold.yaml:2:4: a list item (- ) cannot start here"),
        ("---\nimage: a\n---\nimage: b\n", "manifold.yaml:3:1: several documents (---) are not supported; keep one"),
        ("image: a\n...\ntags: [b]\n", "manifold.yaml:3:1: unexpected text after the document's end"),
        ("image: @a\n", "manifold.yaml:1:8: a value cannot start with \"@\"; quote the value"),
        ("tags: [a:b, c:]\n", "manifold.yaml:1:14: a \":\" inside [ ] or { } must be followed by a space"),
        ("image: a\u{1}\n", "manifold.yaml:1:9: control characters are not allowed"),
        ("text\n  more\n", "manifold.yaml:1:1: expected a mapping of key: value, found text"),
        ("~\n", "manifold.yaml:1:1: expected a mapping of key: value, found nothing"),
    ])
    func refusalsNameLineColumnAndKey(_ text: String, _ expected: String) {
        let described = failure(text)
        #expect(described.hasPrefix(expected), "\(text.debugDescription): \(described)")
    }

    /// At the end of a text without a final line break, libyaml marks a line after the last (found by fuzzing).
    @Test(arguments: [
        ("ima[[[{i%maa: [[", "manifold.yaml:1:17: did not find expected node content"),
        ("---", "manifold.yaml:1:4: expected a mapping of key: value, found nothing"),
        ("image: a\ntags: [b, c", "manifold.yaml:2:7: a [ list is not closed"),
        ("image: a\nlabels:\n  a: 'b", "manifold.yaml:3:6: a quoted string is not closed"),
    ])
    func errorsAtTheEndOfAFileWithoutALineBreakNameItsLastLine(_ text: String, _ expected: String) {
        let described = failure(text)
        #expect(described.hasPrefix(expected), "\(text.debugDescription): \(described)")
    }

    @Test func aHugeFileIsRefusedNamingTheLimit() throws {
        let huge = "image: r.local/a\nlabels:\n  big: \"" + String(repeating: "x", count: YAMLDocument.maxBytes) + "\"\n"
        #expect(failure(huge).hasPrefix("manifold.yaml:1: the file has \(huge.utf8.count) bytes, over the limit of 1048576"))

        let scratch = try ScratchDirectory(prefix: "cli-huge-build-file")
        defer { scratch.remove() }
        try Data(huge.utf8).write(to: scratch.file("manifold.yaml"))
        #expect(throws: BuildFileError.self) { try BuildFile.load(scratch.file("manifold.yaml")) }
        do {
            _ = try BuildFile.load(scratch.file("manifold.yaml"))
        } catch {
            #expect("\(error)".contains("larger than the limit of 1048576 bytes (1 MiB)"), "\(error)")
        }
    }

    /// Yams recurses once per level and libyaml sets no limit: these crash a process unless refused first.
    @Test(arguments: [
        "image: " + String(repeating: "[", count: 20_000),
        "labels: " + String(repeating: "{a: ", count: 20_000),
        String(repeating: "- ", count: 20_000) + "a\n",
        (0..<500).map { String(repeating: " ", count: $0) + "k\($0):\n" }.joined(),
        "tags: [" + String(repeating: "[a, \"]\", ", count: 5_000),
        "tags: [" + String(repeating: "[it's, 'x]', ", count: 5_000),
    ])
    func deepNestingIsRefusedBeforeParsing(_ text: String) {
        #expect(failure(text).contains("lists and mappings nest too deeply here: over the limit of 64 levels"))
    }

    @Test func manyFlowCollectionsAndBracketsInStringsStayWellUnderTheLimit() throws {
        func file(labels: Int) -> String {
            var text = "image: r.local/a\ntags: [a, \"it's [\"]\nlabels:\n"
            for index in 0..<labels {
                text += "  l\(index): {a: \"[x]\", b: '{\"json\": [1, {\"c\": 2}]}', c: \"a # b\", d: [1, [2]]}\n"
                text += "  m\(index): \"{tag}-[x]\"   # a [comment]\n"
            }
            return text
        }
        let levels = YAMLNesting.bound(YAMLText(file(labels: 1))).levels
        #expect(levels < 16)
        #expect(YAMLNesting.bound(YAMLText(file(labels: 300))).levels == levels)
        // Yams reads it all; the reader refuses the first mapping where a label's text belongs.
        #expect(failure(file(labels: 300)).hasPrefix("manifold.yaml:4:3: labels.l0: expected text, found a mapping"))
    }

    /// The count that keeps deep documents from Yams is never below the nesting Yams finds.
    @Test(arguments: [
        "a: [b, \"]\", [c]]", "a: {b: 'x]]', c: [[d]]}", "a: [it's, 'x]', [[y]]]", "a: [b: [c], d]",
        "a: [b, # c ]\n [d]]", "a: x[y]]]", "a: [[[\n]]]", "a: [[\"x\\\"]]\", [b]]]", "a: ['it''s]', [b]]",
        "- - - - - a", "a:\n- b:\n  - c:\n    - d", "? a\n: - b\n  - [c: [d: e]]", "a: [?x, [b]]",
        "a: [{b: [c, {d: [e]}]}]", "a: [? b : [c: [d]]]",
    ])
    func theNestingBoundIsNeverBelowTheDepth(_ text: String) throws {
        func depth(_ node: YAMLNode) -> Int {
            switch node.value {
            case .null, .scalar: return 0
            case .sequence(let items): return 1 + (items.map(depth).max() ?? 0)
            case .mapping(let entries): return 1 + (entries.map { depth($0.value) }.max() ?? 0)
            }
        }
        let root = try #require(try YAMLDocument.parse(text))
        #expect(depth(root) <= YAMLNesting.bound(YAMLText(text)).levels, "\(text.debugDescription)")
    }
}
