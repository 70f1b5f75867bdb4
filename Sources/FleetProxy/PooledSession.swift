import NIOCore
import PGWire

/// One client's use of a pooled server connection, from its ReadyForQuery until it leaves: the
/// glue reports the bytes both ways, and when the client leaves with the session idle the server
/// connection goes back to the pool instead of being closed.
final class PooledSession: SessionObserver {
    private let server: PooledServer
    private let pool: ServerPool
    private var tracker: SessionTracker
    /// Set when the client left: whether the server connection went back to the pool.
    private var released: Bool?
    private weak var serverGlue: GlueHandler?
    private let onRelease: () -> Void

    init(server: PooledServer, pool: ServerPool, onRelease: @escaping () -> Void) {
        self.server = server
        self.pool = pool
        self.tracker = SessionTracker(parameters: server.parameters)
        self.onRelease = onRelease
    }

    func attach(serverGlue: GlueHandler) {
        self.serverGlue = serverGlue
    }

    func clientSent(_ bytes: ByteBuffer) -> Int {
        tracker.clientSent(bytes)
    }

    var clientTerminated: Bool { tracker.terminated }

    func serverSent(_ bytes: ByteBuffer) {
        tracker.serverSent(bytes)
    }

    func clientLeft() -> Bool {
        if let released { return released }
        guard tracker.isIdle, server.channel.isActive, let serverGlue,
            let context = try? server.channel.pipeline.syncOperations.context(handler: serverGlue)
        else {
            released = false
            return false
        }
        released = true
        server.channel.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        onRelease()
        pool.release(server, parameters: tracker.parameters)
        return true
    }
}
