import Foundation

/// One TCP-level fault: which new connections it takes and what happens to their bytes.
///
/// ```swift
/// // Every third connection is cut after 20 kB; every byte waits 20 ms per chunk.
/// try proxy.setRules([TCPFaultRule(delay: 0.02, cutAfterBytes: 20_000, probability: 0.33)])
/// try proxy.setRules([TCPFaultRule(action: .blackhole)])  // a partition, open connections included
/// ```
public struct TCPFaultRule: Codable, Sendable, Equatable {
    public enum Action: String, Codable, Sendable {
        /// Relay the bytes, with `delay` and `cutAfterBytes` applied.
        case forward
        /// Reset the new connection at once (RST), relaying nothing.
        case refuse
        /// Accept and relay nothing either way; while such a rule is set, open connections stall too.
        case blackhole
    }

    /// Which bytes `delay` and `cutAfterBytes` count.
    public enum Direction: String, Codable, Sendable {
        /// Client to backend.
        case up
        /// Backend to client.
        case down
        case either
    }

    /// Apply to every matching connection.
    public static let forever = -1

    public var action: Action
    /// Seconds slept before each chunk relayed in `direction`.
    public var delay: Double?
    /// Reset both sides after this many bytes relayed in `direction`.
    public var cutAfterBytes: Int?
    public var direction: Direction
    /// The chance that the rule takes a given new connection (when it does not, the next rule is tried).
    public var probability: Double
    /// How many connections the rule takes; `TCPFaultRule.forever` for all of them.
    public var times: Int
    /// For a blackhole: the partition ends by itself as soon as a client closes a connection that has bytes held in
    /// it (it gave its request up), without waiting for the test to notice and clear the rules; what was held is
    /// relayed then. Nil or false: the partition lasts until the rules change.
    public var healsWhenAClientGivesUp: Bool?

    public init(
        action: Action = .forward, delay: Double? = nil, cutAfterBytes: Int? = nil, direction: Direction = .either,
        probability: Double = 1, times: Int = TCPFaultRule.forever, healsWhenAClientGivesUp: Bool? = nil
    ) {
        self.healsWhenAClientGivesUp = healsWhenAClientGivesUp
        self.action = action
        self.delay = delay
        self.cutAfterBytes = cutAfterBytes
        self.direction = direction
        self.probability = probability
        self.times = times
    }
}

/// `deploy/testenv/tcp_fault_proxy.py` on loopback in front of a loopback TCP service: relays bytes unchanged
/// (TLS passes through, so clients still verify the backend's certificate) except where a `TCPFaultRule` says
/// otherwise.
///
/// ```swift
/// let proxy = try TCPFaultProxy.start(backendPort: coordinatorPort)
/// defer { proxy.stop() }
/// // join agents to https://127.0.0.1:\(proxy.port) — the coordinator's certificate has SAN IP:127.0.0.1
/// try proxy.setRules([TCPFaultRule(cutAfterBytes: 4_096, probability: 0.2)])
/// print(proxy.connections().filter(\.cut).count)
/// ```
///
/// Every stored property is an immutable `let` of a `Sendable` type, so the class is `Sendable`.
public final class TCPFaultProxy: Sendable {
    /// One connection as the proxy logged it when it ended.
    public struct Connection: Decodable, Sendable, Equatable {
        public let connection: Int
        /// The index of the rule that took it; `nil` when none did.
        public let rule: Int?
        public let action: String
        /// Bytes relayed client to backend.
        public let up: Int
        /// Bytes relayed backend to client.
        public let down: Int
        /// Whether the proxy reset it after `cutAfterBytes`.
        public let cut: Bool
        /// Whether it was reset at once (a `refuse` rule, or the backend was not listening).
        public let refused: Bool
        public let seconds: Double
    }

    /// The port the proxy listens on, on 127.0.0.1.
    public let port: Int
    /// The backend's port on 127.0.0.1.
    public let backendPort: Int
    public let rulesFile: URL
    public let process: ManagedProcess
    /// The scratch directory holding the rules file and the log, removed on deallocation.
    public let directory: URL

    private init(port: Int, backendPort: Int, rulesFile: URL, process: ManagedProcess, directory: URL) {
        self.port = port
        self.backendPort = backendPort
        self.rulesFile = rulesFile
        self.process = process
        self.directory = directory
    }

    deinit {
        stop()
        if ProcessInfo.processInfo.environment["MANIFOLD_KEEP_TEST_DIRS"] == nil {
            try? FileManager.default.removeItem(at: directory)
        }
    }

    /// `127.0.0.1:PORT`.
    public var host: String { "127.0.0.1:\(port)" }

    /// Starts a proxy in front of 127.0.0.1:`backendPort` with no rules, and returns once it listens.
    public static func start(backendPort: Int) throws -> TCPFaultProxy {
        let scratch = try ScratchDirectory(prefix: "manifold-tcp-fault-proxy")
        do {
            do {
                return try launch(backendPort: backendPort, directory: scratch.url)
            } catch let error as TestEnvironmentError where error.description.lowercased().contains("address already in use") {
                return try launch(backendPort: backendPort, directory: scratch.url)
            }
        } catch {
            scratch.remove()
            throw error
        }
    }

    private static func launch(backendPort: Int, directory: URL) throws -> TCPFaultProxy {
        let port = try Loopback.freePort()
        let rulesFile = directory.appendingPathComponent("rules.json")
        try Data("[]".utf8).write(to: rulesFile, options: .atomic)
        let process = try ManagedProcess(
            name: "tcp-fault-proxy", executable: "python3",
            arguments: [
                "-u", try TestEnvironmentScripts.path("tcp_fault_proxy.py"), "--port", "\(port)", "--backend",
                "127.0.0.1:\(backendPort)", "--rules", rulesFile.path,
            ],
            logDirectory: directory)
        do {
            try PortOwnership.waitUntilListening(port: port, process: process)
        } catch {
            process.stop()
            throw error
        }
        return TCPFaultProxy(
            port: port, backendPort: backendPort, rulesFile: rulesFile, process: process, directory: directory)
    }

    /// Replaces the rules; the next connection sees them, and every rule's count starts over.
    public func setRules(_ rules: [TCPFaultRule]) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        try encoder.encode(rules).write(to: rulesFile, options: .atomic)
    }

    /// Removes every rule: from now on every byte is relayed at once.
    public func clearRules() throws {
        try setRules([])
    }

    /// The connections that have ended so far, oldest first.
    public func connections() -> [Connection] {
        let decoder = JSONDecoder()
        return process.output().split(separator: "\n").compactMap { line in
            guard line.hasPrefix("{\"connection\"") else { return nil }
            return try? decoder.decode(Connection.self, from: Data(line.utf8))
        }
    }

    public func stop() {
        process.stop()
    }
}
