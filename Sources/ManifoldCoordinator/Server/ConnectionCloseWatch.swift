import NIOCore
import Synchronization

/// Tells a request handler that its connection closed, without reading the connection's request stream.
///
/// A held poll must end when its agent goes away, so that no lease is granted into a closed connection. Hummingbird's
/// `consumeWithCancellationOnInboundClose` does that by reading the request stream, and then closes the connection
/// after the response: every poll answer cost the agent a new TCP connection and TLS handshake, for each job and each
/// poll timeout. This handler sits in every connection's pipeline and only notices the end of its input, so the
/// connection stays open for the agent's next request.
///
/// The connection's end of file is seen while a request is handled because the request stream reads ahead (NIO's
/// async channel keeps reading until its buffer reaches its high watermark; a client waiting for an answer sends
/// nothing more).
final class ConnectionCloseWatch: ChannelInboundHandler, RemovableChannelHandler, Sendable {
    typealias InboundIn = NIOAny

    private struct State {
        var closed = false
        var nextToken = 0
        var onClose: [Int: @Sendable () -> Void] = [:]
    }
    private let state = Mutex(State())

    func channelInactive(context: ChannelHandlerContext) {
        closed()
        context.fireChannelInactive()
    }

    /// The server allows half-closed connections: a client's end of file arrives as `inputClosed`, and the
    /// connection closes only once the answer is written. A client that sent its end of file waits for nothing.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event { closed() }
        context.fireUserInboundEventTriggered(event)
    }

    private func closed() {
        let waiting = state.withLock { state in
            state.closed = true
            defer { state.onClose = [:] }
            return Array(state.onClose.values)
        }
        for wake in waiting { wake() }
    }

    /// Whether the connection has closed.
    var isClosed: Bool { state.withLock { $0.closed } }

    /// Runs `operation` in a task that is cancelled when the connection closes (or when the caller is cancelled).
    /// Returns its value and whether the connection had closed by the time it returned.
    func cancellingOnClose<Value: Sendable>(
        _ operation: @escaping @Sendable () async throws -> Value
    ) async throws -> (value: Value, closed: Bool) {
        let running = Task { try await operation() }
        let token = state.withLock { state -> Int? in
            guard !state.closed else { return nil }
            defer { state.nextToken += 1 }
            state.onClose[state.nextToken] = { running.cancel() }
            return state.nextToken
        }
        if token == nil { running.cancel() }
        defer {
            if let token { _ = state.withLock { $0.onClose.removeValue(forKey: token) } }
        }
        let value = try await withTaskCancellationHandler {
            try await running.value
        } onCancel: {
            running.cancel()
        }
        return (value, isClosed)
    }
}

extension CoordinatorContext {
    /// The watch on this request's connection (every connection the coordinator accepts has one).
    func connectionCloseWatch() async throws -> ConnectionCloseWatch {
        try await channel.pipeline.handler(type: ConnectionCloseWatch.self).get()
    }
}
