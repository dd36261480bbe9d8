import Foundation
import ManifoldHTTP
import ManifoldTestSupport
import Testing

@Suite struct HTTPClientBasicTests {
    @Test func getSendsHeadersAndQuery() async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient()
        defer { client.shutdown() }
        let url = env.plain.url("/echo?x=1&y=two")
        let response = try await client.execute(
            HTTPRequest(url: url, headers: ["X-Test": "hello", "Accept": "application/json"]))
        #expect(response.status == 200)
        #expect(response.url == url)
        #expect(response.httpVersion == .http1_1)
        #expect(response.headers["content-type"] == "application/json")
        let echo = try Echo(response)
        #expect(echo.method == "GET")
        #expect(echo.query == "x=1&y=two")
        #expect(echo.header("X-Test") == ["hello"])
        #expect(echo.header("Accept") == ["application/json"])
        #expect(echo.header("User-Agent") == ["manifold/\(manifoldHTTPVersion)"])
        #expect(echo.header("Expect").isEmpty)
        #expect(echo.bodyLength == 0)
    }

    @Test func headReturnsHeadersWithoutBody() async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient()
        defer { client.shutdown() }
        let response = try await client.execute(HTTPRequest(method: "HEAD", url: env.plain.url("/big?bytes=5000")))
        #expect(response.status == 200)
        #expect(response.headers["Content-Length"] == "5000")
        #expect(response.body.isEmpty)
    }

    @Test(arguments: ["PUT", "POST", "PATCH", "DELETE"])
    func methodsWithBodiesAreSentExactly(method: String) async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient()
        defer { client.shutdown() }
        let body = Data((0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        let response = try await client.execute(
            HTTPRequest(
                method: method, url: env.plain.url("/echo"), headers: ["Content-Type": "application/octet-stream"],
                body: .bytes(body)))
        let echo = try Echo(response)
        #expect(echo.method == method)
        #expect(echo.bodyLength == body.count)
        #expect(echo.sha256 == sha256Hex(body))
        #expect(echo.header("Content-Type") == ["application/octet-stream"])
        #expect(echo.header("Content-Length") == ["\(body.count)"])
        #expect(echo.header("Expect").isEmpty)
    }

    @Test func bodylessPostAndDelete() async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient()
        defer { client.shutdown() }
        let post = try Echo(await client.execute(HTTPRequest(method: "POST", url: env.plain.url("/echo"))))
        #expect(post.method == "POST")
        #expect(post.header("Content-Length") == ["0"])
        let delete = try Echo(await client.execute(HTTPRequest(method: "DELETE", url: env.plain.url("/echo"))))
        #expect(delete.method == "DELETE")
        #expect(delete.bodyLength == 0)
    }

    @Test func multiValuedResponseHeaders() async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient()
        defer { client.shutdown() }
        let response = try await client.execute(HTTPRequest(url: env.plain.url("/headers")))
        #expect(response.headers.values("x-multi") == ["a", "b"])
        #expect(response.headers.values("Set-Cookie") == ["one=1", "two=2"])
        #expect(response.headers["X-MULTI"] == "a")
        #expect(String(decoding: response.body, as: UTF8.self) == "headers\n")
    }

    @Test func errorStatusIsAResponse() async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient()
        defer { client.shutdown() }
        let response = try await client.execute(HTTPRequest(url: env.plain.url("/status/404")))
        #expect(response.status == 404)
        #expect(String(decoding: response.body, as: UTF8.self) == "status 404\n")
    }

    @Test func uploadFromFileRegion() async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient()
        defer { client.shutdown() }
        let content = Data((0..<1_000_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) })
        let file = env.scratch.file("upload-\(UUID().uuidString).bin")
        try content.write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let region = content[1000..<301_000]
        let response = try await client.execute(
            HTTPRequest(
                method: "PUT", url: env.plain.url("/upload"),
                body: .file(path: file.path, offset: 1000, length: Int64(region.count))))
        let echo = try Echo(response)
        #expect(echo.method == "PUT")
        #expect(echo.bodyLength == region.count)
        #expect(echo.sha256 == sha256Hex(Data(region)))

        let tail = try Echo(
            await client.execute(
                HTTPRequest(method: "POST", url: env.plain.url("/upload"), body: .file(path: file.path, offset: 999_000))))
        #expect(tail.bodyLength == 1000)
        #expect(tail.sha256 == sha256Hex(Data(content[999_000...])))
    }

    @Test func uploadFromMissingFileIsInvalid() async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient()
        defer { client.shutdown() }
        let error = await httpError {
            _ = try await client.execute(
                HTTPRequest(method: "PUT", url: env.plain.url("/upload"), body: .file(path: env.scratch.path + "/nope")))
        }
        guard case .invalidRequest = error else {
            Issue.record("expected invalidRequest, got \(String(describing: error))")
            return
        }
    }

    @Test func downloadWritesBodyToFile() async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient()
        defer { client.shutdown() }
        let file = env.scratch.file("download-\(UUID().uuidString).bin")
        defer { try? FileManager.default.removeItem(at: file) }
        let response = try await client.download(HTTPRequest(url: env.plain.url("/big?bytes=3000000")), to: file)
        #expect(response.status == 200)
        #expect(response.body.isEmpty)
        let written = try Data(contentsOf: file)
        #expect(written.count == 3_000_000)
        #expect(sha256Hex(written) == response.headers["X-Sha256"])

        let missing = env.scratch.file("download-\(UUID().uuidString).bin")
        let notFound = try await client.download(HTTPRequest(url: env.plain.url("/status/404")), to: missing)
        #expect(notFound.status == 404)
        #expect(String(decoding: notFound.body, as: UTF8.self) == "status 404\n")
        #expect(try Data(contentsOf: missing).isEmpty)
    }

    @Test func responseLargerThanLimitFails() async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient(configuration: HTTPClientConfiguration(maxResponseBodySize: 10_000))
        defer { client.shutdown() }
        let url = env.plain.url("/big?bytes=200000")
        let error = await httpError { _ = try await client.execute(HTTPRequest(url: url)) }
        #expect(error == .responseTooLarge(url: url.absoluteString, limit: 10_000))
        let small = try await client.execute(HTTPRequest(url: env.plain.url("/big?bytes=10000")))
        #expect(small.body.count == 10_000)
    }

    @Test func http1_1PreferenceIsRecorded() async throws {
        // Python's http.server cannot speak HTTP/2, so over TLS `.automatic` offers h2 by ALPN and
        // falls back to HTTP/1.1; `.http1_1` never offers h2. Both must record HTTP/1.1.
        let env = try HTTPTestEnvironment.shared()
        for preference in [HTTPVersionPreference.http1_1, .automatic] {
            let client = env.trustingClient { $0.httpVersion = preference }
            defer { client.shutdown() }
            let response = try await client.execute(HTTPRequest(url: env.tls.url("/echo")))
            #expect(response.status == 200)
            #expect(response.httpVersion == .http1_1)
        }
    }

    @Test func manyConcurrentRequestsShareOneClient() async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient()
        defer { client.shutdown() }
        let statuses = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            for index in 0..<50 {
                group.addTask {
                    let response = try await client.execute(HTTPRequest(url: env.plain.url("/echo?i=\(index)")))
                    return (response.status, try Echo(response).query)
                }
            }
            return try await group.reduce(into: [(Int, String)]()) { $0.append($1) }
        }
        #expect(statuses.count == 50)
        #expect(statuses.allSatisfy { $0.0 == 200 })
        #expect(Set(statuses.map(\.1)) == Set((0..<50).map { "i=\($0)" }))
    }

    @Test func explicitProxyIsUsed() async throws {
        // The second server answers an absolute-URL request line itself, which shows it was used as the proxy.
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient(configuration: HTTPClientConfiguration(proxy: "http://127.0.0.1:\(env.otherOrigin.port)"))
        defer { client.shutdown() }
        let echo = try Echo(await client.execute(HTTPRequest(url: env.plain.url("/echo?via=proxy"))))
        #expect(echo.proxied)
        #expect(echo.query == "via=proxy")

        let direct = HTTPClient()
        defer { direct.shutdown() }
        #expect(try Echo(await direct.execute(HTTPRequest(url: env.plain.url("/echo")))).proxied == false)
    }
}
