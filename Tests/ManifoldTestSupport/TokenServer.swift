import Foundation

/// The RSA key and self-signed certificate that sign a token-mode registry's JWTs. The
/// certificate goes both into the registry's `rootcertbundle` and into each token's `x5c` header.
public struct TokenSigningKey: Sendable {
    public let key: URL
    public let certificate: URL

    /// Generates `token.key` and `token.crt` in `directory` with the openssl CLI.
    public static func generate(in directory: URL) throws -> TokenSigningKey {
        let signer = TokenSigningKey(
            key: directory.appendingPathComponent("token.key"),
            certificate: directory.appendingPathComponent("token.crt"))
        try runChecked(
            "openssl",
            [
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", signer.key.path, "-out",
                signer.certificate.path, "-days", "2", "-subj", "/CN=manifold-test-token-signer",
            ])
        return signer
    }
}

/// `deploy/testenv/token_server.py`: the token endpoint of a `token`-mode `TestRegistry`.
public enum TokenServer {
    /// One request the token server answered, as it logged it (never with the credentials).
    public struct Request: Decodable, Sendable, Equatable {
        public struct Access: Decodable, Sendable, Equatable {
            public let type: String
            public let name: String
            public let actions: [String]
        }
        public let method: String
        public let path: String
        /// The decoded query string, e.g. `service=manifold-test-registry&scope=repository:a:pull,push`.
        public let query: String
        /// Every scope asked for, e.g. `["repository:team/app:pull,push"]`.
        public let scopes: [String]
        /// The authenticated user, or `nil` for an anonymous request or a rejected password.
        public let account: String?
        public let status: Int
        /// What the issued token allows.
        public let granted: [Access]
    }

    /// Starts the token server on 127.0.0.1:`port` and waits until it listens; over HTTPS with `tls`'s server
    /// certificate when given. `expiresIn` 0 leaves `expires_in` out of the response (60-second tokens).
    public static func start(
        port: Int, signingKey: TokenSigningKey, users: [(String, String)], readOnlyUsers: [(String, String)] = [],
        expiresIn: Int = 300, tls: TestCertificates? = nil, logDirectory: URL
    ) throws -> ManagedProcess {
        var arguments = [
            try TestEnvironmentScripts.path("token_server.py"), "--port", "\(port)", "--key", signingKey.key.path,
            "--cert", signingKey.certificate.path, "--issuer", TestRegistry.tokenIssuer, "--service",
            TestRegistry.tokenService, "--expires-in", "\(expiresIn)",
        ]
        for (user, password) in users { arguments += ["--user", "\(user):\(password)"] }
        for (user, password) in readOnlyUsers { arguments += ["--readonly-user", "\(user):\(password)"] }
        if let tls { arguments += ["--tls-cert", tls.serverCertificate.path, "--tls-key", tls.serverKey.path] }
        let process = try ManagedProcess(
            name: "token-server", executable: "python3", arguments: ["-u"] + arguments, logDirectory: logDirectory)
        do {
            try PortOwnership.waitUntilListening(port: port, process: process)
        } catch {
            process.stop()
            throw error
        }
        return process
    }

    /// The requests logged so far by a token server started with `start`, oldest first.
    public static func requests(in process: ManagedProcess) -> [Request] {
        let decoder = JSONDecoder()
        return process.output().split(separator: "\n").compactMap { line in
            guard line.hasPrefix("{\"method\"") else { return nil }
            return try? decoder.decode(Request.self, from: Data(line.utf8))
        }
    }
}
