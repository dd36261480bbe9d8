import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldHTTP

/// The users' API: builds, contexts, events, logs, agents and tokens.
extension CoordinatorClient {
    public func submit(_ spec: BuildSpec) async throws -> BuildView {
        try await call("POST", "/api/v1/builds", body: spec)
    }

    public func build(id: String) async throws -> BuildView {
        try await call("GET", "/api/v1/builds/\(Self.segment(id))")
    }

    public func builds(
        state: BuildState? = nil, image: String? = nil, before: String? = nil, limit: Int? = nil
    )
        async throws -> BuildList
    {
        var query: [(String, String)] = []
        if let state { query.append(("state", state.rawValue)) }
        if let image { query.append(("image", image)) }
        if let before { query.append(("before", before)) }
        if let limit { query.append(("limit", "\(limit)")) }
        return try await call("GET", "/api/v1/builds", query: query)
    }

    public func cancel(buildId: String) async throws -> BuildView {
        try await call("POST", "/api/v1/builds/\(Self.segment(buildId))/cancel")
    }

    /// Runs one platform of a build again; `secrets` gives a finished build's secrets again (they were erased).
    public func retry(buildId: String, platform: String, secrets: [String: String]? = nil) async throws -> BuildView {
        try await call(
            "POST", "/api/v1/builds/\(Self.segment(buildId))/retry", body: RetryRequest(platform: platform, secrets: secrets))
    }

    /// Whether the coordinator already holds the context with this digest.
    public func hasContext(_ digest: Digest) async throws -> Bool {
        do {
            _ = try await send("HEAD", "/api/v1/contexts/\(Self.segment(digest.description))")
            return true
        } catch CoordinatorClientError.api(status: 404, _, _, _, _) {
            return false
        }
    }

    /// Uploads a `tar.gz` context file; the coordinator checks it against `digest`.
    public func uploadContext(_ digest: Digest, file: String) async throws -> ContextUploadResponse {
        let response = try await send(
            "PUT", "/api/v1/contexts/\(Self.segment(digest.description))",
            headers: ["Content-Type": "application/gzip"], body: .file(path: file), timeout: HTTPRequest.unlimited)
        return try APICoding.decoder().decode(ContextUploadResponse.self, from: response.body)
    }

    /// The build's events from `after` on, as they happen; the stream ends when the build is final and every
    /// event was sent, or throws when the connection drops (resume with the last event's id).
    public func events(buildId: String, after: Int64 = 0) async throws -> AsyncThrowingStream<BuildEvent, any Error> {
        let response = try await stream(
            "/api/v1/builds/\(Self.segment(buildId))/events", headers: after > 0 ? ["Last-Event-ID": "\(after)"] : [:])
        return AsyncThrowingStream { continuation in
            let task = Task {
                var parser = ServerSentEventParser()
                do {
                    for try await chunk in response.body {
                        for message in parser.feed(chunk) {
                            let event = try APICoding.decoder().decode(BuildEvent.self, from: Data(message.data.utf8))
                            continuation.yield(event)
                        }
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// One attempt's log (the latest unless `attempt` is given) from byte `offset`.
    public func log(buildId: String, platform: String, attempt: Int? = nil, offset: Int64 = 0) async throws -> Data {
        try await send("GET", "/api/v1/builds/\(Self.segment(buildId))/logs", query: logQuery(platform, attempt, offset))
            .body
    }

    /// Follows an attempt's log as it grows; the stream ends when the attempt has finished.
    public func followLog(
        buildId: String, platform: String, attempt: Int? = nil, offset: Int64 = 0
    ) async throws
        -> HTTPBodyStream
    {
        try await stream(
            "/api/v1/builds/\(Self.segment(buildId))/logs", query: logQuery(platform, attempt, offset) + [("follow", "true")]
        ).body
    }

    private func logQuery(_ platform: String, _ attempt: Int?, _ offset: Int64) -> [(String, String)] {
        var query = [("platform", platform)]
        if let attempt { query.append(("attempt", "\(attempt)")) }
        if offset > 0 { query.append(("offset", "\(offset)")) }
        return query
    }

    public func agents() async throws -> [AgentView] {
        try await call("GET", "/api/v1/agents")
    }

    public func setAgentState(name: String, _ state: AgentState) async throws -> AgentView {
        try await call("POST", "/api/v1/agents/\(Self.segment(name))/state", body: AgentStateRequest(state: state))
    }

    /// Removes an agent (admin): its credential is revoked and its running job re-queued.
    public func removeAgent(name: String) async throws -> AgentView {
        try await call("DELETE", "/api/v1/agents/\(Self.segment(name))")
    }

    /// Creates a token (admin). A join token joins agents into `pool` (default `default`), expires after 24 h
    /// and joins one agent unless `expiresInSeconds` and `uses` say otherwise; `repositories` limit a submitter or
    /// viewer to those repository patterns.
    public func createToken(
        name: String, role: Role, pool: String? = nil, expiresInSeconds: Int? = nil, uses: Int? = nil,
        repositories: [String]? = nil
    ) async throws -> CreatedToken {
        try await call(
            "POST", "/api/v1/tokens",
            body: CreateTokenRequest(
                name: name, role: role, pool: pool, expiresInSeconds: expiresInSeconds, uses: uses, repositories: repositories))
    }

    public func pools() async throws -> [PoolView] {
        try await call("GET", "/api/v1/pools")
    }

    public func createPool(_ request: CreatePoolRequest) async throws -> PoolView {
        try await call("POST", "/api/v1/pools", body: request)
    }

    /// Removes a pool (admin); refused while agents or working join tokens use it.
    public func removePool(name: String) async throws {
        _ = try await send("DELETE", "/api/v1/pools/\(Self.segment(name))")
    }

    public func tokens() async throws -> [TokenView] {
        try await call("GET", "/api/v1/tokens")
    }

    public func revokeToken(id: String) async throws {
        _ = try await send("DELETE", "/api/v1/tokens/\(Self.segment(id))")
    }
}

/// Splits a `text/event-stream` body into messages (`id`, `event`, `data`), ignoring comments.
public struct ServerSentEventParser: Sendable {
    public struct Message: Sendable, Hashable {
        public var id: String?
        public var event: String?
        public var data: String

        public init(id: String?, event: String?, data: String) {
            self.id = id
            self.event = event
            self.data = data
        }
    }

    private var buffer = Data()
    public init() {}

    /// Feeds bytes; returns the messages completed by them.
    public mutating func feed(_ bytes: Data) -> [Message] {
        buffer.append(bytes)
        var messages: [Message] = []
        while let end = Self.blankLine(in: buffer) {
            let block = String(decoding: buffer[buffer.startIndex..<end.lowerBound], as: UTF8.self)
            buffer.removeSubrange(buffer.startIndex..<end.upperBound)
            var message = Message(id: nil, event: nil, data: "")
            var dataLines: [String] = []
            let lines = block.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
            for line in lines.split(separator: "\n", omittingEmptySubsequences: false) {
                if line.isEmpty || line.hasPrefix(":") { continue }
                let (field, value) = Self.split(line)
                switch field {
                case "id": message.id = value
                case "event": message.event = value
                case "data": dataLines.append(value)
                default: continue
                }
            }
            guard !dataLines.isEmpty else { continue }
            message.data = dataLines.joined(separator: "\n")
            messages.append(message)
        }
        return messages
    }

    private static func split(_ line: Substring) -> (String, String) {
        guard let colon = line.firstIndex(of: ":") else { return (String(line), "") }
        var value = line[line.index(after: colon)...]
        if value.first == " " { value = value.dropFirst() }
        return (String(line[..<colon]), String(value))
    }

    private static func blankLine(in data: Data) -> Range<Data.Index>? {
        let lf = UInt8(ascii: "\n")
        var index = data.startIndex
        while index < data.endIndex {
            if data[index] == lf {
                let next = data.index(after: index)
                if next < data.endIndex, data[next] == lf { return index..<data.index(after: next) }
                if next < data.endIndex, data[next] == UInt8(ascii: "\r"), data.index(after: next) < data.endIndex,
                    data[data.index(after: next)] == lf
                {
                    return index..<data.index(next, offsetBy: 2)
                }
            }
            index = data.index(after: index)
        }
        return nil
    }
}
