import NIOCore
import NIOPosix
import PGWire

extension ProxyContext {
    /// A client's CancelRequest: sent on to the backend its key stands for, with the backend's
    /// own key, on a connection of its own (PostgreSQL answers a cancel with nothing). An unknown
    /// key is dropped, saying nothing, as PostgreSQL does.
    func forwardCancel(_ key: CancelRegistry.Key, eventLoop: any EventLoop) {
        guard let target = cancels.lookup(key) else {
            metrics.cancelForwarded(false)
            return
        }
        metrics.cancelForwarded(true)
        ClientBootstrap(group: eventLoop)
            .connect(unixDomainSocketPath: target.socketPath)
            .whenSuccess { channel in
                var request = channel.allocator.buffer(capacity: 16)
                StartupCodec.encode(.cancelRequest(processID: target.processID, secretKey: target.secretKey), into: &request)
                channel.writeAndFlush(request).whenComplete { _ in channel.close(promise: nil) }
            }
    }
}
