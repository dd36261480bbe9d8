import Foundation
import ManifoldAPI
import ManifoldHTTP

/// The coordinator as a real process: `manifold init`, `manifold serve`, and API calls to it.
public enum CoordinatorProcess {
    /// A `manifold serve` process and a client that trusts its CA.
    public struct Running: Sendable {
        public var process: ManagedProcess
        public var client: HTTPClient
        public var base: URL

        public init(process: ManagedProcess, client: HTTPClient, base: URL) {
            self.process = process
            self.client = client
            self.base = base
        }
    }

    /// Starts `manifold serve --state-dir STATE` and returns once it listens on loopback `port`.
    public static func serve(
        state: String, port: Int, logDirectory: URL, name: String, environment: [String: String] = [:],
        arguments: [String] = []
    ) throws -> Running {
        let process = try ManagedProcess(
            name: name, executable: try manifoldBinary(), arguments: ["serve", "--state-dir", state] + arguments,
            environment: environment, logDirectory: logDirectory)
        try Loopback.waitUntilListening(port: port, process: process)
        let client = HTTPClient(configuration: HTTPClientConfiguration(tls: TLSConfiguration(caFile: "\(state)/pki/ca.crt")))
        return Running(process: process, client: client, base: URL(string: "https://127.0.0.1:\(port)")!)
    }

    /// One API call with a bearer token and an optional JSON body.
    public static func call(
        _ running: Running, _ method: String, _ path: String, token: String, json: (some Encodable)? = String?.none
    )
        async throws -> HTTPResponse
    {
        var request = HTTPRequest(method: method, url: URL(string: path, relativeTo: running.base)!.absoluteURL)
        request.headers.add("Authorization", "Bearer \(token)")
        if let json {
            request.body = .bytes(try APICoding.encoder().encode(json))
            request.headers.add("Content-Type", "application/json")
        }
        return try await running.client.execute(request)
    }

    /// `manifold init` into `state`, listening on loopback `port`; returns what it printed once. The join token
    /// may join 1000 agents, since chaos tests join many (the default of 10 is checked by its own test).
    public static func initialise(
        state: String, port: Int, environment: [String: String] = [:], arguments: [String] = []
    ) throws -> (fingerprint: String, admin: String, joinToken: String) {
        let initialised = try manifold(
            [
                "init", "--state-dir", state, "--listen", "127.0.0.1:\(port)", "--allow-registry", "127.0.0.1",
                "--join-token-uses", "1000",
            ] + arguments,
            environment: environment)
        guard initialised.status == 0 else { throw TestEnvironmentError("manifold init failed: \(initialised.stderr)") }
        func value(_ label: String) throws -> String {
            guard let found = Self.value(after: label, in: initialised.stdout) else {
                throw TestEnvironmentError("no \(label) in manifold init's output:\n\(initialised.stdout)")
            }
            return found
        }
        return (try value("CA fingerprint"), try value("Admin token"), try value("Agent join token"))
    }

    /// The line after the one starting with `label` in `manifold init`'s output.
    public static func value(after label: String, in output: String) -> String? {
        let lines = output.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        guard let index = lines.firstIndex(where: { $0.hasPrefix(label) }), index + 1 < lines.count else { return nil }
        return lines[index + 1]
    }
}
