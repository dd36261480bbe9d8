import Foundation

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
    public func get(serverURL: String) throws -> RegistryCredential? {
        let result = try run("get", input: Data(serverURL.utf8))
        if result.status != 0 {
            // Helpers report a missing entry on stdout with a non-zero exit.
            if result.output.localizedCaseInsensitiveContains("credentials not found") { return nil }
            throw CredentialHelperError(helper: executable, action: "get", message: result.output)
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

    public func store(serverURL: String, username: String, secret: String) throws {
        let document = try JSONSerialization.data(withJSONObject: [
            "ServerURL": serverURL, "Username": username, "Secret": secret,
        ])
        let result = try run("store", input: document)
        guard result.status == 0 else { throw CredentialHelperError(helper: executable, action: "store", message: result.output) }
    }

    public func erase(serverURL: String) throws {
        let result = try run("erase", input: Data(serverURL.utf8))
        guard result.status == 0 else { throw CredentialHelperError(helper: executable, action: "erase", message: result.output) }
    }

    private func run(_ action: String, input: Data) throws -> (status: Int32, output: String) {
        guard let path = Self.find(executable, in: searchPath) else {
            throw CredentialHelperError(
                helper: executable, action: action,
                message: "it is not on PATH (it is named by credsStore or credHelpers in the docker config)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = [action]
        let stdin = Pipe()
        let stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stdout
        try process.run()
        stdin.fileHandleForWriting.write(input)
        try? stdin.fileHandleForWriting.close()
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (
            process.terminationStatus, String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        )
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
