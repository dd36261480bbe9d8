import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldHTTP

/// The agent protocol (`/api/v1/agent/...`). `join` uses a join token; every other call the agent's secret.
extension CoordinatorClient {
    public func join(_ request: JoinRequest) async throws -> JoinResponse {
        try await call("POST", "/api/v1/agent/join", body: request)
    }

    /// Holds until a job is leased (or the coordinator's poll window, ~30 s, passes with none: `lease` nil). Nothing is
    /// sent meanwhile, so the request is bounded by its 90 s total rather than by the client's stall check.
    public func poll(_ request: PollRequest) async throws -> PollResponse {
        try await call("POST", "/api/v1/agent/poll", body: request, timeout: .seconds(90), checksStalls: false)
    }

    /// Renews a lease. `timeout` bounds this one request (agents pass about a third of the lease TTL, so one
    /// stuck request cannot outlast the lease); nil means the client's default.
    public func heartbeat(_ request: HeartbeatRequest, timeout: Duration? = nil) async throws -> HeartbeatResponse {
        try await call("POST", "/api/v1/agent/heartbeat", body: request, timeout: timeout)
    }

    /// The outcome of appending a log chunk.
    public enum LogAppendOutcome: Sendable, Hashable {
        /// The coordinator now holds `size` bytes.
        case stored(size: Int64)
        /// The chunk started past the coordinator's end: resend from `size`.
        case gap(size: Int64)
    }

    /// Appends `data` at byte `offset` of the attempt's log. A repeated or overlapping chunk is harmless.
    public func appendLog(jobId: String, epoch: Int64, offset: Int64, data: Data) async throws -> LogAppendOutcome {
        do {
            let response = try await send(
                "PUT", "/api/v1/agent/jobs/\(Self.segment(jobId))/logs",
                query: [("epoch", "\(epoch)"), ("offset", "\(offset)")],
                headers: ["Content-Type": "application/octet-stream"], body: .bytes(data))
            return .stored(size: try APICoding.decoder().decode(LogAppendResponse.self, from: response.body).size)
        } catch CoordinatorClientError.api(status: 416, _, let message, _, _) {
            // The 416 body is a LogAppendResponse; `send` kept only its text.
            if let size = try? APICoding.decoder().decode(LogAppendResponse.self, from: Data(message.utf8)).size {
                return .gap(size: size)
            }
            throw CoordinatorClientError.unexpectedAnswer(status: 416, message: "a log gap answer without a size: \(message)")
        }
    }

    /// Tells the coordinator the attempt's log is complete at `size` bytes, so followers of the log can end; a
    /// `.gap` answer means the coordinator has fewer bytes (send them, then close again).
    public func closeLog(jobId: String, epoch: Int64, size: Int64) async throws -> LogAppendOutcome {
        do {
            let response = try await send(
                "PUT", "/api/v1/agent/jobs/\(Self.segment(jobId))/logs",
                query: [("epoch", "\(epoch)"), ("offset", "\(size)"), ("final", "true")],
                headers: ["Content-Type": "application/octet-stream"], body: .bytes(Data()))
            return .stored(size: try APICoding.decoder().decode(LogAppendResponse.self, from: response.body).size)
        } catch CoordinatorClientError.api(status: 416, _, let message, _, _) {
            if let size = try? APICoding.decoder().decode(LogAppendResponse.self, from: Data(message.utf8)).size {
                return .gap(size: size)
            }
            throw CoordinatorClientError.unexpectedAnswer(status: 416, message: "a log gap answer without a size: \(message)")
        }
    }

    public func complete(_ request: CompleteRequest) async throws -> CompleteResponse {
        try await call("POST", "/api/v1/agent/complete", body: request)
    }

    public func leave() async throws {
        _ = try await send("POST", "/api/v1/agent/leave")
    }

    /// Downloads a build context (`tar.gz`) to `file`; the caller verifies its digest.
    public func downloadContext(_ digest: Digest, to file: URL) async throws {
        let request = HTTPRequest(
            url: url("/api/v1/contexts/\(Self.segment(digest.description))"), headers: headers(),
            timeout: HTTPRequest.unlimited)
        let response: HTTPResponse
        do {
            response = try await http.download(request, to: file)
        } catch let error as HTTPClientError {
            throw CoordinatorClientError.transport(error)
        }
        guard (200..<300).contains(response.status) else {
            // An error's body is kept in memory, never written to the file.
            try? FileManager.default.removeItem(at: file)
            throw CoordinatorClientError.from(
                status: response.status, body: response.body.prefix(65_536), headers: response.headers)
        }
    }

    /// The coordinator's CA certificate (PEM), served without authentication so an agent can pin it at join.
    public func caCertificate() async throws -> Data {
        try await send("GET", "/api/v1/ca.crt").body
    }
}
