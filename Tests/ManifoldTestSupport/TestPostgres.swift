import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The PostgreSQL server of a test process: the one named by `MANIFOLD_TEST_DATABASE_URL` (password in
/// `MANIFOLD_TEST_DATABASE_PASSWORD`) when set, else one cluster this process starts on first use (`initdb` into a
/// scratch directory, `postgres` on a free 127.0.0.1 port, durability off) and stops when it exits.
///
/// ```swift
/// let server = try await TestPostgres.shared
/// // server.url: postgres://manifold@127.0.0.1:PORT/manifold_test?sslmode=disable, password: server.password
/// ```
/// Stores isolate themselves by schema (`ManifoldStoreTestSupport` makes a fresh one per store). A failure to
/// start throws with the server's log; nothing is skipped.
public final class TestPostgres: Sendable {
    /// `postgres://USER@HOST:PORT/DATABASE?sslmode=disable` (no password).
    public let url: String
    public let password: String?
    /// Whether the server came from `MANIFOLD_TEST_DATABASE_URL` (then it is neither started nor stopped here).
    public let isExternal: Bool
    /// The loopback port of a server this process started.
    public let port: Int?
    /// The cluster's directory (`data/`, `postgres.log`, the socket) of a server this process started.
    public let directory: URL?
    /// The CA that issued the server's certificate (SAN IP:127.0.0.1, DNS:localhost) of a server this process
    /// started: it also accepts TLS (`sslmode=require`, `verify-full`).
    public let caCertificate: URL?

    private init(url: String, password: String?, isExternal: Bool, port: Int?, directory: URL?, caCertificate: URL?) {
        self.url = url
        self.password = password
        self.isExternal = isExternal
        self.port = port
        self.directory = directory
        self.caCertificate = caCertificate
    }

    private static let state = Mutex<Task<TestPostgres, any Error>?>(nil)
    private static let localState = Mutex<Task<TestPostgres, any Error>?>(nil)
    private static let clusters = Mutex<[Cluster]>([])
    private static let counter = Mutex(0)

    /// The process's server, started on first use (a failure is remembered and thrown again).
    ///
    /// Starting one (`initdb`, the server's recovery) takes seconds on a loaded machine: it runs on a thread of its
    /// own, and every caller meanwhile awaits it without holding a thread of the concurrency pool, which on two
    /// cores has two threads that every other test of the process needs.
    public static var shared: TestPostgres {
        get async throws {
            try await once(state) { try start() }
        }
    }

    /// A server this process started (with TLS), for tests of what only a local cluster offers: ``shared`` when
    /// that is local, else one more cluster next to the external server.
    public static var local: TestPostgres {
        get async throws {
            let shared = try await shared
            if !shared.isExternal { return shared }
            return try await once(localState) { try startCluster() }
        }
    }

    /// The server `slot` holds, started by `start` on a thread of its own by the first caller; later callers await
    /// that same start.
    private static func once(
        _ slot: borrowing Mutex<Task<TestPostgres, any Error>?>, _ start: @escaping @Sendable () throws -> TestPostgres
    ) async throws -> TestPostgres {
        try await slot.withLock { task in
            if let task { return task }
            let started = Task { try await onOwnThread(start) }
            task = started
            return started
        }.value
    }

    /// A schema name no other store of any test process uses (`t_<pid>_<n>_<random>`).
    public func uniqueSchemaName() -> String {
        let number = Self.counter.withLock { counter in
            counter += 1
            return counter
        }
        let random = String(UInt32.random(in: 0...UInt32.max), radix: 36)
        return "t_\(getpid())_\(number)_\(random)"
    }

    /// The end of the server's log, for failure messages (empty for an external server).
    public func logTail(lines: Int = 40) -> String {
        guard let directory else { return "" }
        let log = (try? String(contentsOf: directory.appendingPathComponent("postgres.log"), encoding: .utf8)) ?? ""
        return log.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    private static func start() throws -> TestPostgres {
        let environment = ProcessInfo.processInfo.environment
        if let url = environment["MANIFOLD_TEST_DATABASE_URL"], !url.isEmpty {
            return TestPostgres(
                url: url, password: environment["MANIFOLD_TEST_DATABASE_PASSWORD"], isExternal: true, port: nil,
                directory: nil, caCertificate: nil)
        }
        return try startCluster()
    }

    private static func startCluster() throws -> TestPostgres {
        Cluster.removeAbandoned()
        var lastError: TestEnvironmentError?
        for _ in 0..<3 {
            do {
                let cluster = try Cluster.create()
                let first = clusters.withLock { clusters in
                    clusters.append(cluster)
                    return clusters.count == 1
                }
                if first { atexit { TestPostgres.stopAtExit() } }
                return TestPostgres(
                    url: "postgres://\(Cluster.user)@127.0.0.1:\(cluster.port)/\(Cluster.database)?sslmode=disable",
                    password: cluster.password, isExternal: false, port: cluster.port, directory: cluster.directory,
                    caCertificate: cluster.certificates.caCertificate)
            } catch let error as TestEnvironmentError {
                lastError = error
                // Another process took the port between choosing and binding it: try another.
                guard error.description.contains("already in use") else { throw error }
            }
        }
        throw lastError!
    }

    private static func stopAtExit() {
        clusters.withLock { clusters in
            for cluster in clusters { cluster.stop() }
            clusters = []
        }
    }
}

/// A PostgreSQL cluster in a scratch directory, run by the `postgres` user when this process is root (initdb and
/// postgres refuse to run as root).
///
/// The server runs in the foreground as a child of this process (`setpriv … postgres -D …`), not through
/// `pg_ctl start`: Foundation's `Process` learns that a child ended when a socket the child inherited is closed
/// by it and all its descendants, so a `pg_ctl` whose server lives on would never be seen to end.
private struct Cluster: Sendable {
    static let user = "manifold"
    static let database = "manifold_test"
    static let prefix = "manifold-postgres-"

    let directory: URL
    let port: Int
    let password: String
    let binaries: String
    let server: ManagedProcess?

    var data: String { directory.appendingPathComponent("data").path }
    var certificates: TestCertificates { TestCertificates(directory: directory.appendingPathComponent("certs")) }

    static func create() throws -> Cluster {
        let binaries = try findBinaries()
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("\(prefix)\(getpid())-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let password = (0..<4).map { _ in String(UInt64.random(in: 0...UInt64.max), radix: 36) }.joined()
        var cluster = Cluster(
            directory: directory, port: try Loopback.freePort(), password: password, binaries: binaries, server: nil)
        do {
            try cluster.initialize()
            cluster = try cluster.startServer()
            try cluster.createDatabase()
        } catch {
            cluster.stop()
            throw error
        }
        return cluster
    }

    private func initialize() throws {
        try Data("\(getpid())\n".utf8).write(to: directory.appendingPathComponent("owner.pid"))
        let passwordFile = directory.appendingPathComponent("password")
        try Data((password + "\n").utf8).write(to: passwordFile)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: passwordFile.path)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: directory.path)
        _ = FileManager.default.createFile(atPath: directory.appendingPathComponent("postgres.log").path, contents: nil)
        let certificates = try TestCertificates.generate(
            in: directory.appendingPathComponent("certs"), commonName: "Manifold Test PostgreSQL CA")
        if Self.runsAsRoot {
            _ = try runChecked("chown", ["-R", "postgres:postgres", directory.path])
        }
        // PostgreSQL refuses a key others can read.
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: certificates.serverKey.path)
        defer { try? FileManager.default.removeItem(at: passwordFile) }
        try run(
            "initdb",
            [
                "-D", data, "-U", Self.user, "--pwfile=\(passwordFile.path)", "--auth-local=trust",
                "--auth-host=scram-sha-256", "--no-sync", "--encoding=UTF8", "--locale=C",
            ])
    }

    private func startServer() throws -> Cluster {
        let postgres = "\(binaries)/postgres"
        var arguments = [
            "-D", data, "-p", "\(port)", "-c", "listen_addresses=127.0.0.1",
            "-c", "unix_socket_directories=\(directory.path)", "-c", "fsync=off", "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off", "-c", "max_connections=400", "-c", "shared_buffers=64MB",
            "-c", "password_encryption=scram-sha-256", "-c", "ssl=on",
            "-c", "ssl_cert_file=\(certificates.serverCertificate.path)",
            "-c", "ssl_key_file=\(certificates.serverKey.path)",
        ]
        var executable = postgres
        if Self.runsAsRoot {
            executable = "setpriv"
            arguments = ["--reuid=postgres", "--regid=postgres", "--init-groups", "--", postgres] + arguments
        }
        let server = try ManagedProcess(
            name: "postgres", executable: executable, arguments: arguments, logDirectory: directory)
        let started = Cluster(directory: directory, port: port, password: password, binaries: binaries, server: server)
        do {
            try Loopback.waitUntilListening(port: port, process: server, timeout: 60)
            // Listening comes before the end of recovery; wait until it takes connections.
            let deadline = Date().addingTimeInterval(60)
            while true {
                let ready = try runCommand(
                    "\(binaries)/pg_isready", ["-h", "127.0.0.1", "-p", "\(port)", "-U", Self.user, "-d", "postgres"])
                if ready.status == 0 { break }
                guard Date() < deadline, server.isRunning else {
                    throw TestEnvironmentError("PostgreSQL on 127.0.0.1:\(port) never took connections: \(ready.stdout)")
                }
                usleep(50_000)
            }
        } catch let error as TestEnvironmentError {
            started.stop()
            throw TestEnvironmentError("\(error.description)\nserver log (\(server.logFile.path)):\n\(server.output())")
        }
        return started
    }

    private func createDatabase() throws {
        try run("createdb", ["-h", directory.path, "-p", "\(port)", "-U", Self.user, Self.database])
    }

    /// Stops the server at once (SIGQUIT: immediate shutdown, no checkpoint) and removes the directory.
    func stop() {
        if let server {
            if server.isRunning { kill(server.processIdentifier, SIGQUIT) }
            let deadline = Date().addingTimeInterval(10)
            while server.isRunning && Date() < deadline { usleep(20_000) }
            server.stop()
        } else if FileManager.default.fileExists(atPath: data + "/postmaster.pid") {
            _ = try? run("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"])
        }
        if ProcessInfo.processInfo.environment["MANIFOLD_KEEP_TEST_DIRS"] == nil {
            try? FileManager.default.removeItem(at: directory)
        }
    }

    /// Stops and removes clusters left by test processes that were killed before they could stop them.
    static func removeAbandoned() {
        let temporary = FileManager.default.temporaryDirectory
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: temporary.path) else { return }
        for entry in entries where entry.hasPrefix(prefix) {
            let directory = temporary.appendingPathComponent(entry)
            guard
                let text = try? String(contentsOf: directory.appendingPathComponent("owner.pid"), encoding: .utf8),
                let owner = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)),
                kill(owner, 0) != 0 && errno == ESRCH,
                let binaries = try? findBinaries()
            else { continue }
            Cluster(directory: directory, port: 0, password: "", binaries: binaries, server: nil).stop()
        }
    }

    private static var runsAsRoot: Bool { geteuid() == 0 }

    /// The newest `/usr/lib/postgresql/N/bin` (Debian), else the directory of `initdb` on PATH.
    static func findBinaries() throws -> String {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [])
            .compactMap { Int($0) }.sorted()
        for version in versions.reversed() where FileManager.default.isExecutableFile(atPath: "\(root)/\(version)/bin/initdb") {
            return "\(root)/\(version)/bin"
        }
        if let initdb = try? ManagedProcess.resolve("initdb") {
            return URL(fileURLWithPath: initdb).deletingLastPathComponent().path
        }
        throw TestEnvironmentError(
            "no PostgreSQL server binaries (initdb) in /usr/lib/postgresql/*/bin or on PATH; run "
                + "deploy/testenv/install-deps.sh (Debian package postgresql), or set MANIFOLD_TEST_DATABASE_URL")
    }

    /// Runs a PostgreSQL program, as the `postgres` user when this process is root.
    @discardableResult
    private func run(_ program: String, _ arguments: [String]) throws -> String {
        let executable = "\(binaries)/\(program)"
        if Self.runsAsRoot {
            return try runChecked("runuser", ["-u", "postgres", "--", executable] + arguments)
        }
        return try runChecked(executable, arguments)
    }
}
