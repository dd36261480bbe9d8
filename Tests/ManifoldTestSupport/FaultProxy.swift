import Foundation

/// One fault the proxy injects: the first `times` requests matching `method` and `pathRegex` get
/// `status` (or a connection reset) instead of reaching the registry.
///
/// ```swift
/// try proxy.setRules([FaultRule(method: "PUT", pathRegex: "/manifests/", status: 500, retryAfter: "1")])
/// ```
public struct FaultRule: Codable, Sendable, Equatable {
    /// Apply to every matching request, not just the first few.
    public static let forever = -1

    /// HTTP method, `nil` for any.
    public var method: String?
    /// A Python regular expression searched in the path including the query string; `nil` for any.
    public var pathRegex: String?
    /// The status to answer with. `nil` forwards the request (after `delay`) unless `reset` is set.
    public var status: Int?
    /// How many matching requests the rule applies to; `FaultRule.forever` for all of them.
    public var times: Int
    /// A `Retry-After` header value for the fault response.
    public var retryAfter: String?
    /// Seconds to wait before faulting or forwarding.
    public var delay: Double?
    /// Close the connection without answering.
    public var reset: Bool?
    /// The fault response body; default a registry-style JSON error.
    public var body: String?
    /// Extra headers of the fault response.
    public var headers: [String: String]?
    /// Apply only to requests without this header, e.g. `Authorization` to challenge unauthenticated requests and
    /// forward the others.
    public var absentHeader: String?
    /// For a request the rule forwards: a `Location` in the answer is moved to this `scheme://host:port` instead of
    /// the proxy's own (an upload location on another host).
    public var locationBase: String?

    /// A registry's error document (`{"errors": [...]}`, as the distribution spec has it) holding one error, for
    /// `body`.
    public static func registryError(_ code: String, _ message: String) -> String {
        #"{"errors": [{"code": "\#(code)", "message": "\#(message)", "detail": null}]}"#
    }

    public init(
        method: String? = nil, pathRegex: String? = nil, status: Int? = nil, times: Int = 1, retryAfter: String? = nil,
        delay: Double? = nil, reset: Bool = false, body: String? = nil, headers: [String: String]? = nil,
        absentHeader: String? = nil, locationBase: String? = nil
    ) {
        self.method = method
        self.pathRegex = pathRegex
        self.status = status
        self.times = times
        self.retryAfter = retryAfter
        self.delay = delay
        self.reset = reset ? true : nil
        self.body = body
        self.headers = headers
        self.absentHeader = absentHeader
        self.locationBase = locationBase
    }
}

/// `deploy/testenv/fault_proxy.py` on loopback in front of a plain-HTTP registry: forwards every
/// request (rewriting `Location` to its own address) except those a `FaultRule` catches.
///
/// ```swift
/// let registry = try TestRegistry.start(.http)
/// let proxy = try registry.withFaultProxy()
/// try proxy.setRules([FaultRule(method: "PUT", pathRegex: "/manifests/", status: 503)])
/// // point the client at proxy.host; then inspect proxy.requestLog()
/// ```
///
/// Every stored property is an immutable `let` of a `Sendable` type, so the class is `Sendable`.
/// Rules are written atomically to a file the proxy re-reads on every request.
public final class FaultProxy: Sendable {
    /// One request as the proxy logged it.
    public struct Request: Decodable, Sendable, Equatable {
        public let method: String
        /// Path and query string.
        public let path: String
        /// The status the client got; 0 for a reset connection.
        public let status: Int
        /// Whether the proxy answered instead of the registry.
        public let injected: Bool
        /// Whether the request carried an `Authorization` header (never its value).
        public let authorization: Bool?
    }

    /// `127.0.0.1:PORT`, the registry part of image references that go through the proxy.
    public let host: String
    /// `http://127.0.0.1:PORT`.
    public let baseURL: URL
    /// The registry behind the proxy.
    public let backend: URL
    /// The JSON rules file; `setRules` rewrites it.
    public let rulesFile: URL
    public let process: ManagedProcess
    /// The scratch directory holding the rules file and the log, removed on deallocation.
    public let directory: URL

    private init(port: Int, backend: URL, rulesFile: URL, process: ManagedProcess, directory: URL) {
        self.host = "127.0.0.1:\(port)"
        self.baseURL = URL(string: "http://127.0.0.1:\(port)")!
        self.backend = backend
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

    /// Starts a proxy in front of `backend` (an `http://127.0.0.1:PORT` or `http://[::1]:PORT` URL)
    /// with no rules, and returns once it listens.
    public static func start(backend: URL) throws -> FaultProxy {
        guard backend.scheme == "http", let backendHost = backend.host,
            ["127.0.0.1", "::1", "[::1]", "localhost"].contains(backendHost)
        else {
            throw TestEnvironmentError("the fault proxy only fronts plain-HTTP loopback registries, not \(backend)")
        }
        let scratch = try ScratchDirectory(prefix: "manifold-fault-proxy")
        do {
            do {
                return try launch(backend: backend, directory: scratch.url)
            } catch let error as TestEnvironmentError where error.description.lowercased().contains("address already in use") {
                return try launch(backend: backend, directory: scratch.url)
            }
        } catch {
            scratch.remove()
            throw error
        }
    }

    private static func launch(backend: URL, directory: URL) throws -> FaultProxy {
        let port = try Loopback.freePort()
        let rulesFile = directory.appendingPathComponent("rules.json")
        try Data("[]".utf8).write(to: rulesFile, options: .atomic)
        let process = try ManagedProcess(
            name: "fault-proxy", executable: "python3",
            arguments: [
                "-u", try TestEnvironmentScripts.path("fault_proxy.py"), "--port", "\(port)", "--backend",
                backend.absoluteString, "--rules", rulesFile.path,
            ],
            logDirectory: directory)
        do {
            try PortOwnership.waitUntilListening(port: port, process: process)
        } catch {
            process.stop()
            throw error
        }
        return FaultProxy(port: port, backend: backend, rulesFile: rulesFile, process: process, directory: directory)
    }

    /// Replaces the rules; the next request sees them, and every rule's count starts over.
    public func setRules(_ rules: [FaultRule]) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        try encoder.encode(rules).write(to: rulesFile, options: .atomic)
    }

    /// Removes every rule: from now on everything is forwarded.
    public func clearRules() throws {
        try setRules([])
    }

    /// The requests the proxy has answered so far, oldest first.
    public func requestLog() -> [Request] {
        let decoder = JSONDecoder()
        return process.output().split(separator: "\n").compactMap { line in
            guard line.hasPrefix("{\"method\"") else { return nil }
            return try? decoder.decode(Request.self, from: Data(line.utf8))
        }
    }

    public func stop() {
        process.stop()
    }
}

extension TestRegistry {
    /// A `FaultProxy` in front of this registry, which must be in `http` mode.
    public func withFaultProxy() throws -> FaultProxy {
        guard mode == .http else {
            throw TestEnvironmentError("the fault proxy fronts only an http-mode registry; this one is \(mode.rawValue)")
        }
        return try FaultProxy.start(backend: baseURL)
    }
}
