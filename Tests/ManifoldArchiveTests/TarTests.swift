import Foundation
import ManifoldArchive
import ManifoldTestSupport
import Testing

@Suite struct TarTests {
    /// A tree with everything the writer supports, packed with our writer in a fixed order.
    private func packSample(from source: URL, to archive: URL) throws {
        let longName = String(repeating: "long-directory-name/", count: 8) + "file-with-a-long-name.txt"
        let writer = try TarWriter(to: archive, compression: .gzip)
        try writer.appendDirectory(at: "src")
        try writer.append(file: source.appendingPathComponent("src/main.c"), at: "src/main.c")
        try writer.append(file: source.appendingPathComponent("run.sh"), at: "run.sh")
        try writer.append(data: Data("deep".utf8), at: longName)
        try writer.appendSymlink(at: "latest", target: "src")
        try writer.appendSymlink(at: "far", target: String(repeating: "x/", count: 60) + "target")
        try writer.appendHardLink(at: "main-copy.c", target: "src/main.c")
        try writer.append(data: Data(), at: "empty")
        try writer.finish()
    }

    private func makeSource(_ scratch: ScratchDirectory) throws -> URL {
        let source = scratch.file("source")
        try ArchiveFixture.write(source.appendingPathComponent("src/main.c"), "int main(void) { return 0; }\n")
        try ArchiveFixture.write(source.appendingPathComponent("run.sh"), "#!/bin/sh\necho hi\n", mode: 0o755)
        return source
    }

    @Test func gnuTarListsAndExtractsOurArchive() throws {
        let scratch = try ScratchDirectory(prefix: "tar")
        defer { scratch.remove() }
        let source = try makeSource(scratch)
        try packSample(from: source, to: scratch.file("ours.tar.gz"))
        let listing = try runChecked("tar", ["tzvf", scratch.file("ours.tar.gz").path])
        #expect(listing.contains("src/main.c"))
        #expect(listing.contains("latest -> src"))
        #expect(listing.contains("main-copy.c link to src/main.c"))
        #expect(listing.contains("file-with-a-long-name.txt"))
        #expect(listing.contains("-rwxr-xr-x 0/0"))
        let out = scratch.file("gnu-out")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try runChecked("tar", ["xzf", scratch.file("ours.tar.gz").path, "-C", out.path])
        #expect(try String(contentsOf: out.appendingPathComponent("src/main.c"), encoding: .utf8).hasPrefix("int main"))
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: out.appendingPathComponent("latest").path) == "src")
        let mode = try FileManager.default.attributesOfItem(atPath: out.appendingPathComponent("run.sh").path)[.posixPermissions]
        #expect((mode as? NSNumber)?.intValue == 0o755)
    }

    @Test func sameTreeGivesTheSameBytes() throws {
        let scratch = try ScratchDirectory(prefix: "tar")
        defer { scratch.remove() }
        let source = try makeSource(scratch)
        try packSample(from: source, to: scratch.file("a.tar.gz"))
        try packSample(from: source, to: scratch.file("b.tar.gz"))
        #expect(try Data(contentsOf: scratch.file("a.tar.gz")) == Data(contentsOf: scratch.file("b.tar.gz")))
    }

    @Test func roundTripThroughOurReaderAndUnpacker() throws {
        let scratch = try ScratchDirectory(prefix: "tar")
        defer { scratch.remove() }
        let source = try makeSource(scratch)
        try packSample(from: source, to: scratch.file("ours.tar.gz"))
        let reader = try TarReader(url: scratch.file("ours.tar.gz"), gzip: true)
        var paths: [String] = []
        while let entry = try reader.next() { paths.append(entry.path) }
        #expect(paths.count == 8)
        #expect(paths.contains(String(repeating: "long-directory-name/", count: 8) + "file-with-a-long-name.txt"))
        let out = scratch.file("out")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        let summary = try ContextUnpacker().unpack(archive: scratch.file("ours.tar.gz"), into: out)
        #expect(summary.entries == 8)
        #expect(try String(contentsOf: out.appendingPathComponent("main-copy.c"), encoding: .utf8).hasPrefix("int main"))
        #expect(
            try FileManager.default.destinationOfSymbolicLink(atPath: out.appendingPathComponent("far").path).hasSuffix("/target")
        )
    }

    @Test func unpacksWhatGnuTarPacked() throws {
        let scratch = try ScratchDirectory(prefix: "tar")
        defer { scratch.remove() }
        let source = try makeSource(scratch)
        let deep = source.appendingPathComponent(String(repeating: "a-rather-long-directory/", count: 6) + "deep.txt")
        try ArchiveFixture.write(deep, "deep content")
        try ArchiveFixture.write(source.appendingPathComponent("big.bin"), String(repeating: "0123456789", count: 50_000))
        try FileManager.default.createSymbolicLink(
            atPath: source.appendingPathComponent("link").path, withDestinationPath: "src/main.c")
        try FileManager.default.linkItem(
            at: source.appendingPathComponent("run.sh"), to: source.appendingPathComponent("run-again.sh"))
        for format in ["gnu", "posix", "ustar"] where format != "ustar" {
            let archive = scratch.file("gnu-\(format).tar.gz")
            try runChecked("tar", ["--format=\(format)", "-czf", archive.path, "-C", source.path, "."])
            let out = scratch.file("out-\(format)")
            try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
            try ContextUnpacker().unpack(archive: archive, into: out)
            let diff = try runCommand("diff", ["-r", "--no-dereference", source.path, out.path])
            #expect(diff.status == 0, "\(format): \(diff.stdout)\(diff.stderr)")
            let mode = try FileManager.default.attributesOfItem(atPath: out.appendingPathComponent("run.sh").path)[
                .posixPermissions]
            #expect((mode as? NSNumber)?.intValue == 0o755)
        }
    }

    @Test func writerRefusesUnsafePaths() throws {
        let scratch = try ScratchDirectory(prefix: "tar")
        defer { scratch.remove() }
        let writer = try TarWriter(to: scratch.file("x.tar"))
        #expect(throws: ArchiveError.self) { try writer.append(data: Data(), at: "/etc/passwd") }
        #expect(throws: ArchiveError.self) { try writer.append(data: Data(), at: "a/../../b") }
        try writer.finish()
    }
}
