import Foundation
import ManifoldAPI

/// The agent's state directory: credential, pinned CA, pending result reports, work directories.
///
/// The directory is owner-only (0700 on Linux, an owner-only ACL on Windows) and so are the credential and CA.
public struct StateDirectory: Sendable {
    public let url: URL

    public init(path: String) {
        url = URL(fileURLWithPath: path, isDirectory: true)
    }

    public var credentialFile: URL { url.appendingPathComponent("credential.json") }
    public var caFile: URL { url.appendingPathComponent("ca.crt") }
    public var reportsDirectory: URL { url.appendingPathComponent("reports", isDirectory: true) }
    public var defaultWorkDirectory: URL { url.appendingPathComponent("work", isDirectory: true) }

    /// Creates the directory (and its subdirectories) owner-only.
    public func prepare() throws {
        for directory in [url, reportsDirectory] {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            try FilePermissions.restrictToOwner(directory, isDirectory: true)
        }
    }

    /// Writes `data` atomically and durably, readable only by the owner: the bytes go to a temporary file that is
    /// synced, renamed over `file`, and the directory is synced, so after a power cut `file` holds either its old
    /// or its new content.
    public func writePrivate(_ data: Data, to file: URL) throws {
        let temporary = file.deletingLastPathComponent().appendingPathComponent(".\(file.lastPathComponent).tmp")
        try? FileManager.default.removeItem(at: temporary)
        guard FileManager.default.createFile(atPath: temporary.path, contents: nil) else {
            throw AgentError("cannot create \(temporary.path)")
        }
        try FilePermissions.restrictToOwner(temporary, isDirectory: false)
        let handle = try FileHandle(forWritingTo: temporary)
        try handle.write(contentsOf: data)
        try handle.synchronize()
        try handle.close()
        try DurableFile.replace(file, with: temporary)
    }

    public func loadCredential() throws -> AgentCredential {
        guard let data = FileManager.default.contents(atPath: credentialFile.path) else {
            throw AgentError(
                "no agent credential in \(url.path); run `manifold-agent join COORDINATOR_URL --token JOIN_TOKEN "
                    + "--ca-fingerprint sha256:… --state-dir \(url.path)` first")
        }
        do {
            return try APICoding.decoder().decode(AgentCredential.self, from: data)
        } catch {
            throw AgentError("\(credentialFile.path) is not a valid credential file: \(error)")
        }
    }

    public func saveCredential(_ credential: AgentCredential) throws {
        try writePrivate(try APICoding.encoder().encode(credential), to: credentialFile)
    }
}

/// An agent failure with a message a user can act on.
public struct AgentError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
