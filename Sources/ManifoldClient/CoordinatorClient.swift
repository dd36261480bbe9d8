import Foundation
import Logging
import ManifoldAPI
import ManifoldCore
import ManifoldHTTP
import Synchronization

/// A typed client for the coordinator's `/api/v1`, shared by the agent and the CLI.
///
/// Every call sends `Authorization: Bearer TOKEN` (a user token or the agent's credential) and turns error
/// answers into `CoordinatorClientError.api`, whose description is the coordinator's one-sentence message.
///
/// ```swift
/// let client = CoordinatorClient(baseURL: URL(string: "https://ci.example.com:8443")!, token: secret,
///                                tls: TLSConfiguration(caFile: "/var/lib/manifold-agent/ca.crt"))
/// let build = try await client.build(id: "bld_7c1e2a…")
/// ```
///
/// With several URLs (replicas of one coordinator, reached directly rather than through a load balancer) the
/// client sends to one of them and moves on to the next when it cannot connect — the request never left, so it
/// is sent again at once — or when an answer says that replica cannot serve now (502, 503, 504) or the
/// connection failed mid-request; the caller's retry then reaches another replica.
public final class CoordinatorClient: Sendable {
    /// Every URL this coordinator answers at, in the order given.
    public let baseURLs: [URL]
    public let token: String?
    public let http: HTTPClient
    private let preferred = Mutex(0)

    /// The URL requests go to now.
    public var baseURL: URL { baseURLs[preferred.withLock { $0 }] }

    public convenience init(
        baseURL: URL, token: String?, tls: TLSConfiguration = .systemDefault, userAgent: String = "manifold",
        logger: Logger = Logger(label: "manifold.client")
    ) {
        self.init(baseURLs: [baseURL], token: token, tls: tls, userAgent: userAgent, logger: logger)
    }

    public init(
        baseURLs: [URL], token: String?, tls: TLSConfiguration = .systemDefault, userAgent: String = "manifold",
        logger: Logger = Logger(label: "manifold.client")
    ) {
        precondition(!baseURLs.isEmpty, "a coordinator client needs at least one URL")
        self.baseURLs = baseURLs
        self.token = token
        // Long polls and followed streams send nothing for up to ~30 s; the stall limit sits above that.
        self.http = HTTPClient(
            configuration: HTTPClientConfiguration(
                tls: tls, connectTimeout: .seconds(10), requestTimeout: .seconds(120), stallTimeout: .seconds(75),
                userAgent: userAgent),
            logger: logger)
    }

    deinit { http.shutdown() }

    /// The URL of `path` (which starts with `/`) with `query` appended, at `base` (the current URL by default).
    public func url(_ path: String, query: [(String, String)] = [], base: URL? = nil) -> URL {
        var components = URLComponents(url: base ?? baseURL, resolvingAgainstBaseURL: false)!
        let base = components.path.hasSuffix("/") ? String(components.path.dropLast()) : components.path
        components.percentEncodedPath = base + path
        if !query.isEmpty {
            components.queryItems = query.map { URLQueryItem(name: $0.0, value: $0.1) }
            // `+` is literal in URLComponents' encoding but a space to many servers.
            components.percentEncodedQuery = components.percentEncodedQuery?.replacingOccurrences(of: "+", with: "%2B")
        }
        return components.url!
    }

    /// Percent-encodes one path segment (build ids, digests, agent names).
    public static func segment(_ value: String) -> String {
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove(charactersIn: "/?#")
        return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value
    }

    func headers(json: Bool = false) -> HTTPHeaders {
        var headers: HTTPHeaders = ["Accept": "application/json"]
        if let token { headers.replaceOrAdd("Authorization", "Bearer \(token)") }
        if json { headers.replaceOrAdd("Content-Type", "application/json") }
        return headers
    }

    /// Sends a request and returns the raw response, throwing `CoordinatorClientError.api` for 4xx/5xx.
    public func send(
        _ method: String, _ path: String, query: [(String, String)] = [], headers extra: HTTPHeaders = [:],
        body: HTTPRequest.Body = .none, json: Bool = false, timeout: Duration? = nil, checksStalls: Bool = true
    ) async throws -> HTTPResponse {
        var headers = headers(json: json)
        for (name, value) in extra { headers.replaceOrAdd(name, value) }
        let headersToSend = headers
        let response = try await failingOver { base in
            let request = HTTPRequest(
                method: method, url: self.url(path, query: query, base: base), headers: headersToSend, body: body,
                timeout: timeout, checksStalls: checksStalls)
            return try await self.http.execute(request)
        } status: {
            $0.status
        }
        guard (200..<300).contains(response.status) else {
            throw CoordinatorClientError.from(status: response.status, body: response.body, headers: response.headers)
        }
        return response
    }

    /// Runs `attempt` against the current URL; when it cannot connect, against the next ones in turn. A failure
    /// mid-request or an answer of a replica that cannot serve now (502, 503, 504) moves the current URL on
    /// for the next call, and is returned as it is.
    func failingOver<Response>(
        _ attempt: (URL) async throws -> Response, status: (Response) -> Int
    ) async throws -> Response {
        let first = preferred.withLock { $0 }
        var index = first
        while true {
            do {
                let response = try await attempt(baseURLs[index])
                if [502, 503, 504].contains(status(response)) { moveOn(from: index) }
                return response
            } catch let error as HTTPClientError {
                moveOn(from: index)
                guard case .connect = error, baseURLs.count > 1, (index + 1) % baseURLs.count != first else {
                    throw CoordinatorClientError.transport(error)
                }
                index = (index + 1) % baseURLs.count
            }
        }
    }

    /// Makes the URL after `index` the current one, unless another call already moved on.
    private func moveOn(from index: Int) {
        guard baseURLs.count > 1 else { return }
        preferred.withLock { current in
            if current == index { current = (index + 1) % baseURLs.count }
        }
    }

    /// Sends `body` as JSON and decodes the JSON answer.
    public func call<Response: Decodable>(
        _ method: String, _ path: String, query: [(String, String)] = [], body: (some Encodable & Sendable)? = nil as Empty?,
        timeout: Duration? = nil, checksStalls: Bool = true, as type: Response.Type = Response.self
    ) async throws -> Response {
        let payload: HTTPRequest.Body = try body.map { .bytes(try APICoding.encoder().encode($0)) } ?? .none
        let response = try await send(
            method, path, query: query, body: payload, json: body != nil, timeout: timeout, checksStalls: checksStalls)
        do {
            return try APICoding.decoder().decode(Response.self, from: response.body)
        } catch {
            throw CoordinatorClientError.unexpectedAnswer(
                status: response.status, message: "the answer to \(method) \(path) is not the expected JSON: \(error)")
        }
    }

    /// Opens a streamed GET (Server-Sent Events, followed logs) with no total time limit.
    public func stream(
        _ path: String, query: [(String, String)] = [], headers extra: HTTPHeaders = [:]
    ) async throws
        -> HTTPStreamingResponse
    {
        var headers = headers()
        for (name, value) in extra { headers.replaceOrAdd(name, value) }
        let headersToSend = headers
        let response = try await failingOver { base in
            try await self.http.stream(
                HTTPRequest(url: self.url(path, query: query, base: base), headers: headersToSend, timeout: HTTPRequest.unlimited)
            )
        } status: {
            $0.status
        }
        guard (200..<300).contains(response.status) else {
            var body = Data()
            for try await chunk in response.body where body.count < 65_536 { body.append(chunk) }
            throw CoordinatorClientError.from(status: response.status, body: body, headers: response.headers)
        }
        return response
    }
}

/// An empty JSON body placeholder for calls without a request body.
public struct Empty: Codable, Sendable, Hashable {
    public init() {}
}

/// Why a coordinator call failed.
public enum CoordinatorClientError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The coordinator answered with an error status and (usually) a JSON error body.
    case api(status: Int, code: String, message: String, field: String?, retryAfter: Int?)
    /// No answer: connection refused, TLS failure, timeout.
    case transport(HTTPClientError)
    /// An answer that does not fit the protocol.
    case unexpectedAnswer(status: Int, message: String)

    /// Reads an error answer: the coordinator's JSON error body, or the first bytes of any other body.
    public static func from(status: Int, body: Data, headers: HTTPHeaders) -> CoordinatorClientError {
        let retryAfter = headers["Retry-After"].flatMap { Int($0) }
        if let decoded = try? APICoding.decoder().decode(ErrorResponse.self, from: body) {
            return .api(
                status: status, code: decoded.error.code, message: decoded.error.message, field: decoded.error.field,
                retryAfter: retryAfter)
        }
        let text = String(decoding: body.prefix(300), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return .api(
            status: status, code: "HTTP_\(status)", message: text.isEmpty ? "HTTP status \(status)" : text, field: nil,
            retryAfter: retryAfter)
    }

    public var description: String {
        switch self {
        case .api(let status, _, let message, let field, _):
            let sentence = message.hasSuffix(".") ? message : message + "."
            if let field, !message.contains(field) { return "\(sentence) (field \(field), HTTP \(status))" }
            return "\(sentence) (HTTP \(status))"
        case .transport(let error): return error.description
        case .unexpectedAnswer(_, let message): return message
        }
    }

    /// The HTTP status, for answers.
    public var status: Int? {
        switch self {
        case .api(let status, _, _, _, _), .unexpectedAnswer(let status, _): return status
        case .transport: return nil
        }
    }

    /// Whether the same call may succeed later: no answer at all, 5xx, 429 or 503 while the coordinator restarts.
    public var isRetryable: Bool {
        switch self {
        case .transport(let error): return error.isRetryable
        case .api(let status, _, _, _, _): return status >= 500 || status == 429 || status == 408
        case .unexpectedAnswer(let status, _): return status >= 500
        }
    }

    /// 409: the attempt was superseded (lease lost) or the report conflicts.
    public var isConflict: Bool { status == 409 }
}
