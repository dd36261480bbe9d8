import CCurl
import Foundation

/// What a transfer does with the response body.
enum BodySink: Sendable {
    /// Keep the body in memory, failing beyond `limit` bytes.
    case collect(limit: Int)
    /// Write a 2xx body to the file, failing beyond `limit` bytes when given; keep other bodies (error documents)
    /// in memory, up to a megabyte.
    case file(FileHandle, limit: Int64?)
    /// Hand the body to a consumer chunk by chunk, pausing the transfer while the consumer lags.
    case stream
}

/// A response's status line and header fields.
struct ResponseHead: Sendable {
    var status: Int
    var headers: HTTPHeaders
    var url: URL
    var httpVersion: HTTPVersion
}

/// What one transfer produced: its head, and its body unless the body went to a file or a stream.
struct TransferOutcome: Sendable {
    var head: ResponseHead
    var body: Data
}

/// One request on one easy handle, from submission until it finishes exactly once.
final class CurlTransfer: @unchecked Sendable {
    // Safe to share: the "loop thread" properties below are touched only by the `CurlEventLoop`
    // thread (between `makeEasyHandle` and `releaseEasyHandle`, and from libcurl callbacks it runs);
    // everything other threads touch lives in `shared` and is guarded by `lock`.

    static let streamHighWater = 1 << 20
    static let streamLowWater = 256 << 10
    static let errorBodyLimit = 1 << 20

    let request: HTTPRequest
    let configuration: HTTPClientConfiguration
    let sink: BodySink
    /// Whether a redirect response's body is thrown away because the client will follow it.
    let followsRedirects: Bool
    /// The addresses the connection must use (CURLOPT_RESOLVE); empty lets libcurl resolve the host.
    let pinnedAddresses: [IPAddress]
    private let loop: CurlEventLoop
    var urlString: String { request.url.absoluteString }

    // Loop thread only.
    private(set) var easy: UnsafeMutableRawPointer?
    private var headerList: UnsafeMutablePointer<curl_slist>?
    private var resolveList: UnsafeMutablePointer<curl_slist>?
    private let errorBuffer: UnsafeMutablePointer<CChar>
    private var upload: UploadSource?
    private var status = 0
    private var headers = HTTPHeaders()
    private var head: ResponseHead?
    private var discardBody = false
    private var collected = Data()
    private var written: Int64 = 0
    private var failure: HTTPClientError?

    private struct Shared {
        var continuation: CheckedContinuation<TransferOutcome, any Error>?
        var cancellation: HTTPClientError?
        var end: Result<Void, HTTPClientError>?
        var chunks: [Data] = []
        var bufferedBytes = 0
        var waiter: CheckedContinuation<Data?, any Error>?
        var paused = false
        var unpauseRequested = false
    }
    private let lock = NSLock()
    private var shared = Shared()

    init(
        request: HTTPRequest, configuration: HTTPClientConfiguration, sink: BodySink, followsRedirects: Bool,
        pinnedAddresses: [IPAddress] = [], loop: CurlEventLoop
    ) {
        self.pinnedAddresses = pinnedAddresses
        self.request = request
        self.configuration = configuration
        self.sink = sink
        self.followsRedirects = followsRedirects
        self.loop = loop
        let size = Int(manifold_curl_error_size())
        errorBuffer = .allocate(capacity: size)
        errorBuffer.initialize(repeating: 0, count: size)
    }

    deinit {
        errorBuffer.deallocate()
    }

    // MARK: Any thread

    /// Submits the transfer and waits for its head (streams) or its completion (everything else).
    /// Cancelling the task aborts the transfer with `HTTPClientError.cancelled`.
    func run() async throws -> TransferOutcome {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                lock.withLock { shared.continuation = continuation }
                if !loop.submit(.add(self)) { finish(.failure(.shutDown)) }
            }
        } onCancel: {
            cancel(.cancelled)
        }
    }

    /// Asks the loop thread to abort the transfer; it then finishes with `error`. No-op once finished.
    func cancel(_ error: HTTPClientError) {
        let submit = lock.withLock {
            guard shared.end == nil, shared.cancellation == nil else { return false }
            shared.cancellation = error
            return true
        }
        if submit { loop.submit(.cancel(self)) }
    }

    var cancellationError: HTTPClientError? { lock.withLock { shared.cancellation } }

    /// The next chunk of a streamed body, nil at its end.
    func nextChunk() async throws -> Data? {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Data?, any Error>) in
                enum Action { case chunk(Data, unpause: Bool), end(Result<Void, HTTPClientError>), wait }
                let action: Action = lock.withLock {
                    // A cancelled consumer gets an error, never a silently shortened body.
                    if let cancellation = shared.cancellation { return .end(.failure(cancellation)) }
                    if !shared.chunks.isEmpty {
                        let chunk = shared.chunks.removeFirst()
                        shared.bufferedBytes -= chunk.count
                        let unpause =
                            shared.paused && !shared.unpauseRequested && shared.bufferedBytes <= Self.streamLowWater
                        if unpause { shared.unpauseRequested = true }
                        return .chunk(chunk, unpause: unpause)
                    }
                    if let end = shared.end { return .end(end) }
                    shared.waiter = continuation
                    return .wait
                }
                switch action {
                case .chunk(let chunk, let unpause):
                    if unpause { loop.submit(.unpause(self)) }
                    continuation.resume(returning: chunk)
                case .end(.success): continuation.resume(returning: nil)
                case .end(.failure(let error)): continuation.resume(throwing: error)
                case .wait: break
                }
            }
        } onCancel: {
            cancel(.cancelled)
        }
    }

    /// Delivers the result to whoever waits, exactly once.
    func finish(_ result: Result<TransferOutcome, HTTPClientError>) {
        let (continuation, waiter): (CheckedContinuation<TransferOutcome, any Error>?, CheckedContinuation<Data?, any Error>?) =
            lock.withLock {
                guard shared.end == nil else { return (nil, nil) }
                shared.end = result.map { _ in () }
                defer {
                    shared.continuation = nil
                    shared.waiter = nil
                }
                return (shared.continuation, shared.waiter)
            }
        continuation?.resume(with: result.mapError { $0 as any Error })
        switch result {
        case .success: waiter?.resume(returning: nil)
        case .failure(let error): waiter?.resume(throwing: error)
        }
    }

    // MARK: Loop thread

    /// Creates and configures the easy handle.
    func makeEasyHandle() throws(HTTPClientError) -> UnsafeMutableRawPointer {
        guard let scheme = request.url.scheme?.lowercased(), scheme == "http" || scheme == "https" else {
            throw .invalidRequest("\(URLRedaction.display(urlString)) is not an http or https URL")
        }
        guard let easy = curl_easy_init() else {
            throw .transport(url: urlString, code: -1, message: "curl_easy_init failed")
        }
        self.easy = easy
        let options = EasyOptions(easy: easy)
        let me = Unmanaged.passUnretained(self).toOpaque()
        let tls = configuration.tls
        var results = [
            options.set(CURLOPT_URL, urlString),
            options.set(CURLOPT_NOSIGNAL, 1),
            options.set(CURLOPT_FOLLOWLOCATION, 0),
            manifold_curl_easy_setopt_pointer(easy, CURLOPT_ERRORBUFFER, errorBuffer),
            options.set(CURLOPT_HTTP_VERSION, Int(Self.curlHTTPVersion(configuration.httpVersion))),
            options.set(CURLOPT_CONNECTTIMEOUT_MS, Self.milliseconds(configuration.connectTimeout)),
            options.set(CURLOPT_TIMEOUT_MS, Self.totalTimeout(request.timeout ?? configuration.requestTimeout)),
            options.set(CURLOPT_USERAGENT, configuration.userAgent),
            options.set(CURLOPT_SUPPRESS_CONNECT_HEADERS, 1),
            options.set(CURLOPT_TCP_KEEPALIVE, 1),
            manifold_curl_easy_setopt_write_callback(easy, CURLOPT_WRITEFUNCTION, curlWriteCallback),
            manifold_curl_easy_setopt_pointer(easy, CURLOPT_WRITEDATA, me),
            manifold_curl_easy_setopt_header_callback(easy, curlHeaderCallback),
            manifold_curl_easy_setopt_pointer(easy, CURLOPT_HEADERDATA, me),
        ]
        let silentByDesign = !request.checksStalls && request.timeout.map { $0 != HTTPRequest.unlimited } ?? true
        if let stall = configuration.stallTimeout, !silentByDesign {
            // Below 1 byte/s for `stall` seconds: libcurl aborts with CURLE_OPERATION_TIMEDOUT.
            results += [options.set(CURLOPT_LOW_SPEED_LIMIT, 1), options.set(CURLOPT_LOW_SPEED_TIME, Self.seconds(stall))]
        }
        if let proxy = configuration.proxy { results.append(options.set(CURLOPT_PROXY, proxy)) }
        if let caFile = tls.caFile { results.append(options.set(CURLOPT_CAINFO, caFile)) }
        if let bundle = loop.caBundle {
            results.append(options.set(CURLOPT_CAINFO, bundle.path))
        } else if let caPEM = tls.caPEM {
            let bytes = Array(caPEM.utf8)
            results.append(manifold_curl_easy_setopt_blob(easy, CURLOPT_CAINFO_BLOB, bytes, bytes.count))
        }
        if tls.caFile != nil || tls.caPEM != nil {
            // The CAs given replace the system's trust, the certificate directory libcurl was built with too (Debian's
            // /etc/ssl/certs), and libcurl keeps a parsed store for the next connections only when it comes from a
            // file alone. A TLS library without certificate directories (Schannel) refuses the option: nothing to
            // unset there.
            _ = manifold_curl_easy_setopt_string(easy, CURLOPT_CAPATH, nil)
        }
        if let pin = tls.pinnedPublicKey { results.append(options.set(CURLOPT_PINNEDPUBLICKEY, pin)) }
        if let certificate = tls.clientCertificateFile {
            results += [options.set(CURLOPT_SSLCERT, certificate), options.set(CURLOPT_SSLCERTTYPE, "PEM")]
        }
        if let key = tls.clientKeyFile {
            results += [options.set(CURLOPT_SSLKEY, key), options.set(CURLOPT_SSLKEYTYPE, "PEM")]
        }
        if tls.insecureSkipVerify {
            results += [options.set(CURLOPT_SSL_VERIFYPEER, 0), options.set(CURLOPT_SSL_VERIFYHOST, 0)]
        }
        results += try configureMethodAndBody(options, userdata: me)
        headerList = makeHeaderList()
        results.append(manifold_curl_easy_setopt_slist(easy, CURLOPT_HTTPHEADER, headerList))
        if !pinnedAddresses.isEmpty, let host = request.url.host {
            // HOST:PORT:ADDR[,ADDR]: libcurl connects to these addresses instead of resolving the name again.
            let scheme = request.url.scheme?.lowercased()
            let port = request.url.port ?? (scheme == "https" ? 443 : 80)
            let addresses = pinnedAddresses.map { $0.isIPv6 ? "[\($0)]" : "\($0)" }.joined(separator: ",")
            resolveList = curl_slist_append(nil, "\(host):\(port):\(addresses)")
            results.append(manifold_curl_easy_setopt_slist(easy, CURLOPT_RESOLVE, resolveList))
        }
        if let bad = results.first(where: { $0 != CURLE_OK }) {
            throw .invalidRequest(
                "libcurl rejected an option for \(URLRedaction.display(urlString)): \(String(cString: curl_easy_strerror(bad)))")
        }
        return easy
    }

    private func configureMethodAndBody(
        _ options: EasyOptions, userdata: UnsafeMutableRawPointer
    ) throws(HTTPClientError) -> [CURLcode] {
        let method = request.method.uppercased()
        let hasBody: Bool
        if case .none = request.body { hasBody = false } else { hasBody = true }
        if method == "HEAD" {
            return [options.set(CURLOPT_NOBODY, 1)]
        }
        if hasBody || ["POST", "PUT", "PATCH"].contains(method) {
            let source = try UploadSource(request.body, url: URLRedaction.display(urlString))
            upload = source
            return [
                options.set(CURLOPT_UPLOAD, 1),
                manifold_curl_easy_setopt_off_t(options.easy, CURLOPT_INFILESIZE_LARGE, curl_off_t(source.length)),
                manifold_curl_easy_setopt_read_callback(options.easy, curlReadCallback),
                manifold_curl_easy_setopt_pointer(options.easy, CURLOPT_READDATA, userdata),
                manifold_curl_easy_setopt_seek_callback(options.easy, curlSeekCallback),
                manifold_curl_easy_setopt_pointer(options.easy, CURLOPT_SEEKDATA, userdata),
                options.set(CURLOPT_CUSTOMREQUEST, request.method),
            ]
        }
        if method == "GET" {
            return [options.set(CURLOPT_HTTPGET, 1)]
        }
        return [options.set(CURLOPT_CUSTOMREQUEST, request.method)]
    }

    private func makeHeaderList() -> UnsafeMutablePointer<curl_slist>? {
        var list: UnsafeMutablePointer<curl_slist>?
        var lines = request.headers.map { $0.value.isEmpty ? "\($0.name);" : "\($0.name): \($0.value)" }
        // An empty `Expect:` stops libcurl from waiting for `100 Continue` before sending a body.
        if !request.headers.contains("Expect") { lines.append("Expect:") }
        for line in lines { list = curl_slist_append(list, line) }
        return list
    }

    /// Frees the easy handle and everything it pointed to; the handle is out of the multi handle.
    func releaseEasyHandle() {
        if let easy { curl_easy_cleanup(easy) }
        easy = nil
        if let headerList { curl_slist_free_all(headerList) }
        headerList = nil
        if let resolveList { curl_slist_free_all(resolveList) }
        resolveList = nil
        upload?.close()
        upload = nil
    }

    /// The transfer's result once libcurl reports it done with `code`.
    func completion(code: CURLcode) -> Result<TransferOutcome, HTTPClientError> {
        if let failure { return .failure(failure) }
        guard code == CURLE_OK else { return .failure(mapError(code)) }
        if head == nil { completeHead() }
        return .success(TransferOutcome(head: head!, body: collected))
    }

    private func mapError(_ code: CURLcode) -> HTTPClientError {
        var message = String(cString: errorBuffer)
        if message.isEmpty { message = String(cString: curl_easy_strerror(code)) }
        switch code {
        case CURLE_OPERATION_TIMEDOUT:
            return .timedOut(url: urlString)
        case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY:
            return .connect(url: urlString, message: message)
        case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER,
            CURLE_SSL_CACERT_BADFILE, CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_ISSUER_ERROR, CURLE_SSL_CRL_BADFILE,
            CURLE_SSL_CLIENTCERT, CURLE_SSL_ENGINE_NOTFOUND, CURLE_SSL_ENGINE_SETFAILED, CURLE_SSL_ENGINE_INITFAILED,
            CURLE_USE_SSL_FAILED, CURLE_SSL_INVALIDCERTSTATUS:
            return .tls(url: urlString, message: message)
        case CURLE_RECV_ERROR where message.contains("SSL") && message.contains("alert"):
            // A server that rejects the client certificate says so in a TLS 1.3 alert after the handshake.
            return .tls(url: urlString, message: message)
        default:
            return .transport(url: urlString, code: Int(code.rawValue), message: message)
        }
    }

    /// Resumes a transfer paused because the stream consumer lagged.
    func unpause() {
        guard let easy else { return }
        lock.withLock {
            shared.paused = false
            shared.unpauseRequested = false
        }
        curl_easy_pause(easy, manifold_curlpause_cont())
    }

    // MARK: Callbacks (loop thread)

    fileprivate func receiveHeader(_ bytes: UnsafeRawBufferPointer) -> Int {
        var end = bytes.count
        while end > 0, bytes[end - 1] == 0x0A || bytes[end - 1] == 0x0D { end -= 1 }  // "\r\n" is one Character
        let line = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[..<end]), as: UTF8.self)
        if line.hasPrefix("HTTP/") {
            let parts = line.split(separator: " ", maxSplits: 2)
            status = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
            headers = HTTPHeaders()
            head = nil
        } else if line.isEmpty {
            // The end of a header block; an interim (1xx) response is followed by the real one.
            if head == nil, !(100..<200).contains(status) { completeHead() }  // later blank lines end trailers
        } else if let colon = line.firstIndex(of: ":") {
            let name = String(line[..<colon]).trimmingCharacters(in: .whitespaces)
            let value = String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
            headers.add(name, value)
        }
        return bytes.count
    }

    private func completeHead() {
        var version: CLong = 0
        if let easy { manifold_curl_easy_getinfo_long(easy, CURLINFO_HTTP_VERSION, &version) }
        let head = ResponseHead(
            status: status, headers: headers, url: request.url, httpVersion: Self.httpVersion(fromCurl: version))
        self.head = head
        if followsRedirects, HTTPClient.redirectStatuses.contains(status), headers["Location"] != nil {
            discardBody = true
            return
        }
        discardBody = false
        if case .stream = sink {
            let continuation = lock.withLock {
                defer { shared.continuation = nil }
                return shared.continuation
            }
            continuation?.resume(returning: TransferOutcome(head: head, body: Data()))
        }
    }

    fileprivate func receiveBody(_ bytes: UnsafeRawBufferPointer) -> Int {
        if head == nil { completeHead() }
        if discardBody { return bytes.count }
        switch sink {
        case .collect(let limit):
            guard collected.count + bytes.count <= limit else {
                failure = .responseTooLarge(url: urlString, limit: limit)
                return 0
            }
            collected.append(contentsOf: bytes)
        case .file(let handle, let limit):
            if (200..<300).contains(status) {
                written += Int64(bytes.count)
                if let limit, written > limit {
                    failure = .responseTooLarge(url: urlString, limit: Int(clamping: limit))
                    return 0
                }
                do {
                    try handle.write(contentsOf: bytes)
                } catch {
                    failure = .transport(url: urlString, code: -1, message: "writing the response body failed: \(error)")
                    return 0
                }
            } else if collected.count < Self.errorBodyLimit {
                collected.append(contentsOf: bytes.prefix(Self.errorBodyLimit - collected.count))
            }
        case .stream:
            return deliver(bytes)
        }
        return bytes.count
    }

    private func deliver(_ bytes: UnsafeRawBufferPointer) -> Int {
        enum Action { case handOver(CheckedContinuation<Data?, any Error>), buffered, pause }
        let action: Action = lock.withLock {
            if let waiter = shared.waiter {
                shared.waiter = nil
                return .handOver(waiter)
            }
            if shared.bufferedBytes >= Self.streamHighWater {
                shared.paused = true
                return .pause
            }
            shared.chunks.append(Data(bytes))
            shared.bufferedBytes += bytes.count
            return .buffered
        }
        switch action {
        case .handOver(let waiter): waiter.resume(returning: Data(bytes))
        case .buffered: break
        case .pause: return manifold_curl_writefunc_pause()  // libcurl keeps these bytes and delivers them again
        }
        return bytes.count
    }

    fileprivate func readBody(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        guard let upload else { return 0 }
        return upload.read(into: buffer)
    }

    fileprivate func seekBody(to offset: Int64) -> Bool {
        upload?.seek(to: offset) ?? false
    }

    // MARK: Conversions

    static func milliseconds(_ duration: Duration) -> Int {
        let (seconds, attoseconds) = duration.components
        let value = seconds * 1000 + attoseconds / 1_000_000_000_000_000
        return Int(max(1, min(value, Int64(Int32.max))))  // 0 would mean "no timeout" to libcurl
    }

    /// CURLOPT_TIMEOUT_MS for a total limit; `HTTPRequest.unlimited` (zero) is libcurl's "no timeout".
    static func totalTimeout(_ duration: Duration) -> Int {
        duration <= .zero ? 0 : milliseconds(duration)
    }

    /// Whole seconds, rounded up, at least 1 (libcurl's low-speed time is in seconds).
    static func seconds(_ duration: Duration) -> Int {
        let (seconds, attoseconds) = duration.components
        return Int(max(1, min(seconds + (attoseconds > 0 ? 1 : 0), Int64(Int32.max))))
    }

    static func curlHTTPVersion(_ preference: HTTPVersionPreference) -> Int {
        switch preference {
        case .automatic: return Int(CURL_HTTP_VERSION_2TLS)
        case .http1_1: return Int(CURL_HTTP_VERSION_1_1)
        case .http2: return Int(CURL_HTTP_VERSION_2_0)
        }
    }

    static func httpVersion(fromCurl value: CLong) -> HTTPVersion {
        switch Int(value) {
        case Int(CURL_HTTP_VERSION_1_0): return .http1_0
        case Int(CURL_HTTP_VERSION_2_0): return .http2
        case Int(CURL_HTTP_VERSION_3): return .http3
        default: return .http1_1
        }
    }
}

/// Typed `curl_easy_setopt` for the two common value kinds.
private struct EasyOptions {
    let easy: UnsafeMutableRawPointer

    func set(_ option: CURLoption, _ value: Int) -> CURLcode {
        manifold_curl_easy_setopt_long(easy, option, CLong(value))
    }

    func set(_ option: CURLoption, _ value: String) -> CURLcode {
        manifold_curl_easy_setopt_string(easy, option, value)  // libcurl copies strings
    }
}

private func transfer(_ userdata: UnsafeMutableRawPointer?) -> CurlTransfer {
    Unmanaged<CurlTransfer>.fromOpaque(userdata!).takeUnretainedValue()
}

private let curlWriteCallback: curl_write_callback = { pointer, size, count, userdata in
    transfer(userdata).receiveBody(UnsafeRawBufferPointer(start: pointer, count: size * count))
}

private let curlHeaderCallback: curl_write_callback = { pointer, size, count, userdata in
    transfer(userdata).receiveHeader(UnsafeRawBufferPointer(start: pointer, count: size * count))
}

private let curlReadCallback: curl_read_callback = { pointer, size, count, userdata in
    let read = transfer(userdata).readBody(into: UnsafeMutableRawBufferPointer(start: pointer, count: size * count))
    return read < 0 ? manifold_curl_readfunc_abort() : read
}

private let curlSeekCallback: curl_seek_callback = { userdata, offset, origin in
    guard origin == SEEK_SET, transfer(userdata).seekBody(to: Int64(offset)) else { return Int32(CURL_SEEKFUNC_CANTSEEK) }
    return Int32(CURL_SEEKFUNC_OK)
}
