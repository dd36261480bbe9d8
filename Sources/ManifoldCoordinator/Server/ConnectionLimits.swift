import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOSSL
import NIOTLS

/// How long a connection may sit idle or unfinished, and how many may be open at once.
///
/// - The idle timeout counts from a connection's start (or the end of its last response) until a complete request
///   head arrives, and between the chunks of a request body. A held long poll or event stream is a request in
///   progress and never idle. Headers trickled a byte at a time (slowloris) never complete a head, so they are cut.
/// - The TLS-handshake timeout closes a connection whose handshake has not finished, e.g. one that connects and
///   sends nothing.
/// - Past the connection cap the server stops accepting: new connections wait in the kernel's accept queue
///   (`backlog` of them, after which the kernel refuses more) until an open one closes.
struct ConnectionLimits: Sendable {
    var idleTimeout: Duration
    var tlsHandshakeTimeout: Duration
    var maxConnections: Int

    init(_ settings: CoordinatorSettings) {
        idleTimeout = .seconds(settings.idleTimeoutSeconds)
        tlsHandshakeTimeout = .seconds(settings.tlsHandshakeTimeoutSeconds)
        maxConnections = settings.maxConnections
    }

    /// HTTP/1.1, with TLS 1.2 or later when `tls` is given (TLS 1.0 and 1.1 are refused in the handshake).
    func serverBuilder(tls: TLSConfiguration?) -> HTTPServerBuilder {
        let http = HTTP1Channel.Configuration(idleTimeout: TimeAmount(idleTimeout))
        guard var tls else {
            return HTTPServerBuilder { responder in
                ConnectionChannel(base: HTTP1Channel(responder: responder, configuration: http), handshakeTimeout: nil)
            }
        }
        tls.minimumTLSVersion = .tlsv12
        let channelConfiguration = TLSChannelConfiguration(tlsConfiguration: tls)
        let handshakeTimeout = TimeAmount(tlsHandshakeTimeout)
        return HTTPServerBuilder { responder in
            try TLSChannel(
                ConnectionChannel(
                    base: HTTP1Channel(responder: responder, configuration: http), handshakeTimeout: handshakeTimeout),
                configuration: channelConfiguration)
        }
    }

    func availableConnections(logger: Logger) -> MaximumAvailableConnections {
        MaximumAvailableConnections(maxConnections, logger: logger)
    }
}

/// Puts a ``TLSHandshakeDeadlineHandler`` (with TLS: right after the TLS handler) and a ``ConnectionCloseWatch``
/// before the base channel's handlers.
struct ConnectionChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value
    let base: Base
    let handshakeTimeout: TimeAmount?

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            if let handshakeTimeout {
                try channel.pipeline.syncOperations.addHandler(TLSHandshakeDeadlineHandler(timeout: handshakeTimeout))
            }
            try channel.pipeline.syncOperations.addHandler(ConnectionCloseWatch())
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

extension ConnectionChannel: HTTPChannelHandler where Base: HTTPChannelHandler {
    var responder: HTTPChannelHandler.Responder { base.responder }
}

/// Closes the connection unless the TLS handshake completes within `timeout` of the handler being added (the
/// connection being accepted), then removes itself.
final class TLSHandshakeDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    let timeout: TimeAmount
    private var deadline: Scheduled<Void>?

    init(timeout: TimeAmount) {
        self.timeout = timeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(in: timeout) {
            loopBound.value.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        context.fireUserInboundEventTriggered(event)
        if case TLSUserEvent.handshakeCompleted = event {
            deadline?.cancel()
            deadline = nil
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }
}

@available(*, unavailable)
extension TLSHandshakeDeadlineHandler: Sendable {}
