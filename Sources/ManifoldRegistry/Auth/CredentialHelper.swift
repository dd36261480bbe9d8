import Foundation
import Synchronization

/// A docker credential helper (`docker-credential-NAME get|store|erase`), the protocol the docker CLI
/// uses for `credsStore` and `credHelpers`: the server URL (or a JSON document) on stdin, JSON on stdout.
public struct CredentialHelper: Sendable {
    public let name: String
    public var executable: String { "docker-credential-\(name)" }

    /// Directories to look in; nil means `PATH`.
    public let searchPath: [String]?

    public init(name: String, searchPath: [String]? = nil) {
        self.name = name
        self.searchPath = searchPath
    }

    /// The stored credential, or nil when the helper has none for this server.
    public func get(serverURL: String) async throws -> RegistryCredential? {
        let result = try await run("get", input: Data(serverURL.utf8))
        if result.status != 0 {
            // Helpers report a missing entry on stdout with a non-zero exit.
            if result.output.localizedCaseInsensitiveContains("credentials not found") { return nil }
            throw CredentialHelperError(helper: executable, action: "get", message: result.failureMessage)
        }
        struct Answer: Decodable {
            var username: String?
            var secret: String?
            enum CodingKeys: String, CodingKey {
                case username = "Username"
                case secret = "Secret"
            }
        }
        guard let answer = try? JSONDecoder().decode(Answer.self, from: Data(result.output.utf8)) else {
            throw CredentialHelperError(helper: executable, action: "get", message: "its output is not the expected JSON")
        }
        guard let secret = answer.secret, !secret.isEmpty else { return nil }
        if answer.username == "<token>" { return .identityToken(secret) }
        return .basic(username: answer.username ?? "", password: secret)
    }

    public func store(serverURL: String, username: String, secret: String) async throws {
        let document = try JSONSerialization.data(withJSONObject: [
            "ServerURL": serverURL, "Username": username, "Secret": secret,
        ])
        let result = try await run("store", input: document)
        guard result.status == 0 else {
            throw CredentialHelperError(helper: executable, action: "store", message: result.failureMessage)
        }
    }

    public func erase(serverURL: String) async throws {
        let result = try await run("erase", input: Data(serverURL.utf8))
        guard result.status == 0 else {
            throw CredentialHelperError(helper: executable, action: "erase", message: result.failureMessage)
        }
    }

    /// What one run of the helper produced. `output` (stdout) is the protocol's answer; `errors`
    /// (stderr) is only ever shown in error messages.
    struct RunResult: Sendable {
        var status: Int32
        var output: String
        var errors: String

        var failureMessage: String {
            let parts = [output, errors].filter { !$0.isEmpty }
            return parts.isEmpty ? "it exited with status \(status)" : parts.joined(separator: "; ")
        }
    }

    /// Helper processes start, and are waited for, on this queue's threads, never on the concurrency pool.
    private static let queue = DispatchQueue(label: "manifold.credential-helper", attributes: .concurrent)

    private func run(_ action: String, input: Data) async throws -> RunResult {
        guard let path = Self.find(executable, in: searchPath) else {
            throw CredentialHelperError(
                helper: executable, action: action,
                message: "it is not on PATH (it is named by credsStore or credHelpers in the docker config)")
        }
        return try await withCheckedThrowingContinuation { continuation in
            Self.queue.async {
                continuation.resume(with: Result { try Self.runBlocking(path: path, action: action, input: input) })
            }
        }
    }

    /// Runs the helper to completion; blocks the calling thread (one of `queue`'s).
    private static func runBlocking(path: String, action: String, input: Data) throws -> RunResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = [action]
        let stdin = Pipe()
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        // Drain stderr on another thread so neither pipe can fill up and stall the helper.
        let errors = Mutex(Data())
        let drained = DispatchGroup()
        drained.enter()
        queue.async {
            let data = stderr.fileHandleForReading.readDataToEndOfFile()
            errors.withLock { $0 = data }
            drained.leave()
        }
        try? stdin.fileHandleForWriting.write(contentsOf: input)
        try? stdin.fileHandleForWriting.close()
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        drained.wait()
        process.waitUntilExit()
        let text = { (data: Data) in String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) }
        return RunResult(status: process.terminationStatus, output: text(output), errors: text(errors.withLock { $0 }))
    }

    static func find(_ executable: String, in searchPath: [String]?) -> String? {
        let environment = ProcessInfo.processInfo.environment
        #if os(Windows)
        let separator: Character = ";"
        let names = [executable + ".exe", executable + ".cmd", executable]
        #else
        let separator: Character = ":"
        let names = [executable]
        #endif
        let directories =
            searchPath ?? (environment["PATH"] ?? environment["Path"] ?? "").split(separator: separator).map(String.init)
        for directory in directories {
            for name in names {
                let candidate = URL(fileURLWithPath: directory).appendingPathComponent(name).path
                if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            }
        }
        return nil
    }
}

public struct CredentialHelperError: Error, CustomStringConvertible {
    public let helper: String
    public let action: String
    public let message: String
    public var description: String { "credential helper \(helper) failed to \(action) credentials: \(message)" }
}
