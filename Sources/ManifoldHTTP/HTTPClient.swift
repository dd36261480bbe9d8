import Foundation
import Logging

/// An asynchronous HTTP/1.1 and HTTP/2 client built on libcurl.
///
/// Each client owns one `curl_multi` handle driven by one dedicated thread, so connections are
/// reused across requests and no blocking call runs on the Swift concurrency pool. Redirects are
/// followed here rather than by libcurl, so that credentials never leave the origin they were meant for.
///
/// ```swift
/// let client = HTTPClient(configuration: .init(tls: .init(caFile: "/etc/docker/certs.d/reg:5000/ca.crt")))
/// defer { client.shutdown() }
/// let response = try await client.execute(HTTPRequest(url: URL(string: "https://reg:5000/v2/")!))
/// ```
///
/// The process's exit stops every client's thread and waits for it before libcurl's TLS library cleans up, so a
/// program may exit with clients still open; `shutdownAndWait()` does the same for one client at a chosen time.
public final class HTTPClient: Sendable {
    static let redirectStatuses: Set<Int> = [301, 302, 303, 307, 308]

    public let configuration: HTTPClientConfiguration
    private let logger: Logger
    let loop: CurlEventLoop

    public init(configuration: HTTPClientConfiguration = .init(), logger: Logger = Logger(label: "manifold.http")) {
        self.configuration = configuration
        self.logger = logger
        self.loop = CurlEventLoop(logger: logger, caBundle: configuration.tls.caPEM.flatMap(CABundleFile.make(pem:)))
    }

    deinit {
        loop.shutdown()
    }

    /// Sends the request, follows redirects and returns the response with its whole body in memory
    /// (at most `configuration.maxResponseBodySize` bytes).
    public func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
        let outcome = try await perform(request, sink: .collect(limit: configuration.maxResponseBodySize))
        return HTTPResponse(
            status: outcome.head.status, headers: outcome.head.headers, body: outcome.body, url: outcome.head.url,
            httpVersion: outcome.head.httpVersion)
    }

    /// Sends the request, follows redirects and returns as soon as the final response's header fields arrive.
    ///
    /// The body stream applies backpressure: the transfer pauses while about a megabyte waits unread.
    /// Cancelling the consuming task or dropping the stream aborts the transfer.
    public func stream(_ request: HTTPRequest) async throws -> HTTPStreamingResponse {
        let (outcome, transfer) = try await performReturningTransfer(request, sink: .stream)
        let reader = StreamReader(transfer: transfer, client: self)
        let body = HTTPBodyStream { try await reader.next() }
        return HTTPStreamingResponse(
            status: outcome.head.status, headers: outcome.head.headers, url: outcome.head.url,
            httpVersion: outcome.head.httpVersion, body: body)
    }

    /// Like `execute`, but writes a 2xx body to `file` (created or truncated) and returns an empty body.
    ///
    /// The body of any other status (an error document) is returned in memory instead, up to a megabyte,
    /// and `file` is left empty. A body longer than `maxBodySize` fails with `responseTooLarge` once the limit
    /// is passed (what arrived stays in `file`).
    ///
    /// The file is not synced to disk: every download is scratch (a context about to be unpacked, a blob about to be
    /// uploaded), and an fsync of a large file would hold a concurrency pool thread for as long as the disk takes. A
    /// caller that keeps the file syncs it itself.
    public func download(_ request: HTTPRequest, to file: URL, maxBodySize: Int64? = nil) async throws -> HTTPResponse {
        guard FileManager.default.createFile(atPath: file.path, contents: nil),
            let handle = try? FileHandle(forWritingTo: file)
        else {
            throw HTTPClientError.invalidRequest("cannot create \(file.path) to download \(URLRedaction.display(request.url))")
        }
        defer { try? handle.close() }
        let outcome = try await perform(request, sink: .file(handle, limit: maxBodySize))
        return HTTPResponse(
            status: outcome.head.status, headers: outcome.head.headers, body: outcome.body, url: outcome.head.url,
            httpVersion: outcome.head.httpVersion)
    }

    /// Aborts in-flight transfers with `HTTPClientError.shutDown` and stops the client's thread, without waiting
    /// for it. Later requests fail with `.shutDown`. Also done when the client is released.
    public func shutdown() {
        loop.shutdown()
    }

    /// Like `shutdown()`, and returns once the client's thread has finished with libcurl: every transfer has
    /// ended, every connection is closed. The wait suspends the caller and blocks no thread.
    public func shutdownAndWait() async {
        loop.shutdown()
        await loop.waitUntilStopped()
    }

    /// How many transfers are running on this client's thread right now.
    var inFlightTransfers: Int { loop.inFlightTransfers }

    /// How many times a paused stream was resumed after its consumer caught up.
    var streamResumptions: Int { loop.streamResumptions }

    /// How many times the transfer thread woke from its wait (for tests of idle behaviour).
    var loopWakeups: Int { loop.wakeups }

    // MARK: Redirects

    private func perform(_ request: HTTPRequest, sink: BodySink) async throws -> TransferOutcome {
        try await performReturningTransfer(request, sink: sink).0
    }

    private func performReturningTransfer(
        _ original: HTTPRequest, sink: BodySink
    ) async throws -> (TransferOutcome, CurlTransfer) {
        var request = original
        var redirects = 0
        while true {
            if Task.isCancelled { throw HTTPClientError.cancelled }
            let pinned = try await original.destinationPolicy?.admit(request.url) ?? []
            let transfer = CurlTransfer(
                request: request, configuration: configuration, sink: sink,
                followsRedirects: maxRedirects(for: original) > 0, pinnedAddresses: pinned, loop: loop)
            logger.debug(
                "HTTP request", metadata: ["method": "\(request.method)", "url": "\(URLRedaction.display(request.url))"])
            logger.trace(
                "HTTP request headers", metadata: ["headers": "\(request.headers.redacted(configuration.sensitiveHeaders))"])
            let outcome: TransferOutcome
            do {
                outcome = try await transfer.run()
            } catch {
                logger.debug(
                    "HTTP request failed", metadata: ["url": "\(URLRedaction.display(request.url))", "error": "\(error)"])
                throw error
            }
            logger.debug(
                "HTTP response",
                metadata: ["url": "\(URLRedaction.display(request.url))", "status": "\(outcome.head.status)"])
            guard maxRedirects(for: original) > 0, let next = redirect(from: request, head: outcome.head) else {
                return (outcome, transfer)
            }
            redirects += 1
            guard redirects <= maxRedirects(for: original) else {
                throw HTTPClientError.tooManyRedirects(url: next.url.absoluteString)
            }
            request = next
        }
    }

    /// The client's redirect limit, lowered by the request's destination policy.
    private func maxRedirects(for request: HTTPRequest) -> Int {
        min(configuration.maxRedirects, request.destinationPolicy?.maxRedirects ?? .max)
    }

    /// The request to send after a redirect response, or nil when `head` is not one to follow.
    func redirect(from request: HTTPRequest, head: ResponseHead) -> HTTPRequest? {
        guard Self.redirectStatuses.contains(head.status), let location = head.headers["Location"],
            let target = URL(string: location, relativeTo: request.url)?.absoluteURL,
            let scheme = target.scheme?.lowercased(), scheme == "http" || scheme == "https"
        else { return nil }
        var next = request
        next.url = target
        let method = request.method.uppercased()
        if head.status == 303 && method != "HEAD" || (head.status == 301 || head.status == 302) && method == "POST" {
            next.method = "GET"
            next.body = .none
            for name in ["Content-Type", "Content-Length", "Content-Encoding", "Transfer-Encoding"] {
                next.headers.remove(name)
            }
        }
        if Self.origin(of: request.url) != Self.origin(of: target) {
            for name in configuration.sensitiveHeaders + ["Authorization"] { next.headers.remove(name) }
        }
        return next
    }

    /// `scheme://host:port` with the default port filled in: two URLs with the same origin reach the same server.
    public static func origin(of url: URL) -> String {
        let scheme = url.scheme?.lowercased() ?? ""
        let port = url.port ?? (scheme == "https" ? 443 : 80)
        return "\(scheme)://\(url.host?.lowercased() ?? ""):\(port)"
    }
}

/// Reads a streamed body; releasing it (with the stream) aborts an unfinished transfer.
private final class StreamReader: Sendable {
    let transfer: CurlTransfer
    /// Keeps the client, and so its thread, alive while the body is read.
    let client: HTTPClient

    init(transfer: CurlTransfer, client: HTTPClient) {
        self.transfer = transfer
        self.client = client
    }

    deinit { transfer.cancel(.cancelled) }

    func next() async throws -> Data? {
        try await transfer.nextChunk()
    }
}
