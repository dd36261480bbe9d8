import Foundation

/// `deploy/testenv/hostile_registry.py`: a registry that tries to misuse its clients (a token realm on another
/// network, redirects, an upload `Location` on another host, a huge HTML error page), or a `sink` that only logs
/// what reaches it. Every request is logged with whether it carried an `Authorization` header.
///
/// ```swift
/// let sink = try HostileRegistry.start(.sink, address: "127.0.0.2", logDirectory: scratch.url)
/// let registry = try HostileRegistry.start(.realm, target: sink.url("/token"), logDirectory: scratch.url)
/// // … point a client at registry.host …
/// #expect(sink.requests().isEmpty)
/// ```
public final class HostileRegistry: Sendable {
    public enum Mode: String, Sendable {
        case realm, redirect, location, sink
        case errorPage = "error-page"
    }

    /// One request as the server logged it.
    public struct Request: Decodable, Sendable {
        public let method: String
        public let path: String
        public let host: String?
        public let authorization: Bool
    }

    public let process: ManagedProcess
    /// The loopback address it listens on.
    public let address: String
    public let port: Int
    public let isTLS: Bool

    private init(process: ManagedProcess, address: String, port: Int, isTLS: Bool) {
        self.process = process
        self.address = address
        self.port = port
        self.isTLS = isTLS
    }

    deinit { process.stop() }

    /// `ADDRESS:PORT`, the registry part of an image reference.
    public var host: String { "\(address):\(port)" }

    /// `http(s)://ADDRESS:PORT` + `path`.
    public func url(_ path: String) -> String { "\(isTLS ? "https" : "http")://\(host)\(path)" }

    /// Starts the server on `address` (a loopback address) and waits until it listens.
    public static func start(
        _ mode: Mode, address: String = "127.0.0.1", target: String = "", bodyBytes: Int = 200_000,
        tls: TestCertificates? = nil, logDirectory: URL
    ) throws -> HostileRegistry {
        let port = try Loopback.freePort()
        var arguments = [
            "-u", try TestEnvironmentScripts.path("hostile_registry.py"), "--host", address, "--port", "\(port)", "--mode",
            mode.rawValue, "--target", target, "--body-bytes", "\(bodyBytes)",
            "--parent-pid", "\(ProcessInfo.processInfo.processIdentifier)",
        ]
        if let tls { arguments += ["--tls-cert", tls.serverCertificate.path, "--tls-key", tls.serverKey.path] }
        let process = try ManagedProcess(
            name: "hostile-\(mode.rawValue)-\(port)", executable: "python3", arguments: arguments, logDirectory: logDirectory)
        let deadline = Date().addingTimeInterval(20)
        while !process.output().contains("\"listening\"") {
            guard process.isRunning, Date() < deadline else {
                process.stop()
                throw TestEnvironmentError("hostile_registry.py did not start on \(address):\(port):\n\(process.output())")
            }
            usleep(25_000)
        }
        return HostileRegistry(process: process, address: address, port: port, isTLS: tls != nil)
    }

    /// The requests that reached the server so far, oldest first.
    public func requests() -> [Request] {
        process.output().split(separator: "\n").compactMap { line in
            guard line.hasPrefix("{\"method\"") else { return nil }
            return try? JSONDecoder().decode(Request.self, from: Data(line.utf8))
        }
    }

    public func stop() { process.stop() }
}
