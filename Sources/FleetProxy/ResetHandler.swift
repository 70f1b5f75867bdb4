import NIOCore
import PGWire

/// Resets a session its client has left (`DISCARD ALL`: settings, prepared statements, temporary
/// tables, advisory locks, LISTEN, role) and succeeds with the ParameterStatus changes it caused
/// when the server is idle again; fails on anything unexpected.
final class ResetHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let promise: EventLoopPromise<[ParameterStatus]>
    /// A reset's answer is a handful of short messages; 64 kB bounds a misbehaving server.
    private var messages = PGMessageBuffer(maxLength: 1 << 16)
    private var changes: [ParameterStatus] = []
    private var completed = false
    private var finished = false
    private var timer: Scheduled<Void>?

    init(promise: EventLoopPromise<[ParameterStatus]>) {
        self.promise = promise
    }

    func handlerAdded(context: ChannelHandlerContext) {
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(5)) {
            self.finish(context: context, success: false)
        }
        var query = context.channel.allocator.buffer(capacity: 32)
        query.writeMessage(type: FrontendMessageType.query) { $0.writeCString("DISCARD ALL") }
        context.writeAndFlush(wrapOutboundOut(query), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !finished else { return }
        messages.append(unwrapInboundIn(data))
        do {
            while !finished, let message = try messages.next() {
                switch message.type {
                case BackendMessageType.commandComplete:
                    completed = true
                case BackendMessageType.parameterStatus:
                    changes.append(try ParameterStatus(body: message.body))
                case BackendMessageType.noticeResponse, BackendMessageType.notificationResponse:
                    break
                case BackendMessageType.readyForQuery:
                    let idle = (try? ReadyForQuery.status(body: message.body)) == ReadyForQuery.idle
                    finish(context: context, success: completed && idle && messages.unprocessedBytes == 0)
                default:
                    finish(context: context, success: false)
                }
            }
        } catch {
            finish(context: context, success: false)
        }
    }

    private func finish(context: ChannelHandlerContext, success: Bool) {
        guard !finished else { return }
        finished = true
        timer?.cancel()
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        if success {
            promise.succeed(changes)
        } else {
            promise.fail(ServerLoginError.failed("reset failed"))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(context: context, success: false)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
