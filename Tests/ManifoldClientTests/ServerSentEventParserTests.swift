import Foundation
import ManifoldAPI
import ManifoldClient
import ManifoldHTTP
import Testing

@Suite struct ServerSentEventParserTests {
    @Test func splitsMessagesAcrossChunksAndSkipsComments() {
        var parser = ServerSentEventParser()
        #expect(parser.feed(Data(": keep-alive\n\nid: 7\nevent: job".utf8)).isEmpty)
        let messages = parser.feed(Data(".state\ndata: {\"a\":1}\n\nid: 8\ndata: x\ndata: y\n\n".utf8))
        #expect(messages.count == 2)
        #expect(messages[0] == .init(id: "7", event: "job.state", data: "{\"a\":1}"))
        #expect(messages[1].id == "8")
        #expect(messages[1].data == "x\ny")
    }

    @Test func acceptsCRLFLineEnds() {
        var parser = ServerSentEventParser()
        let messages = parser.feed(Data("id: 1\r\ndata: one\r\n\r\n".utf8))
        #expect(messages.map(\.data) == ["one"])
    }
}

@Suite struct CoordinatorClientTests {
    @Test func buildsURLsUnderABasePathAndEncodesQueries() {
        let client = CoordinatorClient(baseURL: URL(string: "https://ci.example.com:8443/manifold/")!, token: nil)
        let url = client.url("/api/v1/builds", query: [("image", "reg/app+x"), ("limit", "5")])
        #expect(url.absoluteString == "https://ci.example.com:8443/manifold/api/v1/builds?image=reg/app%2Bx&limit=5")
        #expect(CoordinatorClient.segment("sha256:ab/cd") == "sha256:ab%2Fcd")
    }

    @Test func errorAnswersBecomeOneSentence() {
        let body = Data(
            #"{"error":{"code":"INVALID","message":"tags[0] \"Bad Tag\" is not a valid tag","field":"tags[0]"}}"#.utf8)
        let error = CoordinatorClientError.from(status: 400, body: body, headers: [:])
        #expect(
            error
                == .api(
                    status: 400, code: "INVALID", message: "tags[0] \"Bad Tag\" is not a valid tag", field: "tags[0]",
                    retryAfter: nil))
        #expect(error.description == "tags[0] \"Bad Tag\" is not a valid tag. (HTTP 400)")
        #expect(!error.isRetryable)
        #expect(CoordinatorClientError.api(status: 503, code: "X", message: "m", field: nil, retryAfter: 1).isRetryable)
        let plain = CoordinatorClientError.from(status: 502, body: Data("Bad Gateway\n".utf8), headers: ["Retry-After": "3"])
        #expect(plain == .api(status: 502, code: "HTTP_502", message: "Bad Gateway", field: nil, retryAfter: 3))
        #expect(plain.isRetryable)
    }

    @Test func connectionRefusedIsRetryable() async throws {
        // Port 9 on loopback: nothing listens there in the test environment.
        let client = CoordinatorClient(baseURL: URL(string: "http://127.0.0.1:9")!, token: "t")
        await #expect {
            _ = try await client.build(id: "b1")
        } throws: { error in
            (error as? CoordinatorClientError)?.isRetryable == true
        }
    }
}
