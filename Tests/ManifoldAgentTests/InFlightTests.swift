import Foundation
import ManifoldHTTP
import ManifoldTestSupport
import Synchronization
import Testing

@testable import ManifoldAgent

/// A request on the wire when its loop is cancelled (the log uploader when the build ends, the lease keeper when the
/// report is in) gets its answer, so its connection stays open for the agent's next request; one that outlives the
/// grace is cancelled after all; a loop already cancelled sends nothing more.
@Suite struct InFlightTests {
    /// Invariant: cancelling the caller of a request under way costs no connection. The same cancellation without
    /// ``InFlight`` is run first, through the same connection-counting proxy, and must cost one: otherwise this test
    /// could not tell the two apart.
    @Test func aRequestUnderWayWhenItsLoopIsCancelledFinishesOnItsConnection() async throws {
        let scratch = try ScratchDirectory(prefix: "in-flight")
        defer { scratch.remove() }
        let server = try TestHTTPServer.start(logDirectory: scratch.url)
        defer { server.stop() }

        /// Sends a slow request through a counting proxy, cancels its task once the server holds it, sends one more
        /// request, and counts the connections the client opened.
        func connections(
            expected: Int, cancelling send: @escaping @Sendable (HTTPClient, URL) async throws -> Int
        ) async throws -> (status: Result<Int, any Error>, connections: Int) {
            let proxy = try TCPFaultProxy.start(backendPort: server.port)
            defer { proxy.stop() }
            let client = HTTPClient()
            let base = "http://127.0.0.1:\(proxy.port)"
            let tag = UUID().uuidString
            let sending = Task { try await send(client, URL(string: "\(base)/slow?delay=2&tag=\(tag)")!) }
            // Cancelled only once the request is on the wire: the server is sleeping on it.
            let held = try await ProcessProbe.waitUntil(.seconds(30)) {
                let answer = try? await client.execute(HTTPRequest(url: server.url("/held?tag=\(tag)")))
                return answer.map { String(decoding: $0.body, as: UTF8.self).contains("\"held\": 1") } ?? false
            }
            try #require(held, "the server never held the slow request")
            sending.cancel()
            let status = await sending.result
            #expect(try await client.execute(HTTPRequest(url: URL(string: "\(base)/echo")!)).status == 200)
            await client.shutdownAndWait()
            // The proxy logs a connection once both of its ends have closed (a cut one once the server is done
            // sleeping on it), so the count is read once it reaches what is expected, and again a moment later.
            _ = try await ProcessProbe.waitUntil(.seconds(30)) { proxy.connections().count >= expected }
            try await Task.sleep(for: .seconds(1))
            return (status, proxy.connections().count)
        }

        let aborted = try await connections(expected: 2) { client, url in try await client.execute(HTTPRequest(url: url)).status }
        #expect(throws: (any Error).self) { try aborted.status.get() }
        #expect(aborted.connections == 2, "a cancelled transfer closes its connection: the next request opens another")

        let finished = try await connections(expected: 1) { client, url in
            try await InFlight.finish(grace: .seconds(30)) { try await client.execute(HTTPRequest(url: url)).status }
        }
        #expect(try finished.status.get() == 200)
        #expect(finished.connections == 1, "the request under way finished and the next one went on its connection")
    }

    /// Invariant: a request still unanswered `grace` after the cancellation is cancelled too, so a coordinator that
    /// stopped answering holds a job's conclusion for the grace, not for a whole request timeout.
    @Test func aRequestPastTheGraceIsCancelled() async throws {
        let (requests, requested) = AsyncStream.makeStream(of: Void.self)
        let waiting = Task {
            try await InFlight.finish(grace: .milliseconds(200)) {
                requested.yield()
                try await Task.sleep(for: .seconds(60))
                return "answered"
            }
        }
        // Cancelled only once the request runs, so the grace is what ends it.
        for await _ in requests { break }
        let cancelled = ContinuousClock.now
        waiting.cancel()
        await #expect(throws: CancellationError.self) { try await waiting.value }
        let lasted = ContinuousClock.now - cancelled
        #expect(lasted >= .milliseconds(200), "the request ran on for its grace before it was cancelled: \(lasted)")
        #expect(lasted < .seconds(30), "cancelled after its grace, not after the full 60 s: \(lasted)")
    }

    /// Invariant: a loop cancelled before it sends a request sends none.
    @Test func aCancelledLoopSendsNothingMore() async throws {
        let sent = Mutex(0)
        let loop = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await InFlight.finish(grace: .seconds(30)) {
                sent.withLock { $0 += 1 }
                return 200
            }
        }
        await #expect(throws: CancellationError.self) { try await loop.value }
        #expect(sent.withLock { $0 } == 0)
    }
}
