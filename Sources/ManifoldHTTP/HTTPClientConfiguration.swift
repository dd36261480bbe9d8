import Foundation

/// How a client verifies servers and identifies itself over TLS.
///
/// By default the system's trust store (libcurl's default CA bundle and CA directory) is used. `caFile` or `caPEM`
/// *replace* both, which is what a registry with a private CA needs, and libcurl then parses them once per client
/// (it keeps the store of a file for a day), not for every connection.
public struct TLSConfiguration: Sendable, Hashable {
    /// A PEM file of trusted CA certificates (replaces the system's trust).
    public var caFile: String?
    /// PEM text of trusted CA certificates (replaces the system's trust); takes precedence over `caFile`. On Linux
    /// it reaches libcurl as an in-memory file, a copy taken when the client is made.
    public var caPEM: String?
    /// A public-key pin in libcurl's form, `sha256//BASE64` (several joined with `;`).
    public var pinnedPublicKey: String?
    /// A PEM client certificate for servers that require mutual TLS.
    public var clientCertificateFile: String?
    /// The PEM private key of `clientCertificateFile`.
    public var clientKeyFile: String?
    /// Accepts any server certificate and host name. Only ever set from an explicit user choice.
    public var insecureSkipVerify: Bool

    public init(
        caFile: String? = nil, caPEM: String? = nil, pinnedPublicKey: String? = nil,
        clientCertificateFile: String? = nil, clientKeyFile: String? = nil, insecureSkipVerify: Bool = false
    ) {
        self.caFile = caFile
        self.caPEM = caPEM
        self.pinnedPublicKey = pinnedPublicKey
        self.clientCertificateFile = clientCertificateFile
        self.clientKeyFile = clientKeyFile
        self.insecureSkipVerify = insecureSkipVerify
    }

    /// The system's trust store, no client certificate.
    public static let systemDefault = TLSConfiguration()
}

/// Which HTTP version a client asks for.
// The names follow the HTTP versions (and the API colleagues code against).
// swift-format-ignore: AlwaysUseLowerCamelCase
public enum HTTPVersionPreference: Sendable, Hashable {
    /// HTTP/2 over TLS when the server offers it (ALPN), HTTP/1.1 otherwise and for plain HTTP.
    case automatic
    case http1_1
    /// HTTP/2, also attempted over plain HTTP (upgrade), falling back to HTTP/1.1.
    case http2
}

/// Settings shared by every request of one `HTTPClient`.
///
/// Proxies: unless `proxy` is set, libcurl reads the environment itself — `http_proxy` (lower case
/// only), `https_proxy`/`HTTPS_PROXY`, `all_proxy`/`ALL_PROXY` and `no_proxy`/`NO_PROXY`.
public struct HTTPClientConfiguration: Sendable {
    /// The header names whose values never cross to another origin on a redirect and are never logged.
    public static let defaultSensitiveHeaders = ["Authorization", "Cookie"]

    public var tls: TLSConfiguration
    public var httpVersion: HTTPVersionPreference
    /// The time allowed to establish a connection (TCP and TLS).
    public var connectTimeout: Duration
    /// The total time allowed for a request whose `timeout` is nil.
    public var requestTimeout: Duration
    /// A transfer that moves no byte in either direction for this long fails with `timedOut`, whatever its
    /// total limit; nil disables stall detection. Paused streams (a slow consumer) do not count as stalled.
    public var stallTimeout: Duration?
    /// Redirects followed before failing with `tooManyRedirects`; 0 returns 3xx responses as they are.
    public var maxRedirects: Int
    /// Header names dropped when a redirect leaves the original scheme, host and port.
    public var sensitiveHeaders: [String]
    public var userAgent: String
    /// An explicit proxy URL (e.g. `http://127.0.0.1:3128`); nil lets libcurl use the environment.
    public var proxy: String?
    /// The largest body `execute` reads into memory before failing with `responseTooLarge`.
    public var maxResponseBodySize: Int

    public init(
        tls: TLSConfiguration = .systemDefault, httpVersion: HTTPVersionPreference = .automatic,
        connectTimeout: Duration = .seconds(15), requestTimeout: Duration = .seconds(300),
        stallTimeout: Duration? = .seconds(60), maxRedirects: Int = 10,
        sensitiveHeaders: [String] = HTTPClientConfiguration.defaultSensitiveHeaders,
        userAgent: String = "manifold/\(manifoldHTTPVersion)", proxy: String? = nil,
        maxResponseBodySize: Int = 64 * 1024 * 1024
    ) {
        self.tls = tls
        self.httpVersion = httpVersion
        self.connectTimeout = connectTimeout
        self.requestTimeout = requestTimeout
        self.stallTimeout = stallTimeout
        self.maxRedirects = maxRedirects
        self.sensitiveHeaders = sensitiveHeaders
        self.userAgent = userAgent
        self.proxy = proxy
        self.maxResponseBodySize = maxResponseBodySize
    }
}

/// The version reported in the default User-Agent.
public let manifoldHTTPVersion = "0.1.0"
