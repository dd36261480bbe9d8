import Foundation
import Testing

@testable import ManifoldCoordinator

@Suite("State directory")
struct StateDirectoryTests {
    func permissions(_ url: URL) throws -> Int {
        let attributes = try FileManager.default.attributesOfItem(atPath: url.path)
        return try #require(attributes[.posixPermissions] as? Int) & 0o777
    }

    /// Every file under `root` with its bytes and permissions, to compare before and after.
    func snapshot(_ root: URL) throws -> [String: String] {
        var result: [String: String] = [:]
        let enumerator = try #require(FileManager.default.enumerator(atPath: root.path))
        for case let path as String in enumerator {
            let url = root.appendingPathComponent(path)
            let mode = try permissions(url)
            var isDirectory: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory)
            let content = isDirectory.boolValue ? "dir" : try Data(contentsOf: url).base64EncodedString()
            result[path] = "\(String(mode, radix: 8)) \(content)"
        }
        return result
    }

    @Test func createMakesOwnerOnlyDirectoriesAndSecrets() throws {
        let scratch = try BootstrapScratchDirectory()
        defer { scratch.remove() }
        let state = StateDirectory(scratch.url.appendingPathComponent("state"))
        try state.create()
        for directory in [state.root, state.pki, state.contexts, state.dockerConfigDirectory] {
            #expect(try permissions(directory) == 0o700, "\(directory.path)")
        }
        try state.writeSecret(Data("key".utf8), to: state.caKey)
        #expect(try permissions(state.caKey) == 0o600)
        #expect(try Data(contentsOf: state.caKey) == Data("key".utf8))
        // Overwriting is atomic and keeps the mode; no temporary file is left behind.
        try state.writeSecret(Data("new key".utf8), to: state.caKey)
        #expect(try Data(contentsOf: state.caKey) == Data("new key".utf8))
        #expect(try permissions(state.caKey) == 0o600)
        #expect(try FileManager.default.contentsOfDirectory(atPath: state.pki.path) == ["ca.key"])
    }

    @Test func pathsAreTheDocumentedLayout() {
        let state = StateDirectory(URL(fileURLWithPath: "/var/lib/manifold"))
        #expect(state.configFile.path == "/var/lib/manifold/manifold.yaml")
        #expect(state.database.path == "/var/lib/manifold/manifold.db")
        #expect(state.caCertificate.path == "/var/lib/manifold/pki/ca.crt")
        #expect(state.caKey.path == "/var/lib/manifold/pki/ca.key")
        #expect(state.serverCertificate.path == "/var/lib/manifold/pki/server.crt")
        #expect(state.serverKey.path == "/var/lib/manifold/pki/server.key")
        #expect(state.contexts.path == "/var/lib/manifold/contexts")
        #expect(state.dockerConfigDirectory.path == "/var/lib/manifold/registry")
    }

    @Test func anExistingEmptyDirectoryIsAcceptedAndTightened() throws {
        let scratch = try BootstrapScratchDirectory()
        defer { scratch.remove() }
        let root = scratch.url.appendingPathComponent("state")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: false)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: root.path)
        try StateDirectory(root).create()
        #expect(try permissions(root) == 0o700)
    }

    @Test func refusesAnInitialisedDirectoryAndChangesNothing() throws {
        let scratch = try BootstrapScratchDirectory()
        defer { scratch.remove() }
        let state = StateDirectory(scratch.url.appendingPathComponent("state"))
        try state.create()
        try state.writeSecret(Data("ca key".utf8), to: state.caKey)
        try Data("listen: 0.0.0.0:7443\n".utf8).write(to: state.configFile)
        // An unusual but deliberate mode that create() would otherwise change.
        try FileManager.default.setAttributes([.posixPermissions: 0o750], ofItemAtPath: state.root.path)
        try FileManager.default.removeItem(at: state.contexts)
        let before = try snapshot(state.root)
        let rootModeBefore = try permissions(state.root)

        #expect {
            try state.create()
        } throws: { error in
            guard case StateDirectoryError.alreadyInitialised(let path, _) = error else { return false }
            return path == state.root.path && "\(error)".contains(state.root.path) && "\(error)".contains("nothing was changed")
        }
        #expect(try snapshot(state.root) == before)
        #expect(try permissions(state.root) == rootModeBefore)
        #expect(!FileManager.default.fileExists(atPath: state.contexts.path))
    }

    @Test func refusesAFile() throws {
        let scratch = try BootstrapScratchDirectory()
        defer { scratch.remove() }
        let file = scratch.url.appendingPathComponent("state")
        try Data("x".utf8).write(to: file)
        #expect(throws: StateDirectoryError.notADirectory(file.path)) { try StateDirectory(file).create() }
        #expect(try Data(contentsOf: file) == Data("x".utf8))
    }

    @Test func writeSecretNamesTheMissingDirectory() throws {
        let scratch = try BootstrapScratchDirectory()
        defer { scratch.remove() }
        let state = StateDirectory(scratch.url.appendingPathComponent("never-created"))
        #expect {
            try state.writeSecret(Data(), to: state.caKey)
        } throws: { error in
            "\(error)".contains(state.pki.path)
        }
    }
}
