import Foundation
import ManifoldArchive
import ManifoldTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The unpacker's Windows name rules (checked here on Linux with `checksWindowsNames: true`), its arithmetic on
/// sizes from input and limits, and `validate(directory:)` for trees that arrive another way (git checkouts).
@Suite struct ContextRulesTests {
    private func unpack(
        _ entries: [(String, Character, String)], windows: Bool, limits: ContextUnpacker.Limits = .init()
    ) throws -> ArchiveError? {
        let scratch = try ScratchDirectory(prefix: "rules")
        defer { scratch.remove() }
        try ArchiveFixture.rawArchive(entries, at: scratch.file("ctx.tar.gz"))
        let out = scratch.file("ctx")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        do {
            try ContextUnpacker(limits: limits, checksWindowsNames: windows).unpack(
                archive: scratch.file("ctx.tar.gz"), into: out)
            return nil
        } catch let error as ArchiveError {
            return error
        }
    }

    @Test(arguments: [
        ("CON", "reserved Windows device name CON"),
        ("src/nul.txt", "reserved Windows device name NUL"),
        ("Com1.tar.gz", "reserved Windows device name COM1"),
        ("lpt9", "reserved Windows device name LPT9"),
        ("aux .c", "reserved Windows device name AUX"),
        ("prn.", "ends in a dot or a space"),
        ("COM\u{B9}", "reserved Windows device name COM\u{B9}"),
        ("conin$", "reserved Windows device name CONIN$"),
        ("NUL/inside.txt", "reserved Windows device name NUL"),
        ("notes.", "ends in a dot or a space"),
        ("dir /file", "ends in a dot or a space"),
        ("Dockerfile:hidden", "contains :"),
        ("what?.txt", "contains ?"),
        ("tab\there", "control character U+0009"),
    ])
    func windowsRefusesReservedAndAmbiguousNames(name: String, why: String) throws {
        let error = try unpack([(name, "0", "x")], windows: true)
        let description = try #require(error, "\(name) was accepted").description
        #expect(description.contains(why), "\(description)")
        #expect(description.contains(name), "the message names the entry: \(description)")
        // On Linux hosts these are ordinary names.
        #expect(try unpack([(name, "0", "x")], windows: false) == nil)
    }

    @Test(arguments: ["CONSOLE", "nul-device.txt", "COM10", "LPT0", "icon.png", ".con", "com", "a.b.c", "con-fig/x"])
    func windowsAcceptsNamesThatOnlyLookReserved(name: String) throws {
        #expect(try unpack([(name, "0", "x")], windows: true) == nil)
    }

    @Test func windowsRefusesSymlinksAndHardLinksToReservedNames() throws {
        let link = try #require(try unpack([("link", "2", "NUL")], windows: true))
        #expect(link.description.contains("\"link\"") && link.description.contains("NUL"), "\(link)")
        let hard = try #require(try unpack([("ok.txt", "0", "x"), ("hard", "1", "aux.txt")], windows: true))
        #expect(hard.description.contains("AUX"), "\(hard)")
    }

    @Test func limitsNearTheIntegerBoundsNeverTrap() throws {
        // The decompression bound is computed from the limits: Int64.max bytes and Int.max entries must saturate.
        let huge = ContextUnpacker.Limits(maxTotalBytes: .max, maxEntries: .max)
        #expect(try unpack([("a.txt", "0", "hello")], windows: false, limits: huge) == nil)
    }

    @Test func aBase256SizeNearInt64MaxIsRefusedNotATrap() throws {
        var header = ArchiveFixture.rawHeader(name: "huge.bin", typeFlag: "0")
        // GNU base-256: high bit set, then the value big-endian in the remaining 11 bytes of the size field.
        header.replaceSubrange(124..<136, with: [0x80, 0, 0, 0, 0x3f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
        var sum = 0
        for (index, byte) in header.enumerated() { sum += (148..<156).contains(index) ? 32 : Int(byte) }
        header.replaceSubrange(148..<156, with: Array(String(format: "%06o", sum).utf8) + [0, 0x20])
        let scratch = try ScratchDirectory(prefix: "base256")
        defer { scratch.remove() }
        try ArchiveFixture.rawBlocks([header], at: scratch.file("ctx.tar.gz"))
        try FileManager.default.createDirectory(at: scratch.file("ctx"), withIntermediateDirectories: true)
        let error = #expect(throws: ArchiveError.self) {
            try ContextUnpacker().unpack(archive: scratch.file("ctx.tar.gz"), into: scratch.file("ctx"))
        }
        #expect(error?.description.contains("huge.bin") == true, "\(String(describing: error))")
    }

    @Test func aGzipReadOfAnyRequestedSizeNeverTraps() throws {
        let scratch = try ScratchDirectory(prefix: "gzip-read")
        defer { scratch.remove() }
        let plain = scratch.file("plain")
        try Data(repeating: 0x61, count: 100_000).write(to: plain)
        try Gzip.compress(file: plain, to: scratch.file("plain.gz"))
        let reader = try GzipReader(from: try FileSource(url: scratch.file("plain.gz")))
        var total = 0
        while case let chunk = try reader.read(upToCount: Int.max), !chunk.isEmpty { total += chunk.count }
        #expect(total == 100_000)
    }

    // MARK: - validate(directory:)

    private func tree(_ build: (URL) throws -> Void) throws -> (URL, ScratchDirectory) {
        let scratch = try ScratchDirectory(prefix: "checkout")
        let root = scratch.file("checkout")
        try FileManager.default.createDirectory(at: root.appendingPathComponent("src"), withIntermediateDirectories: true)
        try Data("FROM scratch\n".utf8).write(to: root.appendingPathComponent("Dockerfile.real"))
        try build(root)
        return (root, scratch)
    }

    @Test func aCheckoutWithInsideLinksIsAccepted() throws {
        let (root, scratch) = try tree { root in
            try FileManager.default.createSymbolicLink(
                atPath: root.appendingPathComponent("Dockerfile").path, withDestinationPath: "Dockerfile.real")
            try FileManager.default.createSymbolicLink(
                atPath: root.appendingPathComponent("src/up").path, withDestinationPath: "../Dockerfile.real")
        }
        defer { scratch.remove() }
        let summary = try ContextUnpacker().validate(directory: root)
        #expect(summary.entries == 4)
        #expect(summary.totalBytes == 13)
    }

    @Test(arguments: [
        ("Dockerfile", "/var/lib/manifold-agent/credential.json", "absolute path"),
        ("src/escape", "../../outside", "points outside"),
        ("src/loop", "../src/../..", "points outside"),
    ])
    func aCheckoutWithAnEscapingLinkIsRefused(name: String, target: String, why: String) throws {
        let (root, scratch) = try tree { root in
            try FileManager.default.createSymbolicLink(
                atPath: root.appendingPathComponent(name).path, withDestinationPath: target)
        }
        defer { scratch.remove() }
        let error = #expect(throws: ArchiveError.self) { try ContextUnpacker().validate(directory: root) }
        #expect(
            error?.description.contains(name) == true && error?.description.contains(why) == true, "\(String(describing: error))")
    }

    @Test func aCheckoutWithALinkThroughAnotherLinkOutsideIsRefused() throws {
        let (root, scratch) = try tree { root in
            try FileManager.default.createSymbolicLink(
                atPath: root.appendingPathComponent("here").path, withDestinationPath: ".")
            try FileManager.default.createSymbolicLink(
                atPath: root.appendingPathComponent("src/out").path, withDestinationPath: "../here/..")
        }
        defer { scratch.remove() }
        #expect(throws: ArchiveError.self) { try ContextUnpacker().validate(directory: root) }
    }

    @Test func aCheckoutWithAFIFOOrOverTheLimitsIsRefused() throws {
        let (root, scratch) = try tree { root in
            #expect(mkfifo(root.appendingPathComponent("src/pipe").path, 0o644) == 0)
        }
        defer { scratch.remove() }
        let fifo = #expect(throws: ArchiveError.self) { try ContextUnpacker().validate(directory: root) }
        #expect(fifo?.description.contains("src/pipe") == true, "\(String(describing: fifo))")
        try FileManager.default.removeItem(at: root.appendingPathComponent("src/pipe"))

        let bytes = #expect(throws: ArchiveError.self) {
            try ContextUnpacker(limits: .init(maxTotalBytes: 5)).validate(directory: root)
        }
        #expect(bytes?.description.contains("exceeds 5 bytes") == true, "\(String(describing: bytes))")
        let entries = #expect(throws: ArchiveError.self) {
            try ContextUnpacker(limits: .init(maxEntries: 1)).validate(directory: root)
        }
        #expect(entries?.description.contains("more than 1 entries") == true, "\(String(describing: entries))")
    }

    @Test func aCheckoutWithAReservedWindowsNameIsRefusedWhenChecked() throws {
        let (root, scratch) = try tree { root in
            try Data("x".utf8).write(to: root.appendingPathComponent("src/con.h"))
        }
        defer { scratch.remove() }
        #expect(try ContextUnpacker(checksWindowsNames: false).validate(directory: root).entries == 3)
        let error = #expect(throws: ArchiveError.self) {
            try ContextUnpacker(checksWindowsNames: true).validate(directory: root)
        }
        #expect(error?.description.contains("src/con.h") == true, "\(String(describing: error))")
    }
}
