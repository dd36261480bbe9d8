import Foundation
import ManifoldTestSupport
import Testing

@testable import ManifoldHTTP

#if canImport(Glibc)
import Glibc
#endif

/// A client given its trusted CAs as PEM text (a registry's private CA beside the system bundle) hands them to libcurl
/// as a file, which libcurl reads once per client instead of once per connection, and the file ends with the client.
@Suite struct HTTPClientCABundleTests {
    /// After the first handshake the bundle's file holds only an unrelated CA: a second connection (another host
    /// name, so no connection is reused) is still verified against the store read the first time. A client that read
    /// its bundle again for every connection (a blob) would fail here, as would one without a bundle file.
    @Test func aClientReadsItsCAsOnceNotForEveryConnection() async throws {
        let env = try HTTPTestEnvironment.shared()
        let pem = try String(contentsOf: env.certificates.caCertificate, encoding: .utf8)
        let unrelated = try String(contentsOf: env.otherCertificates.caCertificate, encoding: .utf8)
        let client = HTTPClient(configuration: HTTPClientConfiguration(tls: TLSConfiguration(caPEM: pem)))
        defer { client.shutdown() }
        let bundle = try #require(client.loop.caBundle, "a client given caPEM has no bundle file")
        #expect(try String(contentsOfFile: bundle.path, encoding: .utf8) == pem)

        let first = try await client.execute(HTTPRequest(url: URL(string: "https://127.0.0.1:\(env.tls.port)/echo")!))
        #expect(first.status == 200)
        try unrelated.write(toFile: bundle.path, atomically: false, encoding: .utf8)
        #expect(try String(contentsOfFile: bundle.path, encoding: .utf8) == unrelated)
        let second = try await client.execute(HTTPRequest(url: URL(string: "https://localhost:\(env.tls.port)/echo")!))
        #expect(second.status == 200)

        // A new client reads its own file: the unrelated CA alone does not verify the server.
        await expectRefused(TLSConfiguration(caPEM: unrelated), env, "a client trusting only an unrelated CA")
    }

    /// The same for a CA file: read for the first connection, and not again for the next (libcurl's certificate
    /// directory, which Debian's libcurl adds to any file, would make it read the file for every connection). A new
    /// client reads the file as it is now.
    @Test func aClientReadsItsCAFileOnceNotForEveryConnection() async throws {
        let env = try HTTPTestEnvironment.shared()
        let scratch = try ScratchDirectory(prefix: "ca-file-once")
        defer { scratch.remove() }
        let file = scratch.file("ca.crt")
        try FileManager.default.copyItem(at: env.certificates.caCertificate, to: file)
        let tls = TLSConfiguration(caFile: file.path)
        let client = HTTPClient(configuration: HTTPClientConfiguration(tls: tls))
        defer { client.shutdown() }
        let first = try await client.execute(HTTPRequest(url: URL(string: "https://127.0.0.1:\(env.tls.port)/echo")!))
        #expect(first.status == 200)
        try Data(contentsOf: env.otherCertificates.caCertificate).write(to: file)
        let second = try await client.execute(HTTPRequest(url: URL(string: "https://localhost:\(env.tls.port)/echo")!))
        #expect(second.status == 200)

        await expectRefused(tls, env, "a client made after the file changed, trusting the old CA")
    }

    /// The file is an anonymous one of this process, closed once the client and its transfer thread are gone, and
    /// never inherited by a child process.
    @Test func theBundleFileEndsWithItsClient() async throws {
        let env = try HTTPTestEnvironment.shared()
        let pem = try String(contentsOf: env.certificates.caCertificate, encoding: .utf8)
        var client: HTTPClient? = HTTPClient(configuration: HTTPClientConfiguration(tls: TLSConfiguration(caPEM: pem)))
        let path = try #require(client?.loop.caBundle?.path)
        let name = try #require(Self.target(of: path))
        #expect(name.hasPrefix("/memfd:manifold-ca-"), "\(path) names \(name)")
        let descriptor = try #require(Int32(path.split(separator: "/").last ?? ""))
        #expect(fcntl(descriptor, F_GETFD) & FD_CLOEXEC != 0, "a builder started by this process would inherit it")
        let response = try await client?.execute(HTTPRequest(url: URL(string: "https://127.0.0.1:\(env.tls.port)/echo")!))
        #expect(response?.status == 200)

        await client?.shutdownAndWait()
        client = nil
        // The descriptor number may be taken again by another test's file at once; the name is this bundle's alone.
        let closed = await ProcessProbe.waitUntil(.seconds(10)) { Self.target(of: path) != name }
        #expect(closed, "\(path) still names \(name) after its client ended")
    }

    /// A new client with `tls` is refused by the test server's certificate.
    private func expectRefused(
        _ tls: TLSConfiguration, _ env: HTTPTestEnvironment, _ client: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async {
        let other = HTTPClient(configuration: HTTPClientConfiguration(tls: tls))
        defer { other.shutdown() }
        let refused = await httpError {
            _ = try await other.execute(HTTPRequest(url: URL(string: "https://127.0.0.1:\(env.tls.port)/echo")!))
        }
        guard case .tls = refused else {
            Issue.record("\(client) was not refused: \(String(describing: refused))", sourceLocation: sourceLocation)
            return
        }
    }

    private static func target(of path: String) -> String? {
        try? FileManager.default.destinationOfSymbolicLink(atPath: path)
    }
}
