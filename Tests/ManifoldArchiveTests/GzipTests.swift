import Foundation
import ManifoldArchive
import ManifoldTestSupport
import Testing

@Suite struct GzipTests {
    @Test func roundTripOfALargeFileIsByteExactAndDeterministic() throws {
        let scratch = try ScratchDirectory(prefix: "gzip")
        defer { scratch.remove() }
        var generator = SystemRandomNumberGenerator()
        var data = Data()
        for index in 0..<300_000 {
            data.append(UInt8(truncatingIfNeeded: index % 251 == 0 ? generator.next() : UInt64(index / 7)))
        }
        try data.write(to: scratch.file("in"))
        try Gzip.compress(file: scratch.file("in"), to: scratch.file("a.gz"))
        try Gzip.compress(file: scratch.file("in"), to: scratch.file("b.gz"))
        #expect(try Data(contentsOf: scratch.file("a.gz")) == Data(contentsOf: scratch.file("b.gz")))
        try Gzip.decompress(file: scratch.file("a.gz"), to: scratch.file("out"))
        #expect(try Data(contentsOf: scratch.file("out")) == data)
        // GNU gzip reads ours, and we read GNU gzip's.
        let gunzipped = try runCommand("gzip", ["-dc", scratch.file("a.gz").path])
        #expect(gunzipped.status == 0)
        try runChecked("sh", ["-c", "gzip -c '\(scratch.file("in").path)' > '\(scratch.file("gnu.gz").path)'"])
        try Gzip.decompress(file: scratch.file("gnu.gz"), to: scratch.file("out2"))
        #expect(try Data(contentsOf: scratch.file("out2")) == data)
    }

    @Test func concatenatedMembersAreRead() throws {
        let scratch = try ScratchDirectory(prefix: "gzip")
        defer { scratch.remove() }
        try Data("hello ".utf8).write(to: scratch.file("a"))
        try Data("world".utf8).write(to: scratch.file("b"))
        try Gzip.compress(file: scratch.file("a"), to: scratch.file("a.gz"))
        try Gzip.compress(file: scratch.file("b"), to: scratch.file("b.gz"))
        var both = try Data(contentsOf: scratch.file("a.gz"))
        both.append(try Data(contentsOf: scratch.file("b.gz")))
        try both.write(to: scratch.file("ab.gz"))
        try Gzip.decompress(file: scratch.file("ab.gz"), to: scratch.file("out"))
        #expect(try String(contentsOf: scratch.file("out"), encoding: .utf8) == "hello world")
    }

    @Test func truncatedCorruptAndOversizedStreamsFail() throws {
        let scratch = try ScratchDirectory(prefix: "gzip")
        defer { scratch.remove() }
        try Data(repeating: 7, count: 100_000).write(to: scratch.file("in"))
        try Gzip.compress(file: scratch.file("in"), to: scratch.file("in.gz"))
        let full = try Data(contentsOf: scratch.file("in.gz"))
        try full.prefix(full.count / 2).write(to: scratch.file("cut.gz"))
        #expect(throws: ArchiveError.self) { try Gzip.decompress(file: scratch.file("cut.gz"), to: scratch.file("o")) }
        try Data("not gzip at all".utf8).write(to: scratch.file("bad.gz"))
        #expect(throws: ArchiveError.self) { try Gzip.decompress(file: scratch.file("bad.gz"), to: scratch.file("o")) }
        #expect(throws: ArchiveError.limitExceeded("decompressed data exceeds 1000 bytes")) {
            try Gzip.decompress(file: scratch.file("in.gz"), to: scratch.file("o"), maxOutputBytes: 1000)
        }
    }
}
