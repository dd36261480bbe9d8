import Foundation

/// `deploy/testenv/http_test_server.py` on a free loopback port, over plain HTTP or TLS.
///
/// ```swift
/// let server = try TestHTTPServer.start(logDirectory: scratch.url)
/// defer { server.stop() }
/// let url = server.url("/echo?x=1")
/// ```
public final class TestHTTPServer: Sendable {
    public let process: ManagedProcess
    public let port: Int
    public let host: String
    public let isTLS: Bool

    /// `http://127.0.0.1:PORT` or `https://…`, with `host` as given to `start`.
    public var baseURL: URL { URL(string: "\(isTLS ? "https" : "http")://\(host):\(port)")! }

    private init(process: ManagedProcess, port: Int, host: String, isTLS: Bool) {
        self.process = process
        self.port = port
        self.host = host
        self.isTLS = isTLS
    }

    /// Starts the server and waits until it accepts connections.
    ///
    /// - Parameters:
    ///   - tls: serve HTTPS with `tls.serverCertificate` (valid for 127.0.0.1, ::1 and localhost).
    ///   - requireClientCertificate: demand a client certificate signed by `tls.caCertificate`.
    ///   - urlHost: the host name `baseURL` uses (the server always listens on 127.0.0.1), e.g. `localhost`
    ///     to give a second server a different origin.
    public static func start(
        tls: TestCertificates? = nil, requireClientCertificate: Bool = false, httpVersion: String = "1.1",
        urlHost: String = "127.0.0.1", name: String = "http-test-server", logDirectory: URL
    ) throws -> TestHTTPServer {
        let port = try Loopback.freePort()
        var arguments = [
            "-u", try script(), "--port", "\(port)", "--http-version", httpVersion,
            "--parent-pid", "\(ProcessInfo.processInfo.processIdentifier)",
        ]
        if let tls {
            arguments += ["--tls-cert", tls.serverCertificate.path, "--tls-key", tls.serverKey.path]
            if requireClientCertificate { arguments += ["--client-ca", tls.caCertificate.path] }
        } else if requireClientCertificate {
            throw TestEnvironmentError("a client certificate can only be required over TLS")
        }
        let process = try ManagedProcess(
            name: "\(name)-\(port)", executable: "python3", arguments: arguments, logDirectory: logDirectory)
        try Loopback.waitUntilListening(port: port, process: process)
        return TestHTTPServer(process: process, port: port, host: urlHost, isTLS: tls != nil)
    }

    /// `baseURL` joined with a path and query, e.g. `url("/slow?delay=2")`.
    public func url(_ pathAndQuery: String) -> URL {
        URL(string: baseURL.absoluteString + pathAndQuery)!
    }

    public func stop() { process.stop() }

    /// The script, found from this source file (`Tests/ManifoldTestSupport` → repository root), or in
    /// `MANIFOLD_TESTENV_DIR`.
    static func script() throws -> String {
        let directory: URL
        if let override = ProcessInfo.processInfo.environment["MANIFOLD_TESTENV_DIR"] {
            directory = URL(fileURLWithPath: override)
        } else {
            directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("deploy/testenv")
        }
        let script = directory.appendingPathComponent("http_test_server.py")
        guard FileManager.default.fileExists(atPath: script.path) else {
            throw TestEnvironmentError(
                "http_test_server.py not found at \(script.path); set MANIFOLD_TESTENV_DIR to the repository's deploy/testenv")
        }
        return script.path
    }
}
