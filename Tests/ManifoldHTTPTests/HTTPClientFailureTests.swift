import Foundation
import ManifoldTestSupport
import Testing

@testable import ManifoldHTTP

@Suite struct HTTPClientFailureTests {
    @Test func requestTimeout() async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient()
        defer { client.shutdown() }
        let url = env.plain.url("/slow?delay=60")
        let start = ContinuousClock.now
        let error = await httpError {
            _ = try await client.execute(HTTPRequest(url: url, timeout: .milliseconds(400)))
        }
        #expect(error == .timedOut(url: url.absoluteString))
        #expect(error?.isRetryable == true)
        #expect(elapsed(since: start) < .seconds(15))
    }

    /// An idle client's transfer thread sleeps: it wakes for work and for curl's own timers, never on a clock of its
    /// own — neither with nothing to do nor while a slow answer (a held long poll) is awaited.
    @Test func anIdleClientOrOneAwaitingASlowAnswerDoesNotWake() async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient()
        defer { client.shutdown() }
        _ = try await client.execute(HTTPRequest(url: env.plain.url("/echo")))
        try await Task.sleep(for: .milliseconds(200))
        let idle = client.loopWakeups
        try await Task.sleep(for: .seconds(3))
        #expect(client.loopWakeups - idle <= 1, "woke \(client.loopWakeups - idle) times in 3 s with nothing to do")

        // A held long poll: silent by design, so no stall check either (libcurl would wake each second to measure it).
        let held = Task {
            try await client.execute(
                HTTPRequest(url: env.plain.url("/slow?delay=60"), timeout: .seconds(90), checksStalls: false))
        }
        try await waitUntil { client.inFlightTransfers == 1 }
        try await Task.sleep(for: .milliseconds(500))
        let waiting = client.loopWakeups
        try await Task.sleep(for: .seconds(3))
        #expect(client.inFlightTransfers == 1)
        #expect(client.loopWakeups - waiting <= 1, "woke \(client.loopWakeups - waiting) times in 3 s awaiting one answer")
        held.cancel()
        _ = await held.result
    }

    @Test func clientDefaultTimeout() async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient(configuration: HTTPClientConfiguration(requestTimeout: .milliseconds(300)))
        defer { client.shutdown() }
        let start = ContinuousClock.now
        let error = await httpError { _ = try await client.execute(HTTPRequest(url: env.plain.url("/slow?delay=60"))) }
        #expect(error == .timedOut(url: env.plain.url("/slow?delay=60").absoluteString))
        #expect(elapsed(since: start) < .seconds(15))
    }

    @Test func cancellingTheTaskAbortsPromptly() async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient()
        defer { client.shutdown() }
        let task = Task { try await client.execute(HTTPRequest(url: env.plain.url("/slow?delay=60"))) }
        try await waitUntil { client.inFlightTransfers == 1 }
        let start = ContinuousClock.now
        task.cancel()
        let result = await task.result
        #expect(elapsed(since: start) < .seconds(15))
        guard case .failure(let error) = result else {
            Issue.record("a cancelled request returned a response")
            return
        }
        #expect(error as? HTTPClientError == .cancelled)
        #expect(client.inFlightTransfers == 0)
    }

    @Test func alreadyCancelledTaskDoesNotSend() async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient()
        defer { client.shutdown() }
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await client.execute(HTTPRequest(url: env.plain.url("/echo")))
        }
        let result = await task.result
        guard case .failure(let error) = result else {
            Issue.record("a cancelled task sent its request")
            return
        }
        #expect(error as? HTTPClientError == .cancelled)
    }

    @Test func connectionRefused() async throws {
        let port = try Loopback.freePort()
        let client = HTTPClient()
        defer { client.shutdown() }
        let url = URL(string: "http://127.0.0.1:\(port)/v2/")!
        let error = await httpError { _ = try await client.execute(HTTPRequest(url: url)) }
        guard case .connect(let failedURL, let message) = error else {
            Issue.record("expected a connect failure, got \(String(describing: error))")
            return
        }
        #expect(failedURL == url.absoluteString)
        #expect(!message.isEmpty)
        #expect(error?.isRetryable == true)
    }

    @Test func shutdownAbortsInFlightAndLaterRequests() async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient()
        let task = Task { try await client.execute(HTTPRequest(url: env.plain.url("/slow?delay=60"))) }
        try await waitUntil { client.inFlightTransfers == 1 }
        let start = ContinuousClock.now
        client.shutdown()
        let result = await task.result
        #expect(elapsed(since: start) < .seconds(15))
        guard case .failure(let error) = result else {
            Issue.record("a request survived shutdown")
            return
        }
        #expect(error as? HTTPClientError == .shutDown)
        let later = await httpError { _ = try await client.execute(HTTPRequest(url: env.plain.url("/echo"))) }
        #expect(later == .shutDown)
    }

    @Test func releasedClientStopsItsThread() async throws {
        let env = try HTTPTestEnvironment.shared()
        var client: HTTPClient? = HTTPClient()
        _ = try await client?.execute(HTTPRequest(url: env.plain.url("/echo")))
        client = nil  // deinit shuts the loop down; nothing to assert but that it does not crash or hang
    }

    @Test func unsupportedSchemeIsInvalid() async throws {
        let client = HTTPClient()
        defer { client.shutdown() }
        let error = await httpError { _ = try await client.execute(HTTPRequest(url: URL(string: "ftp://127.0.0.1/x")!)) }
        guard case .invalidRequest = error else {
            Issue.record("expected invalidRequest, got \(String(describing: error))")
            return
        }
    }

    @Test func descriptionsNameTheURLAndWhatToDo() {
        let url = "https://127.0.0.1:5000/v2/"
        let tls = HTTPClientError.tls(url: url, message: "SSL certificate problem: unable to get local issuer certificate")
        #expect(tls.description.contains(url))
        #expect(tls.description.contains("--registry-ca"))
        #expect(tls.description.contains("unable to get local issuer certificate"))
        #expect(HTTPClientError.timedOut(url: url).description.contains(url))
        #expect(HTTPClientError.connect(url: url, message: "refused").description.contains(url))
        #expect(!HTTPClientError.cancelled.isRetryable)
        #expect(HTTPClientError.transport(url: url, code: 56, message: "reset").isRetryable)
    }
}
