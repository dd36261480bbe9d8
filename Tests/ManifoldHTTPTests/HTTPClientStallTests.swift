import Foundation
import ManifoldTestSupport
import Testing

@testable import ManifoldHTTP

/// Long transfers: no total limit when a request asks for none, and stall detection instead.
@Suite struct HTTPClientStallTests {
    @Test func anUnlimitedRequestOutlivesTheClientsRequestTimeout() async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient(configuration: HTTPClientConfiguration(requestTimeout: .milliseconds(500)))
        defer { client.shutdown() }
        // About 1.5 s of data, a chunk every half second: never stalled, but longer than the 500 ms limit.
        let url = env.plain.url("/drip?chunks=4&interval=0.5&size=16")
        let limited = await httpError { _ = try await client.execute(HTTPRequest(url: url)) }
        #expect(limited == .timedOut(url: url.absoluteString))

        let response = try await client.stream(HTTPRequest(url: url, timeout: HTTPRequest.unlimited))
        var received = Data()
        for try await chunk in response.body { received.append(chunk) }
        #expect(response.status == 200)
        #expect(received.count == 64)
    }

    @Test func aStalledServerTimesOutAfterTheStallTimeout() async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient(configuration: HTTPClientConfiguration(stallTimeout: .seconds(1)))
        defer { client.shutdown() }
        let url = env.plain.url("/slow?delay=60")
        let start = ContinuousClock.now
        let error = await httpError {
            _ = try await client.execute(HTTPRequest(url: url, timeout: HTTPRequest.unlimited))
        }
        #expect(error == .timedOut(url: url.absoluteString))
        #expect(elapsed(since: start) < .seconds(15))
    }
}
