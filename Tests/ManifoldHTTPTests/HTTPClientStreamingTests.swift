import Foundation
import ManifoldTestSupport
import Testing

@testable import ManifoldHTTP

@Suite struct HTTPClientStreamingTests {
    @Test func bodyArrivesIncrementally() async throws {
        // The server needs 30 s for all chunks: the first one must reach us while the transfer still runs.
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient()
        defer { client.shutdown() }
        let start = ContinuousClock.now
        var received = Data()
        do {
            let response = try await client.stream(HTTPRequest(url: env.plain.url("/drip?chunks=10&interval=3&size=10")))
            #expect(response.status == 200)
            for try await chunk in response.body {
                received.append(chunk)
                break
            }
        }
        #expect(elapsed(since: start) < .seconds(20))
        #expect(received == Data("AAAAAAAAAA".utf8))
        // Dropping the stream after the first chunk aborts the rest of the transfer.
        try await waitUntil { client.inFlightTransfers == 0 }
    }

    @Test func slowConsumerGetsEveryByte() async throws {
        // 8 MB against a ~1 MB high-water mark: the transfer is paused and resumed many times.
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient()
        defer { client.shutdown() }
        let response = try await client.stream(HTTPRequest(url: env.plain.url("/big?bytes=8000000")))
        var received = Data()
        for try await chunk in response.body {
            if received.isEmpty { try await Task.sleep(for: .milliseconds(300)) }
            received.append(chunk)
        }
        #expect(received.count == 8_000_000)
        #expect(sha256Hex(received) == response.headers["X-Sha256"])
        #expect(client.streamResumptions > 0)
        #expect(client.inFlightTransfers == 0)
    }

    @Test func streamOutlivesATemporaryClient() async throws {
        let env = try HTTPTestEnvironment.shared()
        let response = try await HTTPClient().stream(HTTPRequest(url: env.plain.url("/drip?chunks=3&interval=0.05")))
        var total = 0
        for try await chunk in response.body { total += chunk.count }
        #expect(total == 48)
    }

    @Test func cancellingTheConsumerAbortsTheTransfer() async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient()
        defer { client.shutdown() }
        let (firstChunk, firstChunkSeen) = AsyncStream<Void>.makeStream()
        let consumer = Task {
            let response = try await client.stream(HTTPRequest(url: env.plain.url("/drip?chunks=300&interval=0.1")))
            var chunks = 0
            for try await _ in response.body {
                chunks += 1
                firstChunkSeen.yield()
            }
            return chunks
        }
        for await _ in firstChunk { break }
        #expect(client.inFlightTransfers == 1)
        let start = ContinuousClock.now
        consumer.cancel()
        let result = await consumer.result
        #expect(elapsed(since: start) < .seconds(10))
        switch result {
        case .success(let chunks): Issue.record("the cancelled body ended as if complete after \(chunks) chunks")
        case .failure(let error): #expect(error as? HTTPClientError == .cancelled)
        }
        try await waitUntil { client.inFlightTransfers == 0 }
    }

    /// A consumer cancelled while it handles a chunk (not waiting in a read) learns it from its next read.
    @Test func aConsumerCancelledBetweenTwoReadsGetsCancelledNotAnEnd() async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient()
        defer { client.shutdown() }
        let (firstChunk, firstChunkSeen) = AsyncStream<Void>.makeStream()
        let (cancelled, cancellationDone) = AsyncStream<Void>.makeStream()
        let consumer = Task {
            let response = try await client.stream(HTTPRequest(url: env.plain.url("/drip?chunks=300&interval=0.1")))
            var body = response.body.makeAsyncIterator()
            _ = try await body.next()
            firstChunkSeen.yield()
            // Handling the chunk: the cancellation comes now, outside any read.
            for await _ in cancelled { break }
            #expect(Task.isCancelled)
            let read: Result<Data?, any Error>
            do { read = .success(try await body.next()) } catch { read = .failure(error) }
            // A read after the error (or the end) returns nil.
            #expect(try await body.next() == nil)
            return try read.get()
        }
        for await _ in firstChunk { break }
        consumer.cancel()
        cancellationDone.finish()
        switch await consumer.result {
        case .success(let chunk): Issue.record("the read after the cancellation returned \(String(describing: chunk))")
        case .failure(let error): #expect(error as? HTTPClientError == .cancelled)
        }
        try await waitUntil { client.inFlightTransfers == 0 }
    }

    @Test func droppingTheStreamAbortsTheTransfer() async throws {
        let env = try HTTPTestEnvironment.shared()
        let client = HTTPClient()
        defer { client.shutdown() }
        do {
            let response = try await client.stream(HTTPRequest(url: env.plain.url("/drip?chunks=300&interval=0.1")))
            #expect(response.status == 200)
            #expect(client.inFlightTransfers == 1)
        }
        try await waitUntil { client.inFlightTransfers == 0 }
    }
}
