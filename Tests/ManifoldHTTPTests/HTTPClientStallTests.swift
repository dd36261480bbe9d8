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

    /// A request silent by design (a held long poll) is not cut by the stall check, only by its own total; one without
    /// a total keeps the stall check whatever it asks, so nothing ever runs unbounded.
    @Test func aRequestSilentByDesignOutlivesTheStallTimeoutAndIsBoundedByItsTotal() async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient(configuration: HTTPClientConfiguration(stallTimeout: .seconds(1)))
        defer { client.shutdown() }
        let answered = try await client.execute(
            HTTPRequest(url: env.plain.url("/slow?delay=3"), timeout: .seconds(30), checksStalls: false))
        #expect(answered.status == 200)

        let held = env.plain.url("/slow?delay=60")
        let start = ContinuousClock.now
        let bounded = await httpError {
            _ = try await client.execute(HTTPRequest(url: held, timeout: .seconds(4), checksStalls: false))
        }
        #expect(bounded == .timedOut(url: held.absoluteString))
        #expect(elapsed(since: start) >= .seconds(3), "cut by the 1 s stall check, not by its 4 s total")

        let unbounded = await httpError {
            _ = try await client.execute(HTTPRequest(url: held, timeout: HTTPRequest.unlimited, checksStalls: false))
        }
        #expect(unbounded == .timedOut(url: held.absoluteString))
    }
}
