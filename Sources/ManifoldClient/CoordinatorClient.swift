import Foundation
import Logging
import ManifoldAPI
import ManifoldCore
import ManifoldHTTP

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
public final class CoordinatorClient: Sendable {
    public let baseURL: URL
    public let token: String?
    public let http: HTTPClient

    public init(
        baseURL: URL, token: String?, tls: TLSConfiguration = .systemDefault, userAgent: String = "manifold",
        logger: Logger = Logger(label: "manifold.client")
    ) {
        self.baseURL = baseURL
        self.token = token
        // Long polls and followed streams send nothing for up to ~30 s; the stall limit sits above that.
        self.http = HTTPClient(
            configuration: HTTPClientConfiguration(
                tls: tls, connectTimeout: .seconds(10), requestTimeout: .seconds(120), stallTimeout: .seconds(75),
                userAgent: userAgent),
            logger: logger)
    }

    deinit { http.shutdown() }

    /// The URL of `path` (which starts with `/`) with `query` appended.
    public func url(_ path: String, query: [(String, String)] = []) -> URL {
        var components = URLComponents(url: baseURL, resolvingAgainstBaseURL: false)!
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
        body: HTTPRequest.Body = .none, json: Bool = false, timeout: Duration? = nil
    ) async throws -> HTTPResponse {
        var headers = headers(json: json)
        for (name, value) in extra { headers.replaceOrAdd(name, value) }
        let request = HTTPRequest(method: method, url: url(path, query: query), headers: headers, body: body, timeout: timeout)
        let response: HTTPResponse
        do {
            response = try await http.execute(request)
        } catch let error as HTTPClientError {
            throw CoordinatorClientError.transport(error)
        }
        guard (200..<300).contains(response.status) else {
            throw CoordinatorClientError.from(status: response.status, body: response.body, headers: response.headers)
        }
        return response
    }

    /// Sends `body` as JSON and decodes the JSON answer.
    public func call<Response: Decodable>(
        _ method: String, _ path: String, query: [(String, String)] = [], body: (some Encodable & Sendable)? = nil as Empty?,
        timeout: Duration? = nil, as type: Response.Type = Response.self
    ) async throws -> Response {
        let payload: HTTPRequest.Body = try body.map { .bytes(try APICoding.encoder().encode($0)) } ?? .none
        let response = try await send(method, path, query: query, body: payload, json: body != nil, timeout: timeout)
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
        let request = HTTPRequest(url: url(path, query: query), headers: headers, timeout: HTTPRequest.unlimited)
        let response: HTTPStreamingResponse
        do {
            response = try await http.stream(request)
        } catch let error as HTTPClientError {
            throw CoordinatorClientError.transport(error)
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
