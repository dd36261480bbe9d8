import Foundation
import ManifoldHTTP
import ManifoldTestSupport
import Testing

@Suite struct HTTPClientRedirectTests {
    private func redirect(_ server: TestHTTPServer, to target: String, code: Int = 302) -> URL {
        let encoded = target.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        return server.url("/redirect?code=\(code)&to=\(encoded)")
    }

    @Test func sameOriginKeepsAuthorization() async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient()
        defer { client.shutdown() }
        let response = try await client.execute(
            HTTPRequest(
                url: redirect(env.plain, to: "/echo?after=redirect"),
                headers: ["Authorization": "Bearer secret", "Cookie": "c=1", "X-Other": "kept"]))
        #expect(response.status == 200)
        #expect(response.url == env.plain.url("/echo?after=redirect"))
        let echo = try Echo(response)
        #expect(echo.query == "after=redirect")
        #expect(echo.header("Authorization") == ["Bearer secret"])
        #expect(echo.header("Cookie") == ["c=1"])
    }

    @Test func crossOriginDropsSensitiveHeaders() async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient()
        defer { client.shutdown() }
        let target = env.otherOrigin.url("/echo")
        #expect(target.host == "localhost")
        let response = try await client.execute(
            HTTPRequest(
                url: redirect(env.plain, to: target.absoluteString, code: 307),
                headers: ["Authorization": "Bearer secret", "Cookie": "c=1", "X-Other": "kept"]))
        #expect(response.url == target)
        let echo = try Echo(response)
        #expect(echo.header("Authorization").isEmpty)
        #expect(echo.header("Cookie").isEmpty)
        #expect(echo.header("X-Other") == ["kept"])
    }

    @Test func configuredSensitiveHeadersAreDropped() async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient(configuration: HTTPClientConfiguration(sensitiveHeaders: ["X-Token"]))
        defer { client.shutdown() }
        let response = try await client.execute(
            HTTPRequest(
                url: redirect(env.plain, to: env.otherOrigin.url("/echo").absoluteString),
                headers: ["Authorization": "Bearer secret", "X-Token": "t"]))
        let echo = try Echo(response)
        #expect(echo.header("Authorization").isEmpty)
        #expect(echo.header("X-Token").isEmpty)
    }

    @Test func seeOtherTurnsPostIntoGet() async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient()
        defer { client.shutdown() }
        let response = try await client.execute(
            HTTPRequest(
                method: "POST", url: redirect(env.plain, to: "/echo", code: 303),
                headers: ["Content-Type": "application/json"], body: .bytes(Data("{\"a\":1}".utf8))))
        let echo = try Echo(response)
        #expect(echo.method == "GET")
        #expect(echo.bodyLength == 0)
        #expect(echo.header("Content-Type").isEmpty)
    }

    @Test(arguments: [307, 308])
    func temporaryAndPermanentRedirectsKeepMethodAndBody(code: Int) async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient()
        defer { client.shutdown() }
        let body = Data(repeating: 0x5a, count: 20_000)
        let response = try await client.execute(
            HTTPRequest(method: "PUT", url: redirect(env.plain, to: "/echo", code: code), body: .bytes(body)))
        let echo = try Echo(response)
        #expect(echo.method == "PUT")
        #expect(echo.sha256 == sha256Hex(body))
    }

    @Test func tooManyRedirects() async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient(configuration: HTTPClientConfiguration(maxRedirects: 3))
        defer { client.shutdown() }
        let error = await httpError { _ = try await client.execute(HTTPRequest(url: env.plain.url("/loop"))) }
        #expect(error == .tooManyRedirects(url: env.plain.url("/loop").absoluteString))
    }

    @Test func redirectsCanBeReturnedUnfollowed() async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient(configuration: HTTPClientConfiguration(maxRedirects: 0))
        defer { client.shutdown() }
        let response = try await client.execute(HTTPRequest(url: redirect(env.plain, to: "/echo")))
        #expect(response.status == 302)
        #expect(response.headers["Location"] == "/echo")
        #expect(String(decoding: response.body, as: UTF8.self) == "redirecting\n")
    }

    @Test func streamAndDownloadFollowRedirects() async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient()
        defer { client.shutdown() }
        let streamed = try await client.stream(HTTPRequest(url: redirect(env.plain, to: "/big?bytes=1000")))
        #expect(streamed.status == 200)
        #expect(streamed.url == env.plain.url("/big?bytes=1000"))
        var total = 0
        for try await chunk in streamed.body { total += chunk.count }
        #expect(total == 1000)

        let file = env.scratch.file("redirected-\(UUID().uuidString).bin")
        let downloaded = try await client.download(HTTPRequest(url: redirect(env.plain, to: "/big?bytes=5000")), to: file)
        #expect(downloaded.status == 200)
        #expect(try Data(contentsOf: file).count == 5000)
    }
}
