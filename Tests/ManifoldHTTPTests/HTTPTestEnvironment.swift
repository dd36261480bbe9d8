import Foundation
import ManifoldCore
import ManifoldHTTP
import ManifoldTestSupport
import Testing

/// The servers every test in this target shares, started once per test process: plain HTTP on
/// 127.0.0.1, a second plain server addressed as `localhost` (another origin), HTTPS, and HTTPS that
/// requires a client certificate. A second, unrelated CA exists to show verification failing.
final class HTTPTestEnvironment: Sendable {
    let scratch: ScratchDirectory
    let certificates: TestCertificates
    let otherCertificates: TestCertificates
    let plain: TestHTTPServer
    let otherOrigin: TestHTTPServer
    let tls: TestHTTPServer
    let mutualTLS: TestHTTPServer

    private init() throws {
        scratch = try ScratchDirectory(prefix: "manifold-http-test")
        certificates = try TestCertificates.generate(in: scratch.file("pki"))
        otherCertificates = try TestCertificates.generate(in: scratch.file("other-pki"), commonName: "Unrelated CA")
        plain = try TestHTTPServer.start(name: "plain", logDirectory: scratch.url)
        otherOrigin = try TestHTTPServer.start(urlHost: "localhost", name: "other-origin", logDirectory: scratch.url)
        tls = try TestHTTPServer.start(tls: certificates, name: "tls", logDirectory: scratch.url)
        mutualTLS = try TestHTTPServer.start(
            tls: certificates, requireClientCertificate: true, name: "mtls", logDirectory: scratch.url)
        // The environment lives as long as the test process; clean up when that ends.
        atexit {
            guard case .success(let env) = HTTPTestEnvironment.instance else { return }
            for server in [env.plain, env.otherOrigin, env.tls, env.mutualTLS] { server.stop() }
            env.scratch.remove()
        }
    }

    private static let instance = Result { try HTTPTestEnvironment() }

    static func shared() throws -> HTTPTestEnvironment { try instance.get() }

    /// A client trusting the test CA.
    func trustingClient(_ configure: (inout HTTPClientConfiguration) -> Void = { _ in }) -> HTTPClient {
        var configuration = HTTPClientConfiguration(tls: TLSConfiguration(caFile: certificates.caCertificate.path))
        configure(&configuration)
        return HTTPClient(configuration: configuration)
    }
}

/// What `/echo` and `/upload` answer.
struct Echo: Decodable {
    let method: String
    let path: String
    let query: String
    let bodyLength: Int
    let sha256: String
    let proxied: Bool
    let headers: [[String]]?

    init(_ response: HTTPResponse) throws {
        self = try JSONDecoder().decode(Echo.self, from: response.body)
    }

    /// The values the server received for a header name (case-insensitive).
    func header(_ name: String) -> [String] {
        (headers ?? []).filter { $0[0].lowercased() == name.lowercased() }.map { $0[1] }
    }
}

func sha256Hex(_ data: Data) -> String {
    Digest.compute(.sha256, of: data).hex
}

/// Runs `body` and returns the `HTTPClientError` it threw, or nil.
func httpError(_ body: () async throws -> Void) async -> HTTPClientError? {
    do {
        try await body()
        return nil
    } catch let error as HTTPClientError {
        return error
    } catch {
        return .invalidRequest("unexpected error type: \(error)")
    }
}

func elapsed(since start: ContinuousClock.Instant) -> Duration { ContinuousClock.now - start }

/// Polls `condition` until it holds or 15 s pass; records an issue if it never does.
func waitUntil(_ condition: () -> Bool, sourceLocation: SourceLocation = #_sourceLocation) async throws {
    let deadline = ContinuousClock.now + .seconds(15)
    while !condition() && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
    #expect(condition(), sourceLocation: sourceLocation)
}
