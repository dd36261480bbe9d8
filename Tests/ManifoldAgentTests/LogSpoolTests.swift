import Foundation
import ManifoldTestSupport
import Testing

@testable import ManifoldAgent

@Suite struct LogSpoolTests {
    @Test func secretsAreRedactedEvenWhenSplitAcrossChunks() throws {
        let scratch = try ScratchDirectory(prefix: "spool")
        defer { scratch.remove() }
        let spool = try LogSpool(file: scratch.file("log"), secrets: ["hunter2", "hunter2-long", ""])
        spool.append(Data("password is hun".utf8))
        spool.append(Data("ter2\nand hunter2-long too\nunfinished hunt".utf8))
        spool.append(Data("er2".utf8))
        spool.close()
        let text = try String(contentsOf: scratch.file("log"), encoding: .utf8)
        #expect(text == "password is ***\nand *** too\nunfinished ***")
        #expect(spool.size == Int64(text.utf8.count))
    }

    @Test func aHugeLineIsWrittenInPiecesNotHeld() throws {
        let scratch = try ScratchDirectory(prefix: "spool")
        defer { scratch.remove() }
        let spool = try LogSpool(file: scratch.file("log"), secrets: [])
        spool.append(Data(repeating: UInt8(ascii: "x"), count: LogSpool.maxPartialLine + 10))
        #expect(spool.size == Int64(LogSpool.maxPartialLine + 10))
    }
}

@Suite struct LogSpoolCapTests {
    @Test func outputPastTheCapIsDroppedAfterOneMarkerLine() throws {
        let scratch = try ScratchDirectory(prefix: "spool-cap")
        defer { scratch.remove() }
        let spool = try LogSpool(file: scratch.file("log"), secrets: [], maxBytes: 100)
        let line = String(repeating: "a", count: 29) + "\n"
        for _ in 0..<3 { spool.append(Data(line.utf8)) }
        #expect(!spool.isCapped)
        #expect(spool.size == 90)
        // The fourth line would pass the cap: the marker comes instead, and nothing after it is kept.
        spool.append(Data(line.utf8))
        #expect(spool.isCapped)
        spool.append(Data("more output\nand more\n".utf8))
        spool.append(Data(repeating: UInt8(ascii: "z"), count: LogSpool.maxPartialLine + 1))
        // The agent's own notes still go in.
        spool.note("pushed r/i:t as sha256:abc")
        spool.close()
        let text = try String(contentsOf: scratch.file("log"), encoding: .utf8)
        let marker = LogSpool.capMarker(100)
        #expect(text == String(repeating: line, count: 3) + marker + "[manifold-agent] pushed r/i:t as sha256:abc\n")
        #expect(text.components(separatedBy: "spool limit").count == 2)
        #expect(!text.contains("more output") && !text.contains("z"))
        #expect(spool.size == Int64(text.utf8.count))
    }

    @Test func aCutLineIsEndedBeforeTheMarker() throws {
        let scratch = try ScratchDirectory(prefix: "spool-cap")
        defer { scratch.remove() }
        let spool = try LogSpool(file: scratch.file("log"), secrets: [], maxBytes: 10)
        spool.append(Data("12345".utf8))
        spool.flushPartialLine()
        spool.append(Data("678901234\n".utf8))
        spool.close()
        let text = try String(contentsOf: scratch.file("log"), encoding: .utf8)
        #expect(text == "12345\n" + LogSpool.capMarker(10))
    }

    @Test func theDefaultCapIsTheCoordinatorsDefaultLogLimitAndASetting() throws {
        #expect(LogSpool.defaultMaxBytes == 64 << 20)
        #expect(AgentSettings(stateDirectory: "/x").maxSpoolBytes == 64 << 20)
        var settings = AgentSettings(stateDirectory: "/x")
        try settings.load(environment: ["MANIFOLD_AGENT_MAX_SPOOL_BYTES": "4096"])
        #expect(settings.maxSpoolBytes == 4096)
    }
}
