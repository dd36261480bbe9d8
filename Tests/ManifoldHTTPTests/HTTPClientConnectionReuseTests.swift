import Foundation
import ManifoldHTTP
import ManifoldTestSupport
import Testing

/// A client keeps the connections a burst of requests opened and reuses them for the next burst, however few
/// requests ran in between: a new connection is a TCP and TLS handshake (an agent pays them at the start of every job).
@Suite struct HTTPClientConnectionReuseTests {
    @Test func burstsAfterALoneRequestReuseTheBurstsConnections() async throws {
        let env = try HTTPTestEnvironment.shared()
        let proxy = try TCPFaultProxy.start(backendPort: env.tls.port)
        defer { proxy.stop() }
        let client = env.trustingClient()
        let base = "https://127.0.0.1:\(proxy.port)"
        let burst = 6
        for round in 0..<3 {
            // Six requests side by side (each held a second, so they overlap), then one alone: with libcurl's default
            // cache (four idle connections per transfer under way) the lone request's return closed two, and the next
            // burst opened them again (ten connections in all).
            try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<burst {
                    group.addTask {
                        try await client.execute(HTTPRequest(url: URL(string: "\(base)/slow?delay=1&tag=r\(round)-\(index)")!))
                            .status
                    }
                }
                for try await status in group { #expect(status == 200) }
            }
            #expect(try await client.execute(HTTPRequest(url: URL(string: "\(base)/echo")!)).status == 200)
        }
        client.shutdown()
        // The proxy logs a connection when it ends; the client's shutdown ends them all.
        let deadline = ContinuousClock.now + .seconds(20)
        var ended = proxy.connections()
        while ended.count < 2, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            ended = proxy.connections()
        }
        try await Task.sleep(for: .milliseconds(500))
        ended = proxy.connections()
        // At most one connection per request of a burst (fewer when a starved test process did not overlap them all).
        #expect(
            (2...burst).contains(ended.count), "\(ended.count) connections for three bursts of \(burst) requests: \(ended)")
    }

    /// More requests at once than the connection cache's first size (32): each keeps its connection for the next
    /// burst. With a fixed cache, libcurl counted the 40 connections in use against 32 and closed eight as their
    /// requests ended, and the next burst opened eight again (48 in all).
    @Test func moreRequestsAtOnceThanTheCacheFirstHoldsKeepTheirConnections() async throws {
        let scratch = try ScratchDirectory(prefix: "wide-bursts")
        defer { scratch.remove() }
        let server = try TestHTTPServer.start(logDirectory: scratch.url)
        defer { server.stop() }
        let proxy = try TCPFaultProxy.start(backendPort: server.port)
        defer { proxy.stop() }
        let client = HTTPClient()
        let observer = HTTPClient()
        defer { observer.shutdown() }
        let base = "http://127.0.0.1:\(proxy.port)"
        let burst = 40
        for round in 0..<2 {
            let tag = "wide-\(round)-\(UUID().uuidString)"
            try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<burst {
                    group.addTask {
                        try await client.execute(HTTPRequest(url: URL(string: "\(base)/slow?delay=2&tag=\(tag)")!)).status
                    }
                }
                // More than the cache's first 32 must be under way at once, or a fixed cache would pass too.
                let overlapped = try await ProcessProbe.waitUntil(.seconds(30)) {
                    let answer = try? await observer.execute(HTTPRequest(url: server.url("/held?tag=\(tag)")))
                    let held = answer.flatMap { try? JSONDecoder().decode([String: Int].self, from: $0.body) }?["held"]
                    return (held ?? 0) > 32
                }
                #expect(overlapped, "fewer than 33 of the \(burst) requests were held at once")
                for try await status in group { #expect(status == 200) }
            }
        }
        await client.shutdownAndWait()
        // The proxy logs a connection once both of its ends have closed; the client's shutdown closed them all.
        _ = try await ProcessProbe.waitUntil(.seconds(20)) { proxy.connections().count >= burst }
        try await Task.sleep(for: .milliseconds(500))
        let opened = proxy.connections().count
        #expect(opened <= burst, "\(opened) connections for two bursts of \(burst) requests")
    }
}
