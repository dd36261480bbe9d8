import Foundation
import ManifoldArchive
import ManifoldTestSupport
import Testing

@Suite struct ContextUnpackerTests {
    private func refused(
        _ entries: [(String, Character, String)], limits: ContextUnpacker.Limits = .init()
    ) throws -> (ArchiveError?, URL, ScratchDirectory) {
        let scratch = try ScratchDirectory(prefix: "unpack")
        try ArchiveFixture.rawArchive(entries, at: scratch.file("ctx.tar.gz"))
        let out = scratch.file("ctx")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        do {
            try ContextUnpacker(limits: limits).unpack(archive: scratch.file("ctx.tar.gz"), into: out)
            return (nil, out, scratch)
        } catch let error as ArchiveError {
            return (error, out, scratch)
        }
    }

    @Test(arguments: [
        ("/etc/evil", "absolute paths"),
        ("../evil", "\"..\" component"),
        ("a/../../evil", "\"..\" component"),
        ("a\\..\\..\\evil", "\"..\" component"),
        ("C:/evil", "absolute paths"),
    ])
    func refusesEscapingNames(name: String, why: String) throws {
        let (error, _, scratch) = try refused([(name, "0", "x")])
        defer { scratch.remove() }
        let description = try #require(error).description
        #expect(description.contains(name) && description.contains(why), "\(description)")
        #expect(
            !FileManager.default.fileExists(atPath: scratch.url.deletingLastPathComponent().appendingPathComponent("evil").path))
    }

    @Test(arguments: [
        ("abs", "/etc", "absolute path"),
        ("up", "../../outside", "points outside"),
        ("sub/up", "../..", "points outside"),
    ])
    func refusesEscapingSymlinks(name: String, target: String, why: String) throws {
        let (error, _, scratch) = try refused([("sub/", "5", ""), (name, "2", target)])
        defer { scratch.remove() }
        let description = try #require(error).description
        #expect(description.contains(name) && description.contains(why), "\(description)")
    }

    /// Unpacks raw blocks; returns the archive error, if any.
    private func unpackBlocks(_ blocks: [Data]) throws -> ArchiveError? {
        let scratch = try ScratchDirectory(prefix: "unpack-sizes")
        defer { scratch.remove() }
        try ArchiveFixture.rawBlocks(blocks, at: scratch.file("ctx.tar.gz"))
        let out = scratch.file("ctx")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        do {
            try ContextUnpacker().unpack(archive: scratch.file("ctx.tar.gz"), into: out)
            return nil
        } catch let error as ArchiveError {
            return error
        }
    }

    @Test func aPaxSizeThatWouldOverflowTheTotalIsRefusedNotATrap() throws {
        var first = ArchiveFixture.rawHeader(name: "small.txt", typeFlag: "0", size: 5)
        first.append(Data("hello".utf8))
        first.append(Data(count: 507))
        let error = try unpackBlocks([
            first, ArchiveFixture.paxHeader([("size", "\(Int64.max)")]),
            ArchiveFixture.rawHeader(name: "huge.bin", typeFlag: "0"),
        ])
        let description = try #require(error, "an Int64.max pax size was accepted").description
        #expect(description.contains("huge.bin") && description.contains("exceeds"), "\(description)")
    }

    @Test func aPaxRecordLengthNearInt64MaxIsMalformedNotATrap() throws {
        let error = try unpackBlocks([
            ArchiveFixture.paxHeader([("path", "x")], lengthOverride: "\(Int.max)"),
            ArchiveFixture.rawHeader(name: "file.txt", typeFlag: "0"),
        ])
        #expect(try #require(error).description.contains("malformed pax"), "\(String(describing: error))")
    }

    @Test func refusesEscapeThroughAnEarlierSymlinkedDirectory() throws {
        // dir -> . is harmless alone, but dir/.. is then the parent of the context.
        let (error, _, scratch) = try refused([("dir", "2", "."), ("escape", "2", "dir/..")])
        defer { scratch.remove() }
        #expect(try #require(error).description.contains("\"escape\""))
    }

    @Test func refusesEscapeSetUpByALaterSymlink() throws {
        let (error, _, scratch) = try refused([("escape", "2", "dir/../.."), ("dir", "2", "a/b")])
        defer { scratch.remove() }
        #expect(error != nil)
        let (error2, _, scratch2) = try refused([("escape", "2", "dir/.."), ("dir", "2", ".")])
        defer { scratch2.remove() }
        #expect(try #require(error2).description.contains("\"escape\""))
    }

    @Test func refusesWritingThroughASymlink() throws {
        let outside = try ScratchDirectory(prefix: "outside")
        defer { outside.remove() }
        let (error, _, scratch) = try refused([("link", "2", "."), ("link/file", "0", "x")])
        defer { scratch.remove() }
        #expect(try #require(error).description.contains("is a symlink"))
    }

    @Test func refusesHardLinksOutsideAndDevices() throws {
        let (hard, _, s1) = try refused([("h", "1", "../../etc/passwd")])
        defer { s1.remove() }
        #expect(try #require(hard).description.contains("\"..\""))
        let (missing, _, s2) = try refused([("h", "1", "nothing-here")])
        defer { s2.remove() }
        #expect(try #require(missing).description.contains("not a regular file"))
        let (device, _, s3) = try refused([("null", "3", "")])
        defer { s3.remove() }
        #expect(try #require(device).description.contains("device files"))
        let (fifo, _, s4) = try refused([("pipe", "6", "")])
        defer { s4.remove() }
        #expect(try #require(fifo).description.contains("FIFO"))
    }

    @Test func refusesOversizeAndTooManyEntries() throws {
        let (size, _, s1) = try refused(
            [("a", "0", String(repeating: "x", count: 600)), ("b", "0", String(repeating: "y", count: 600))],
            limits: .init(maxTotalBytes: 1000, maxEntries: 10))
        defer { s1.remove() }
        #expect(try #require(size).description.contains("\"b\""))
        let (count, _, s2) = try refused(
            (0..<5).map { ("f\($0)", "0", "x") }, limits: .init(maxTotalBytes: 1000, maxEntries: 3))
        defer { s2.remove() }
        #expect(try #require(count).description.contains("more than 3 entries"))
    }

    @Test func acceptsInsideLinksAndDotSlashNames() throws {
        let (error, out, scratch) = try refused([
            ("./", "5", ""), ("./a/b/file", "0", "content"), ("./a/link", "2", "b/file"), ("./up", "2", "a/b/../b"),
            ("./hard", "1", "./a/b/file"),
        ])
        defer { scratch.remove() }
        #expect(error == nil, "\(String(describing: error))")
        #expect(try String(contentsOf: out.appendingPathComponent("a/link"), encoding: .utf8) == "content")
        #expect(try String(contentsOf: out.appendingPathComponent("hard"), encoding: .utf8) == "content")
    }
}
