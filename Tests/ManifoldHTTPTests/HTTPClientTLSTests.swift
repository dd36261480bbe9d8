import Foundation
import ManifoldHTTP
import ManifoldTestSupport
import Testing

@Suite struct HTTPClientTLSTests {
    private func get(_ url: URL, tls: TLSConfiguration) async throws -> HTTPResponse {
        let client = HTTPClient(configuration: HTTPClientConfiguration(tls: tls))
        defer { client.shutdown() }
        return try await client.execute(HTTPRequest(url: url))
    }

    private func expectTLSFailure(
        _ url: URL, tls: TLSConfiguration, sourceLocation: SourceLocation = #_sourceLocation
    )
        async
    {
        let error = await httpError { _ = try await get(url, tls: tls) }
        guard case .tls(let failedURL, let message) = error else {
            Issue.record("expected a TLS failure, got \(String(describing: error))", sourceLocation: sourceLocation)
            return
        }
        #expect(failedURL == url.absoluteString, sourceLocation: sourceLocation)
        #expect(!message.isEmpty, sourceLocation: sourceLocation)
        #expect(error?.isRetryable == false, sourceLocation: sourceLocation)
        #expect(error?.description.contains(url.absoluteString) == true, sourceLocation: sourceLocation)
    }

    @Test func caFileIsTrusted() async throws {
        let env = try HTTPTestEnvironment.shared()
        let response = try await get(env.tls.url("/echo"), tls: TLSConfiguration(caFile: env.certificates.caCertificate.path))
        #expect(response.status == 200)
    }

    @Test func caPEMIsTrusted() async throws {
        let env = try HTTPTestEnvironment.shared()
        let pem = try String(contentsOf: env.certificates.caCertificate, encoding: .utf8)
        let response = try await get(env.tls.url("/echo"), tls: TLSConfiguration(caPEM: pem))
        #expect(response.status == 200)
    }

    @Test func localhostNameIsVerified() async throws {
        let env = try HTTPTestEnvironment.shared()
        let url = URL(string: "https://localhost:\(env.tls.port)/echo")!
        let response = try await get(url, tls: TLSConfiguration(caFile: env.certificates.caCertificate.path))
        #expect(response.status == 200)
    }

    @Test func differentCAFails() async throws {
        let env = try HTTPTestEnvironment.shared()
        await expectTLSFailure(env.tls.url("/echo"), tls: TLSConfiguration(caFile: env.otherCertificates.caCertificate.path))
        let pem = try String(contentsOf: env.otherCertificates.caCertificate, encoding: .utf8)
        await expectTLSFailure(env.tls.url("/echo"), tls: TLSConfiguration(caPEM: pem))
    }

    @Test func systemTrustRejectsTheTestCA() async throws {
        let env = try HTTPTestEnvironment.shared()
        await expectTLSFailure(env.tls.url("/echo"), tls: .systemDefault)
    }

    @Test func insecureSkipVerifyAcceptsAnyCertificate() async throws {
        let env = try HTTPTestEnvironment.shared()
        let response = try await get(env.tls.url("/echo"), tls: TLSConfiguration(insecureSkipVerify: true))
        #expect(response.status == 200)
    }

    @Test func pinnedPublicKey() async throws {
        let env = try HTTPTestEnvironment.shared()
        let pin = try env.certificates.serverPublicKeyPin()
        let response = try await get(
            env.tls.url("/echo"), tls: TLSConfiguration(caFile: env.certificates.caCertificate.path, pinnedPublicKey: pin))
        #expect(response.status == 200)
        let wrong = try env.otherCertificates.serverPublicKeyPin()
        await expectTLSFailure(
            env.tls.url("/echo"), tls: TLSConfiguration(caFile: env.certificates.caCertificate.path, pinnedPublicKey: wrong))
    }

    @Test func clientCertificate() async throws {
        let env = try HTTPTestEnvironment.shared()
        let ca = env.certificates.caCertificate.path
        // Under TLS 1.3 the server refuses a missing certificate after the handshake, so curl may report
        // the alert (a TLS error) or just the closed connection (a transport error); it must never succeed.
        let refused = await httpError { _ = try await get(env.mutualTLS.url("/echo"), tls: TLSConfiguration(caFile: ca)) }
        switch refused {
        case .tls, .transport: break
        default: Issue.record("expected the server to refuse a client without a certificate, got \(String(describing: refused))")
        }
        let response = try await get(
            env.mutualTLS.url("/echo"),
            tls: TLSConfiguration(
                caFile: ca, clientCertificateFile: env.certificates.clientCertificate.path,
                clientKeyFile: env.certificates.clientKey.path))
        #expect(response.status == 200)
    }
}
