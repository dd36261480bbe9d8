import Foundation

/// How a test registry is reached and who may use it.
public enum RegistryMode: String, Sendable, CaseIterable {
    /// Plain HTTP, no authentication.
    case http
    /// HTTPS with a certificate from the test CA, no authentication.
    case tls
    /// HTTPS plus Basic authentication against an htpasswd file.
    case basic
    /// HTTPS plus the bearer-token flow, with `deploy/testenv/token_server.py` as the token server.
    case token
}

/// One real CNCF `docker-registry` running on loopback in a scratch directory, plus its token
/// server in `token` mode.
///
/// ```swift
/// let registry = try TestRegistry.start(.token)
/// defer { registry.stop() }
/// // https://127.0.0.1:PORT, trust registry.certificates!.caCertificate,
/// // log in as registry.username / registry.password
/// ```
///
/// Every stored property is an immutable `let` of a `Sendable` type (`ManagedProcess` guards its
/// own state), so the class is `Sendable` without `@unchecked`.
public final class TestRegistry: Sendable {
    /// The token service name the registry expects in a token's `aud` claim.
    public static let tokenService = "manifold-test-registry"
    /// The issuer the registry expects in a token's `iss` claim.
    public static let tokenIssuer = "manifold-test-issuer"

    public let mode: RegistryMode
    /// `127.0.0.1:PORT`, the registry part of an image reference.
    public let host: String
    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    public let baseURL: URL
    /// The PKI whose `caCertificate` a client must trust; `nil` in `http` mode.
    public let certificates: TestCertificates?
    /// The read-write user of `basic` and `token` mode (`manifold`).
    public let username: String?
    public let password: String?
    /// A pull-only user, `token` mode only (`reader`).
    public let readOnlyUsername: String?
    public let readOnlyPassword: String?
    /// The token server of `token` mode; its output is one JSON line per request (see `tokenRequests()`).
    public let tokenServer: ManagedProcess?
    /// `https://127.0.0.1:TOKENPORT/token` in `token` mode (same certificates as the registry).
    public let tokenRealm: URL?
    /// The scratch directory: `data/`, `config.yml`, certificates and logs. Removed when the
    /// registry is deallocated unless `MANIFOLD_KEEP_TEST_DIRS` is set.
    public let directory: URL
    /// The `docker-registry` process.
    public let process: ManagedProcess

    private init(
        mode: RegistryMode, port: Int, certificates: TestCertificates?, credentials: (String, String)?,
        readOnly: (String, String)?, tokenServer: ManagedProcess?, tokenRealm: URL?, directory: URL,
        process: ManagedProcess
    ) {
        self.mode = mode
        self.host = "127.0.0.1:\(port)"
        self.baseURL = URL(string: "\(mode == .http ? "http" : "https")://127.0.0.1:\(port)")!
        self.certificates = certificates
        self.username = credentials?.0
        self.password = credentials?.1
        self.readOnlyUsername = readOnly?.0
        self.readOnlyPassword = readOnly?.1
        self.tokenServer = tokenServer
        self.tokenRealm = tokenRealm
        self.directory = directory
        self.process = process
    }

    deinit {
        stop()
        if ProcessInfo.processInfo.environment["MANIFOLD_KEEP_TEST_DIRS"] == nil {
            try? FileManager.default.removeItem(at: directory)
        }
    }

    /// Starts a registry in `mode` on a free loopback port and returns once it accepts connections.
    ///
    /// TLS modes use `certificates` if given, else a fresh `TestCertificates` in the scratch
    /// directory. `tokenExpiresIn` is the token server's `expires_in`; 0 omits the field, which
    /// clients must read as 60 seconds. A port taken between choosing and binding it is retried once.
    public static func start(
        _ mode: RegistryMode, certificates: TestCertificates? = nil, tokenExpiresIn: Int = 300
    ) throws -> TestRegistry {
        do {
            return try launch(mode, certificates: certificates, tokenExpiresIn: tokenExpiresIn)
        } catch let error as TestEnvironmentError where error.description.lowercased().contains("address already in use") {
            return try launch(mode, certificates: certificates, tokenExpiresIn: tokenExpiresIn)
        }
    }

    private static func launch(
        _ mode: RegistryMode, certificates: TestCertificates?, tokenExpiresIn: Int
    ) throws -> TestRegistry {
        let scratch = try ScratchDirectory(prefix: "manifold-registry-\(mode.rawValue)")
        do {
            return try launch(mode, in: scratch.url, certificates: certificates, tokenExpiresIn: tokenExpiresIn)
        } catch {
            scratch.remove()
            throw error
        }
    }

    private static func launch(
        _ mode: RegistryMode, in directory: URL, certificates: TestCertificates?, tokenExpiresIn: Int
    ) throws -> TestRegistry {
        let port = try Loopback.freePort()
        let data = directory.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)

        var certs: TestCertificates?
        if mode != .http {
            certs = try certificates ?? TestCertificates.generate(in: directory.appendingPathComponent("certs"))
        }
        var credentials: (String, String)?
        var readOnly: (String, String)?
        var tokenServer: ManagedProcess?
        var tokenRealm: URL?
        var auth = ""

        switch mode {
        case .http, .tls:
            break
        case .basic:
            credentials = ("manifold", "manifold-password")
            let htpasswd = directory.appendingPathComponent("htpasswd")
            let line = try runChecked("htpasswd", ["-Bbn", "manifold", "manifold-password"])
            try Data(line.utf8).write(to: htpasswd)
            auth = "auth: {htpasswd: {realm: manifold-test, path: \(yaml(htpasswd.path))}}"
        case .token:
            credentials = ("manifold", "manifold-password")
            readOnly = ("reader", "reader-password")
            let signer = try TokenSigningKey.generate(in: directory)
            let tokenPort = try Loopback.freePort()
            let server = try TokenServer.start(
                port: tokenPort, signingKey: signer, users: [credentials!], readOnlyUsers: [readOnly!],
                expiresIn: tokenExpiresIn, tls: certs, logDirectory: directory)
            tokenServer = server
            // HTTPS like the registry: clients refuse a realm that leaves HTTPS.
            tokenRealm = URL(string: "https://127.0.0.1:\(tokenPort)/token")!
            auth = """
                auth:
                  token:
                    realm: \(yaml(tokenRealm!.absoluteString))
                    service: \(tokenService)
                    issuer: \(tokenIssuer)
                    rootcertbundle: \(yaml(signer.certificate.path))
                """
        }

        var tls = ""
        if let certs {
            tls = "  tls: {certificate: \(yaml(certs.serverCertificate.path)), key: \(yaml(certs.serverKey.path))}"
        }
        let config = """
            version: 0.1
            log: {level: warn, accesslog: {disabled: true}}
            storage:
              filesystem: {rootdirectory: \(yaml(data.path))}
              delete: {enabled: true}
            http:
              addr: 127.0.0.1:\(port)
              secret: manifold-test-secret
            \(tls)
            \(auth)

            """
        let configFile = directory.appendingPathComponent("config.yml")
        try Data(config.utf8).write(to: configFile)

        let process: ManagedProcess
        do {
            process = try ManagedProcess(
                name: "registry", executable: "docker-registry", arguments: ["serve", configFile.path],
                logDirectory: directory)
            try PortOwnership.waitUntilListening(port: port, process: process)
        } catch {
            tokenServer?.stop()
            throw error
        }
        return TestRegistry(
            mode: mode, port: port, certificates: certs, credentials: credentials, readOnly: readOnly,
            tokenServer: tokenServer, tokenRealm: tokenRealm, directory: directory, process: process)
    }

    /// A Docker-style `certs.d` tree for this registry (`certs.d/127.0.0.1:PORT/ca.crt`), for
    /// tools and configurations that look certificates up by host. Returns the `certs.d` root.
    public func certsDirectory() throws -> URL {
        guard let certificates else {
            throw TestEnvironmentError("the \(mode.rawValue) registry at \(host) has no certificates; use a TLS mode")
        }
        let root = directory.appendingPathComponent("certs.d")
        let hostDirectory = root.appendingPathComponent(host)
        try FileManager.default.createDirectory(at: hostDirectory, withIntermediateDirectories: true)
        let ca = hostDirectory.appendingPathComponent("ca.crt")
        if !FileManager.default.fileExists(atPath: ca.path) {
            try FileManager.default.copyItem(at: certificates.caCertificate, to: ca)
        }
        return root
    }

    /// The requests the token server answered, oldest first; empty unless in `token` mode.
    public func tokenRequests() -> [TokenServer.Request] {
        tokenServer.map(TokenServer.requests(in:)) ?? []
    }

    /// Stops the registry and its token server. The scratch directory stays until deallocation.
    public func stop() {
        process.stop()
        tokenServer?.stop()
    }

    /// The registry's output, followed by the token server's, for a failing test to print.
    public func logs() -> String {
        var text = "== docker-registry (\(mode.rawValue), \(host)) ==\n" + process.output()
        if let tokenServer { text += "\n== token server ==\n" + tokenServer.output() }
        return text
    }
}

/// A YAML double-quoted scalar (the JSON string syntax is valid YAML).
func yaml(_ value: String) -> String {
    let escaped = value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
    return "\"\(escaped)\""
}

/// Where the python helpers of `deploy/testenv` are: `MANIFOLD_TESTENV_DIR`, else found from this
/// source file's location in the repository.
enum TestEnvironmentScripts {
    static func path(_ name: String) throws -> String {
        let directory: URL
        if let override = ProcessInfo.processInfo.environment["MANIFOLD_TESTENV_DIR"] {
            directory = URL(fileURLWithPath: override)
        } else {
            directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("deploy/testenv")
        }
        let script = directory.appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: script.path) else {
            throw TestEnvironmentError(
                "\(name) not found at \(script.path); set MANIFOLD_TESTENV_DIR to the repository's deploy/testenv")
        }
        return script.path
    }
}

/// Readiness that cannot be fooled by a port taken by someone else between `Loopback.freePort()`
/// and the server's bind: waits until `process` itself owns the listening socket on 127.0.0.1:`port`
/// (read from /proc on Linux), or fails with "address already in use" when it exits instead.
enum PortOwnership {
    static func waitUntilListening(port: Int, process: ManagedProcess, timeout: TimeInterval = 20) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if !process.isRunning {
                throw TestEnvironmentError("\(process.name) exited before listening on \(port):\n\(process.output())")
            }
            switch owner(of: port, pid: process.processIdentifier) {
            case .some(true): return
            case .some(false): break
            case .none: if Loopback.isListening(port: port) { return }
            }
            usleep(10_000)
        }
        let table = procFile("/proc/net/tcp") ?? ""
        let suffix = ":" + String(format: "%04X", port)
        let lines = table.split(separator: "\n").filter { $0.contains(suffix) }.joined(separator: "\n")
        throw TestEnvironmentError(
            "\(process.name) (pid \(process.processIdentifier), running: \(process.isRunning)) did not listen on 127.0.0.1:\(port) after \(timeout) s\n/proc/net/tcp:\n\(lines)\n\(process.output())"
        )
    }

    /// Reads a /proc file to its end. /proc files report size 0, and reading them by size
    /// (as `String(contentsOfFile:)` may) returns only the first page once many sockets exist.
    private static func procFile(_ path: String) -> String? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        var data = Data()
        while let chunk = try? handle.read(upToCount: 65536), !chunk.isEmpty { data.append(chunk) }
        return String(decoding: data, as: UTF8.self)
    }

    /// Whether `pid` holds the socket listening on 127.0.0.1:`port` or 0.0.0.0:`port`; `nil` without /proc.
    private static func owner(of port: Int, pid: Int32) -> Bool? {
        guard let table = procFile("/proc/net/tcp") else { return nil }
        let suffix = ":" + String(format: "%04X", port)
        var inodes = Set<String>()
        for line in table.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count > 9, fields[3] == "0A" else { continue }
            let local = fields[1]
            if local == "0100007F" + suffix || local == "00000000" + suffix { inodes.insert(String(fields[9])) }
        }
        if inodes.isEmpty { return false }
        let fdDirectory = "/proc/\(pid)/fd"
        guard let descriptors = try? FileManager.default.contentsOfDirectory(atPath: fdDirectory) else { return nil }
        for descriptor in descriptors {
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "\(fdDirectory)/\(descriptor)")
            else { continue }
            if target.hasPrefix("socket:["), inodes.contains(String(target.dropFirst(8).dropLast())) { return true }
        }
        return false
    }
}
