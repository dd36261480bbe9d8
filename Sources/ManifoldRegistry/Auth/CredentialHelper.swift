import Foundation
import Subprocess

#if canImport(System)
import System
#else
import SystemPackage
#endif

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

    private func run(_ action: String, input: Data) async throws -> RunResult {
        guard let path = Self.find(executable, in: searchPath) else {
            throw CredentialHelperError(
                helper: executable, action: action,
                message: "it is not on PATH (it is named by credsStore or credHelpers in the docker config)")
        }
        // swift-subprocess, not Foundation's Process: its Linux run() can crash a process with many open descriptors
        // (swift-corelibs-foundation#5472). Both pipes are drained as the helper writes; nothing waits on a thread.
        let result = try await Subprocess.run(
            .path(FilePath(path)), arguments: [action], input: .array(Array(input)),
            output: .string(limit: Self.outputLimit), error: .string(limit: Self.outputLimit))
        let status: Int32
        switch result.terminationStatus {
        case .exited(let code): status = Int32(truncatingIfNeeded: code)
        #if !os(Windows)
        case .signaled(let signal): status = 128 + signal
        #endif
        }
        let text = { (output: String?) in (output ?? "").trimmingCharacters(in: .whitespacesAndNewlines) }
        return RunResult(status: status, output: text(result.standardOutput), errors: text(result.standardError))
    }

    /// More than this from a helper is not a credential.
    static let outputLimit = 1 << 20

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
