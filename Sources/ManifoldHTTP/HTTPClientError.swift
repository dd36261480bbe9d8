import Foundation

/// Why a request produced no response.
///
/// The associated URLs are complete; `description` shows them without their query string, which may
/// hold presigned or opaque state (see `URLRedaction`).
public enum HTTPClientError: Error, CustomStringConvertible, Equatable {
    case timedOut(url: String)
    case cancelled
    case tls(url: String, message: String)
    case connect(url: String, message: String)
    case transport(url: String, code: Int, message: String)
    case tooManyRedirects(url: String)
    case responseTooLarge(url: String, limit: Int)
    case invalidRequest(String)
    case shutDown
    /// A `DestinationPolicy` refused the URL (a hop of the request) before any connection to it.
    case destinationRefused(url: String, reason: String)

    public var description: String {
        let shown: (String) -> String = URLRedaction.display
        switch self {
        case .timedOut(let url):
            return "The request to \(shown(url)) timed out. Check that the server is reachable, or allow more time."
        case .cancelled:
            return "The request was cancelled."
        case .tls(let url, let message):
            return "TLS verification failed for \(shown(url)): \(message). If the registry uses a private CA, pass its "
                + "certificate (e.g. --registry-ca HOST=FILE or /etc/docker/certs.d/HOST/ca.crt)."
        case .connect(let url, let message):
            return "Could not connect to \(shown(url)): \(message). Check the host name and port, and that the server is running."
        case .transport(let url, let code, let message):
            return "The transfer from \(shown(url)) failed (curl error \(code)): \(message)."
        case .tooManyRedirects(let url):
            return "Too many redirects, the last one to \(shown(url)). The server is probably redirecting in a loop."
        case .responseTooLarge(let url, let limit):
            return "The response from \(shown(url)) is larger than the \(limit)-byte limit for in-memory bodies."
        case .invalidRequest(let message):
            return "Invalid request: \(message)."
        case .shutDown:
            return "The HTTP client was shut down before the request completed."
        case .destinationRefused(let url, let reason):
            return "Refused to contact \(shown(url)): \(reason)."
        }
    }

    /// Whether trying the same request again may succeed: timeouts and connection or transfer failures.
    public var isRetryable: Bool {
        switch self {
        case .timedOut, .connect, .transport: return true
        case .cancelled, .tls, .tooManyRedirects, .responseTooLarge, .invalidRequest, .shutDown, .destinationRefused:
            return false
        }
    }
}
