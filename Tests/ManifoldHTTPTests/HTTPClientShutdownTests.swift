import Foundation
import ManifoldTestSupport
import Synchronization
import Testing

@testable import ManifoldHTTP

/// Many transfers ended at once while the client shuts down or is released, and a process exiting with clients
/// open: every request ends, and no client thread outlives its client's shutdown or the process's exit handlers.
@Suite struct HTTPClientShutdownTests {
    static let held = 200

    @Test(.timeLimit(.minutes(5)))
    func manyHeldTransfersCancelledAtOnceAllEndCancelledAndShutdownWaitsForTheThread() async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = env.trustingClient()
        let tag = UUID().uuidString
        let url = env.tls.url("/slow?delay=120&tag=\(tag)")
        let requests = (0..<Self.held).map { _ in
            Task {
                await httpError {
                    _ = try await client.execute(HTTPRequest(url: url, timeout: .seconds(300), checksStalls: false))
                }
            }
        }
        try await waitUntilServerHolds(Self.held, tag: tag, env: env)
        #expect(client.inFlightTransfers == Self.held)

        // The cancellations reach the client's thread before the shutdown does, while every transfer is in flight.
        for request in requests { request.cancel() }
        await client.shutdownAndWait()
        #expect(client.loop.isStopped)
        #expect(client.inFlightTransfers == 0)
        var errors: [HTTPClientError?] = []
        for request in requests { errors.append(await request.value) }
        #expect(errors.allSatisfy { $0 == .cancelled }, "other endings: \(Set(errors.map { "\(String(describing: $0))" }))")
        let later = await httpError { _ = try await client.execute(HTTPRequest(url: env.tls.url("/echo"))) }
        #expect(later == .shutDown)
    }

    @Test(.timeLimit(.minutes(5)))
    func shuttingDownWithManyTransfersInFlightEndsEachWithShutDown() async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = env.trustingClient()
        let tag = UUID().uuidString
        let url = env.tls.url("/slow?delay=120&tag=\(tag)")
        let count = Self.held / 2
        let requests = (0..<count).map { _ in
            Task {
                await httpError {
                    _ = try await client.execute(HTTPRequest(url: url, timeout: .seconds(300), checksStalls: false))
                }
            }
        }
        try await waitUntilServerHolds(count, tag: tag, env: env)

        await client.shutdownAndWait()
        #expect(client.loop.isStopped)
        var errors: [HTTPClientError?] = []
        for request in requests { errors.append(await request.value) }
        #expect(errors.allSatisfy { $0 == .shutDown }, "other endings: \(Set(errors.map { "\(String(describing: $0))" }))")
    }

    /// Streams keep their client alive; the client is released with the last of them, while the cancellations of the
    /// others are still being carried out, and its thread then stops.
    @Test(.timeLimit(.minutes(5)))
    func releasingTheClientWithItsLastStreamStopsItsThread() async throws {
        let env = try HTTPTestEnvironment.shared()
        var client: HTTPClient? = env.trustingClient()
        let released = WeakReference(client)
        let loop = try #require(client?.loop)
        let count = Self.held / 2
        // One chunk at once, the next two minutes later: every reader then waits inside the body stream.
        let url = env.tls.url("/drip?chunks=2&interval=120&size=16")
        let reading = Tally()
        var readers = (0..<count).map { _ in
            Task {
                await httpError {
                    guard
                        let response = try await released.object?.stream(
                            HTTPRequest(url: url, timeout: .seconds(300), checksStalls: false))
                    else { throw HTTPClientError.shutDown }
                    for try await _ in response.body { reading.add() }
                }
            }
        }
        let deadline = ContinuousClock.now + .seconds(120)
        while reading.count < count && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(reading.count == count, "every stream delivers its first chunk")
        // Lets the last reader get back to waiting for its next chunk.
        try await Task.sleep(for: .milliseconds(200))
        client = nil

        for reader in readers { reader.cancel() }
        var errors: [HTTPClientError?] = []
        for reader in readers { errors.append(await reader.value) }
        readers.removeAll()
        #expect(errors.allSatisfy { $0 == .cancelled }, "other endings: \(Set(errors.map { "\(String(describing: $0))" }))")
        await loop.waitUntilStopped()
        #expect(released.object == nil)
        #expect(loop.isStopped)
        #expect(loop.inFlightTransfers == 0)
    }

    /// The throughput benchmark crashed after its figures were printed ("corrupted double-linked list"): OpenSSL's exit
    /// handler freed its global state while client threads were still inside libcurl or still exiting. The probe exits
    /// with half its clients holding a request and half just released, and fails when a thread is alive after that
    /// handler.
    @Test(.timeLimit(.minutes(5)))
    func aProcessExitingWithClientsOpenOrJustReleasedWaitsForTheirThreads() async throws {
        let env = try HTTPTestEnvironment.shared()
        let result = try await runCommand(
            try exitProbeBinary(), [env.tls.baseURL.absoluteString, env.certificates.caCertificate.path, "24"],
            // Freed memory is overwritten, so a use after free shows.
            environment: ["MALLOC_PERTURB_": "165"], timeout: 180)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("12 clients released, 12 holding a request; exiting"), "\(result.stdout)")
    }

    /// Polls the server until it holds `count` requests tagged `tag` (at most two minutes: hundreds of TLS handshakes
    /// on a loaded machine).
    private func waitUntilServerHolds(
        _ count: Int, tag: String, env: HTTPTestEnvironment, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let observer = env.trustingClient()
        defer { observer.shutdown() }
        let deadline = ContinuousClock.now + .seconds(120)
        var held = 0
        while ContinuousClock.now < deadline {
            let answer = try await observer.execute(HTTPRequest(url: env.tls.url("/held?tag=\(tag)")))
            held = (try JSONSerialization.jsonObject(with: answer.body) as? [String: Int])?["held"] ?? 0
            if held == count { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("the server holds \(held) of \(count) requests", sourceLocation: sourceLocation)
    }

    /// `manifold-http-exit-probe`, built next to this test bundle.
    private func exitProbeBinary() throws -> String {
        guard let built = builtBinary("manifold-http-exit-probe") else {
            throw TestEnvironmentError(
                "manifold-http-exit-probe was not found next to \(CommandLine.arguments[0]); run `swift build --build-tests`")
        }
        return built
    }
}

/// Refers to an object without keeping it alive, and can be captured by concurrent code.
private final class WeakReference<Object: AnyObject & Sendable>: Sendable {
    weak let object: Object?

    init(_ object: Object?) { self.object = object }
}

/// A count shared by concurrent tasks.
private final class Tally: Sendable {
    private let value = Mutex(0)

    var count: Int { value.withLock { $0 } }

    func add() { value.withLock { $0 += 1 } }
}
