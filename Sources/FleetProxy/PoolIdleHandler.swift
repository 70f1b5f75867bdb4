import NIOCore

/// In the pipeline of an idle pooled connection: anything the server sends now (a FATAL at
/// shutdown, a ParameterStatus after a reload) ends the connection's life in the pool.
final class PoolIdleHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
