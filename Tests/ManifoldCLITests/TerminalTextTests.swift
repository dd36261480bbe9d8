import Foundation
import ManifoldAPI
import ManifoldCore
import Testing

@testable import ManifoldCLI

/// Untrusted text loses every terminal control sequence, also when a sequence is split across chunks.
@Suite struct TerminalTextTests {
    @Test(arguments: [
        ("title \u{1b}]0;pwned\u{07}kept", "title kept"),
        ("osc with ST \u{1b}]8;;http://evil\u{1b}\\link\u{1b}]8;;\u{1b}\\", "osc with ST link"),
        ("\u{1b}[2Jcleared", "cleared"),
        ("\u{1b}[1;31mred\u{1b}[0m", "red"),
        ("\u{1b}[?1049h\u{1b}[?25lhidden cursor", "hidden cursor"),
        ("carriage\rreturn and bell\u{07} and nul\u{00} and del\u{7f}", "carriagereturn and bell and nul and del"),
        ("backspace\u{08}\u{08}", "backspace"),
        ("two-byte \u{1b}cReset \u{1b}(Bcharset", "two-byte Reset charset"),
        ("C1 CSI \u{9b}2Jgone, C1 OSC \u{9d}0;t\u{9c}after", "C1 CSI gone, C1 OSC after"),
        ("C1 NEL\u{85}", "C1 NEL"),
        ("DCS \u{1b}Pq#0;2;0;0;0\u{1b}\\done", "DCS done"),
        ("unterminated \u{1b}]0;swallows this line\nbut not the next", "unterminated \nbut not the next"),
        ("lines\nand\ttabs stay", "lines\nand\ttabs stay"),
        ("UTF-8 stays: ü é — 日本 😀 ¢ £", "UTF-8 stays: ü é — 日本 😀 ¢ £"),
        ("broken CSI \u{1b}[12é", "broken CSI é"),
    ])
    func cleansText(_ input: String, _ expected: String) {
        #expect(TerminalText.clean(input) == expected)
    }

    @Test func sequencesSplitAcrossChunksAreStillRemoved() {
        let text = "a\u{1b}]0;title\u{07}b\u{1b}[2Jc\u{9b}1md¢e\n"
        let bytes = Array(text.utf8)
        // Every split point, including inside ESC sequences and inside two-byte characters.
        for cut in 0...bytes.count {
            var filter = TerminalText.Filter()
            var output = filter.clean(Data(bytes[..<cut]))
            output += filter.clean(Data(bytes[cut...]))
            #expect(String(decoding: output, as: UTF8.self) == "abcd¢e\n", "split at \(cut)")
        }
        var byteByByte = TerminalText.Filter()
        var output = Data()
        for byte in bytes { output += byteByByte.clean(Data([byte])) }
        #expect(String(decoding: output, as: UTF8.self) == "abcd¢e\n")
    }
}

/// `manifold agent list` prints what agents reported about themselves: a hostile build host's labels, builders or
/// name lose their control sequences, unless `--raw`.
@Suite struct AgentListTextTests {
    @Test func agentSuppliedCellsLoseControlSequencesUnlessRaw() throws {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let agent = AgentView(
            id: "agt_1", name: "host\u{1b}]0;pwned\u{07}-1", platforms: [try Platform(parsing: "linux/amd64")],
            labels: ["gpu": "yes\u{1b}[2J", "zone\u{9b}1m": "a"], builders: ["buildah\u{1b}[8m", "docker\r"],
            version: "1.0\u{1b}[?1049h", state: .active, currentJob: nil, joinedAt: now, lastSeenAt: now, pool: "default")
        let clean = AgentList.render([agent], now: now)
        #expect(!clean.unicodeScalars.contains { $0 == "\u{1b}" || $0 == "\u{07}" || $0 == "\r" || $0 == "\u{9b}" }, "\(clean)")
        #expect(clean.contains("host-1") && clean.contains("buildah,docker") && clean.contains("gpu=yes,zone=a"), "\(clean)")
        let raw = AgentList.render([agent], now: now, raw: true)
        #expect(raw.contains("host\u{1b}]0;pwned\u{07}-1") && raw.contains("yes\u{1b}[2J"))
    }
}
