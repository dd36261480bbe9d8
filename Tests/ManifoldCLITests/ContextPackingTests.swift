import Foundation
import ManifoldArchive
import ManifoldCore
import ManifoldTestSupport
import Testing

@testable import ManifoldCLI

@Suite struct DockerIgnoreTests {
    @Test(arguments: [
        // pattern, path, excluded
        ("node_modules", "node_modules", true),
        ("node_modules", "node_modules/x/y.js", true),
        ("node_modules", "src/node_modules", false),
        ("*.log", "a.log", true),
        ("*.log", "dir/a.log", false),
        ("**/*.log", "dir/sub/a.log", true),
        ("**/*.log", "a.log", true),
        ("dir/**", "dir/a/b", true),
        ("dir/**", "dira", false),
        ("a/**/b", "a/b", true),
        ("a/**/b", "a/x/y/b", true),
        ("/build", "build/out", true),
        ("./build/", "build", true),
        ("?.txt", "a.txt", true),
        ("?.txt", "ab.txt", false),
        ("[a-c].txt", "b.txt", true),
        ("[!a-c].txt", "b.txt", false),
        ("[!a-c].txt", "d.txt", true),
        ("\\*.txt", "*.txt", true),
        ("\\*.txt", "a.txt", false),
        ("docs/*.md", "docs/a.md", true),
        ("docs/*.md", "docs/sub/a.md", false),
        ("a.b", "axb", false),
    ])
    func matchesLikeDocker(_ pattern: String, _ path: String, _ excluded: Bool) {
        #expect(DockerIgnore(text: pattern).excludes(path) == excluded, "\(pattern) vs \(path)")
    }

    @Test func lastMatchWinsAndExceptionsReinclude() {
        let ignore = DockerIgnore(
            text: """
                # comment
                  *.md  
                !README*.md
                README-secret.md
                logs
                !logs/keep.txt
                """)
        #expect(ignore.excludes("CHANGES.md"))
        #expect(!ignore.excludes("README.md"))
        #expect(ignore.excludes("README-secret.md"))
        #expect(ignore.excludes("logs/a.txt"))
        #expect(!ignore.excludes("logs/keep.txt"))
        #expect(!ignore.excludes("src/main.c"))
        #expect(ignore.hasExceptions)
    }
}

@Suite struct ContextPackerTests {
    func makeTree(_ scratch: ScratchDirectory, _ files: [String: String]) throws -> URL {
        let root = scratch.file("context")
        for (path, content) in files {
            let url = root.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(content.utf8).write(to: url)
        }
        return root
    }

    @Test func packsWhatDockerWouldSendReproducibly() throws {
        let scratch = try ScratchDirectory(prefix: "cli-pack")
        defer { scratch.remove() }
        let root = try makeTree(
            scratch,
            [
                ".dockerignore": "node_modules\n**/*.log\nDockerfile*\n.git\n!keep/**\n",
                "Dockerfile": "FROM scratch\n", "Dockerfile.windows": "FROM windows\n", "src/main.c": "int main;\n",
                "src/debug.log": "x", "node_modules/lib/index.js": "y", ".git/HEAD": "ref", "keep/a.log": "kept",
                "b/z.txt": "z", "b/a.txt": "a",
            ])
        try FileManager.default.createSymbolicLink(atPath: root.appendingPathComponent("link").path, withDestinationPath: "src")
        let packer = ContextPacker(directory: root, alwaysIncluded: [".dockerignore", "Dockerfile"])
        let first = try packer.pack(to: scratch.file("one.tar.gz"))
        // GNU tar reads the archive and sees exactly the entries Docker would send, in sorted order.
        let listing = try runChecked("tar", ["-tzvf", first.file.path])
            .split(separator: "\n").map { line in line.split(separator: " ", omittingEmptySubsequences: true) }
        let names = listing.map { fields in
            fields[0].hasPrefix("l") ? String(fields[fields.count - 3]) : String(fields.last!)
        }
        #expect(
            names == [
                ".dockerignore", "Dockerfile", "b/", "b/a.txt", "b/z.txt", "keep/", "keep/a.log", "link", "src/", "src/main.c",
            ])
        #expect(first.files == 7)
        #expect(first.excluded == 4)
        #expect(first.digest == Digest.compute(of: try Data(contentsOf: first.file)))

        // The same tree packed again, even after touching files, gives the same digest.
        try FileManager.default.setAttributes(
            [.modificationDate: Date(timeIntervalSince1970: 1_000_000)], ofItemAtPath: root.appendingPathComponent("b/a.txt").path
        )
        let second = try packer.pack(to: scratch.file("two.tar.gz"))
        #expect(second.digest == first.digest)

        // The agent's unpacker accepts it and restores the files.
        let unpacked = scratch.file("unpacked")
        try FileManager.default.createDirectory(at: unpacked, withIntermediateDirectories: true)
        try runChecked("tar", ["-xzf", first.file.path, "-C", unpacked.path])
        #expect(try String(contentsOf: unpacked.appendingPathComponent("keep/a.log"), encoding: .utf8) == "kept")
        #expect(!FileManager.default.fileExists(atPath: unpacked.appendingPathComponent("node_modules").path))
    }

    @Test func aMissingDirectoryIsAClearError() throws {
        let packer = ContextPacker(directory: URL(fileURLWithPath: "/nonexistent/context"))
        #expect(throws: CLIError.self) { try packer.pack(to: URL(fileURLWithPath: "/tmp/never.tar.gz")) }
    }
}
