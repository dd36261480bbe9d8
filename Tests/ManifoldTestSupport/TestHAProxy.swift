import Foundation

/// Debian's HAProxy on a free loopback port, passing TCP through to coordinator replicas, as a team would run it
/// in front of them: round robin, a replica taken out within a second of no longer accepting connections, and a
/// connection to a dead replica sent to another one.
///
/// ```swift
/// let proxy = try TestHAProxy.start(backends: [7001, 7002, 7003], logDirectory: scratch.url)
/// defer { proxy.stop() }
/// // clients use https://127.0.0.1:\(proxy.port)
/// ```
public final class TestHAProxy: Sendable {
    public let process: ManagedProcess
    public let port: Int
    public let configuration: URL

    private init(process: ManagedProcess, port: Int, configuration: URL) {
        self.process = process
        self.port = port
        self.configuration = configuration
    }

    public static func start(backends: [Int], logDirectory: URL, name: String = "haproxy") throws -> TestHAProxy {
        let port = try Loopback.freePort()
        let servers = backends.enumerated().map { index, backend in
            // Checked every 300 ms, out after two failed connects, back after one; sessions to a replica marked
            // down are cut so their clients reconnect elsewhere at once.
            "    server replica\(index + 1) 127.0.0.1:\(backend) check inter 300ms fall 2 rise 1 on-marked-down shutdown-sessions"
        }
        let text =
            ([
                "global",
                "    maxconn 8192",
                // Fixed socket buffers towards clients and replicas, as the kernel would otherwise grow them to
                // megabytes: a replica killed while a transfer is under way must leave some of it unsent.
                "    tune.rcvbuf.server 65536",
                "    tune.sndbuf.client 65536",
                "defaults",
                "    mode tcp",
                "    timeout connect 2s",
                // Held polls and event streams stay open for minutes without a byte.
                "    timeout client 10m",
                "    timeout server 10m",
                "    retries 3",
                "    option redispatch",
                "frontend coordinators",
                "    bind 127.0.0.1:\(port)",
                "    default_backend replicas",
                "backend replicas",
                "    balance roundrobin",
            ] + servers).joined(separator: "\n") + "\n"
        let configuration = logDirectory.appendingPathComponent("\(name)-\(port).cfg")
        try text.write(to: configuration, atomically: true, encoding: .utf8)
        let check = try runCommand("haproxy", ["-c", "-q", "-f", configuration.path], timeout: 60)
        guard check.status == 0 else {
            throw TestEnvironmentError("haproxy refused its configuration \(configuration.path):\n\(text)")
        }
        // -db: stay in the foreground, so the test owns the process.
        let process = try ManagedProcess(
            name: "\(name)-\(port)", executable: "haproxy", arguments: ["-db", "-f", configuration.path],
            logDirectory: logDirectory)
        try Loopback.waitUntilListening(port: port, process: process)
        return TestHAProxy(process: process, port: port, configuration: configuration)
    }

    public func stop() { process.stop() }
}
