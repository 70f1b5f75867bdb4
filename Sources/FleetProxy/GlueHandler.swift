import NIOCore

/// Joins two channels once the handshake is over: bytes flow through untouched (no copy, no
/// parsing), a side reads only while its partner can take more (so one slow client stalls
/// only itself), and a half-close on one side is passed on to the other.
/// After swift-nio-examples' connect-proxy GlueHandler.
///
/// A pooled session adds an observer on the client's side: it sees the bytes both ways, may hold
/// back the client's Terminate, and may take the server connection back when the client leaves.
final class GlueHandler {
    private var partner: GlueHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    /// Bytes this side received, for metrics.
    private(set) var bytesRead = 0
    private let onBytes: (Int) -> Void
    private let observer: (any SessionObserver)?
    private let isClientSide: Bool

    private init(onBytes: @escaping (Int) -> Void, observer: (any SessionObserver)?, isClientSide: Bool) {
        self.onBytes = onBytes
        self.observer = observer
        self.isClientSide = isClientSide
    }

    static func matchedPair(
        onClientBytes: @escaping (Int) -> Void, onServerBytes: @escaping (Int) -> Void, observer: (any SessionObserver)? = nil
    ) -> (client: GlueHandler, server: GlueHandler) {
        let client = GlueHandler(onBytes: onClientBytes, observer: observer, isClientSide: true)
        let server = GlueHandler(onBytes: onServerBytes, observer: observer, isClientSide: false)
        client.partner = server
        server.partner = client
        return (client, server)
    }

    private func partnerWrite(_ data: NIOAny) {
        context?.write(data, promise: nil)
    }

    private func partnerFlush() {
        context?.flush()
    }

    private func partnerWriteEOF() {
        context?.close(mode: .output, promise: nil)
    }

    private func partnerCloseFull() {
        context?.close(promise: nil)
    }

    private func partnerBecameWritable() {
        if pendingRead {
            pendingRead = false
            context?.read()
        }
    }

    private var partnerWritable: Bool {
        context?.channel.isWritable ?? false
    }
}

/// Watches a pooled session through its glue. All calls come on the session's event loop.
protocol SessionObserver: AnyObject {
    /// Client bytes on their way to the server: how many of them (a prefix) to pass on.
    func clientSent(_ bytes: ByteBuffer) -> Int
    func serverSent(_ bytes: ByteBuffer)
    /// The client closed or half-closed its side. True when the observer took the server
    /// connection back (it must not be closed); false to end it as usual.
    func clientLeft() -> Bool
    /// The client sent Terminate and the observer held it back: nothing more will be forwarded.
    var clientTerminated: Bool { get }
}

extension GlueHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        onBytes(bytes.readableBytes)
        guard let observer else {
            partner?.partnerWrite(data)
            return
        }
        if isClientSide {
            let forward = observer.clientSent(bytes)
            if forward == bytes.readableBytes {
                partner?.partnerWrite(data)
            } else if forward > 0 {
                partner?.partnerWrite(NIOAny(bytes.getSlice(at: bytes.readerIndex, length: forward)!))
            }
            if observer.clientTerminated {
                // PostgreSQL closes after Terminate and clients such as asyncpg wait for that close.
                // The session is settled now, before the client's transport (TLS without
                // close_notify, a reset) can make its leaving look like an error.
                partner?.partnerFlush()
                _ = observer.clientLeft()
                context.close(promise: nil)
            }
        } else {
            observer.serverSent(bytes)
            partner?.partnerWrite(data)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.partnerFlush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if isClientSide, let observer, observer.clientLeft() { return }
        partner?.partnerCloseFull()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            if isClientSide, let observer, observer.clientLeft() {
                context.close(promise: nil)
            } else {
                partner?.partnerWriteEOF()
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // After a Terminate the server connection is the pool's again, whatever the client's transport did next.
        if isClientSide, let observer, observer.clientTerminated, observer.clientLeft() {
            context.close(promise: nil)
            return
        }
        partner?.partnerCloseFull()
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            partner?.partnerBecameWritable()
        }
    }

    func read(context: ChannelHandlerContext) {
        if let partner, partner.partnerWritable {
            context.read()
        } else {
            pendingRead = true
        }
    }
}
