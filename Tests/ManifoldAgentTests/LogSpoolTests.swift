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
