import Foundation

/// One HTTP request: method, URL, header fields and an optional body.
///
/// ```swift
/// let request = HTTPRequest(method: "PUT", url: uploadURL, headers: ["Content-Type": "application/octet-stream"],
///                           body: .file(path: "/tmp/layer.tar.gz", offset: 0, length: 4096))
/// ```
public struct HTTPRequest: Sendable {
    /// Where the request's body comes from.
    public enum Body: Sendable {
        case none
        case bytes(Data)
        /// A region of a file, read while the request is sent; `length` nil means to the end of the file.
        case file(path: String, offset: Int64 = 0, length: Int64? = nil)
    }

    /// The method sent exactly as given: "GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", …
    public var method: String
    public var url: URL
    public var headers: HTTPHeaders
    public var body: Body
    /// The total time allowed for the request (each redirect hop); nil uses the client's `requestTimeout`,
    /// and `HTTPRequest.unlimited` sets no total limit at all, for blob transfers and long-lived streams
    /// whose length depends on their size. The client's `stallTimeout` still applies either way.
    public var timeout: Duration?
    /// Checks the URL before the first connection and before each redirect hop, and pins connections to the
    /// addresses it checked; nil contacts whatever the URL and its redirects name.
    public var destinationPolicy: DestinationPolicy?
    /// Whether the client's `stallTimeout` applies. False for a request that is silent by design until it is answered
    /// (a held long poll): its total `timeout` bounds it instead, and libcurl need not wake every second to measure a
    /// speed of zero. Ignored, stalls checked, when `timeout` is `unlimited`: some bound always applies.
    public var checksStalls: Bool

    /// A `timeout` meaning "no total limit": the request runs as long as data keeps moving
    /// (see `HTTPClientConfiguration.stallTimeout`).
    ///
    /// ```swift
    /// let download = HTTPRequest(url: blobURL, timeout: HTTPRequest.unlimited)
    /// ```
    public static let unlimited: Duration = .zero

    public init(
        method: String = "GET", url: URL, headers: HTTPHeaders = [:], body: Body = .none, timeout: Duration? = nil,
        destinationPolicy: DestinationPolicy? = nil, checksStalls: Bool = true
    ) {
        self.destinationPolicy = destinationPolicy
        self.checksStalls = checksStalls
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
    }
}

/// The HTTP version a response was received with.
// The names follow the HTTP versions (and the API colleagues code against).
// swift-format-ignore: AlwaysUseLowerCamelCase
public enum HTTPVersion: Sendable, Hashable {
    case http1_0, http1_1, http2, http3
}

/// A complete response whose body was read into memory.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: Data
    /// The final URL, after redirects.
    public var url: URL
    public var httpVersion: HTTPVersion

    public init(status: Int, headers: HTTPHeaders, body: Data, url: URL, httpVersion: HTTPVersion) {
        self.status = status
        self.headers = headers
        self.body = body
        self.url = url
        self.httpVersion = httpVersion
    }
}

/// A response returned as soon as its header fields arrived; the body follows as a stream.
///
/// The stream ends when the transfer completes. Cancelling the consuming task, or dropping the
/// stream without reading it to the end, aborts the transfer. While the consumer is slow the
/// transfer is paused, so at most about a megabyte is buffered.
public struct HTTPStreamingResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    /// The final URL, after redirects.
    public var url: URL
    public var httpVersion: HTTPVersion
    public var body: HTTPBodyStream

    public init(status: Int, headers: HTTPHeaders, url: URL, httpVersion: HTTPVersion, body: HTTPBodyStream) {
        self.status = status
        self.headers = headers
        self.url = url
        self.httpVersion = httpVersion
        self.body = body
    }
}

/// The body of a streamed response, chunk by chunk as it arrives.
///
/// A consumer whose task is cancelled gets `HTTPClientError.cancelled` from its next read, also when it was
/// cancelled between two reads: a body cut short never looks like a body that ended. (`AsyncThrowingStream`'s
/// unfolding form ends normally instead when its task is already cancelled.) After the end or an error, reads
/// return nil.
///
/// ```swift
/// let response = try await client.stream(HTTPRequest(url: url))
/// for try await chunk in response.body { handle(chunk) }
/// ```
public struct HTTPBodyStream: AsyncSequence, Sendable {
    public typealias Element = Data
    private let read: @Sendable () async throws -> Data?

    /// A stream whose chunks come from `read`, which returns nil at the end.
    public init(_ read: @escaping @Sendable () async throws -> Data?) {
        self.read = read
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let read: @Sendable () async throws -> Data?
        var finished = false

        public mutating func next() async throws -> Data? {
            guard !finished else { return nil }
            do {
                guard let chunk = try await read() else {
                    finished = true
                    return nil
                }
                return chunk
            } catch {
                finished = true
                throw error
            }
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(read: read) }
}
