import Foundation
import ManifoldClient
import ManifoldTestSupport
import Testing

/// A client given several coordinator URLs (replicas) keeps working while one of them is down.
@Suite struct CoordinatorFailoverTests {
    @Test func aRefusedConnectionIsSentAgainToTheNextReplicaAtOnce() async throws {
        let scratch = try ScratchDirectory(prefix: "failover")
        defer { scratch.remove() }
        let down = try TestHTTPServer.start(name: "down", logDirectory: scratch.url)
        let up = try TestHTTPServer.start(name: "up", logDirectory: scratch.url)
        defer { up.stop() }
        down.stop()
        let client = CoordinatorClient(baseURLs: [down.baseURL, up.baseURL], token: nil)
        let response = try await client.send("GET", "/status/200")
        #expect(response.status == 200)
        // The next call goes straight to the replica that answered.
        #expect(client.baseURL == up.baseURL)
        #expect(try await client.send("GET", "/echo").status == 200)
    }

    @Test func aReplicaThatCannotServeNowSendsTheNextCallElsewhere() async throws {
        let scratch = try ScratchDirectory(prefix: "failover")
        defer { scratch.remove() }
        let first = try TestHTTPServer.start(name: "first", logDirectory: scratch.url)
        let second = try TestHTTPServer.start(name: "second", logDirectory: scratch.url)
        defer {
            first.stop()
            second.stop()
        }
        let client = CoordinatorClient(baseURLs: [first.baseURL, second.baseURL], token: nil)
        // 503 is the caller's to retry (it may have had effects); the retry reaches the other replica.
        await #expect { _ = try await client.send("GET", "/status/503") } throws: { error in
            (error as? CoordinatorClientError)?.status == 503
        }
        #expect(client.baseURL == second.baseURL)
        // A 4xx is an answer about the request, not about the replica: no move.
        await #expect(throws: CoordinatorClientError.self) { _ = try await client.send("GET", "/status/404") }
        #expect(client.baseURL == second.baseURL)
    }

    @Test func whenEveryReplicaIsDownTheErrorNamesTheLastOneTried() async throws {
        // Ports held refusing, not stopped servers' ports: another test's server may be given one of those at once.
        let (a, b) = (try Loopback.RefusingPort(), try Loopback.RefusingPort())
        let urls = try [a, b].map { try #require(URL(string: "http://127.0.0.1:\($0.port)")) }
        let client = CoordinatorClient(baseURLs: urls, token: nil)
        await #expect { _ = try await client.send("GET", "/echo") } throws: { error in
            guard let error = error as? CoordinatorClientError, error.isRetryable else { return false }
            return "\(error)".contains("\(b.port)")
        }
        withExtendedLifetime((a, b)) {}
    }
}
