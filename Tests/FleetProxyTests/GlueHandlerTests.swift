import NIOCore
import NIOEmbedded
import PGWire
import Testing

@testable import FleetProxy

/// The byte pump of a pooled session, with both channels on one EmbeddedEventLoop: no sockets.
@Suite struct GlueHandlerTests {
    /// Tracks the session as PooledSession does, and takes the server back when the client leaves idle.
    final class Observer: SessionObserver {
        var tracker = SessionTracker(parameters: [])
        var released: Bool?
        func clientSent(_ bytes: ByteBuffer) -> Int { tracker.clientSent(bytes) }
        func serverSent(_ bytes: ByteBuffer) { tracker.serverSent(bytes) }
        var clientTerminated: Bool { tracker.terminated }
        func clientLeft() -> Bool {
            if let released { return released }
            released = tracker.isIdle
            return tracker.isIdle
        }
    }

    func session() throws -> (client: EmbeddedChannel, server: EmbeddedChannel, observer: Observer) {
        let loop = EmbeddedEventLoop()
        let client = EmbeddedChannel(loop: loop)
        let server = EmbeddedChannel(loop: loop)
        let observer = Observer()
        let glue = GlueHandler.matchedPair(onClientBytes: { _ in }, onServerBytes: { _ in }, observer: observer)
        try client.pipeline.syncOperations.addHandler(glue.client)
        try server.pipeline.syncOperations.addHandler(glue.server)
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 2)).wait()
        return (client, server, observer)
    }

    func terminate() -> ByteBuffer {
        var out = ByteBuffer()
        out.writeMessage(type: FrontendMessageType.terminate) { _ in }
        return out
    }

    /// asyncpg's close() waits for the server to close after Terminate, as PostgreSQL does.
    @Test func terminateClosesTheClientAndKeepsTheServerForThePool() throws {
        let (client, server, observer) = try session()
        try client.writeInbound(terminate())
        #expect(!client.isActive)
        #expect(observer.released == true)
        #expect(server.isActive)
        #expect(try server.readOutbound(as: ByteBuffer.self) == nil, "the Terminate stays with the proxy")
        _ = try? server.finish()
    }

    /// A TLS client that closes without close_notify surfaces as an error after its Terminate: the session is still clean.
    @Test func anErrorAfterTerminateStillReleasesTheSession() throws {
        let (client, server, observer) = try session()
        var query = ByteBuffer()
        query.writeMessage(type: FrontendMessageType.query) { $0.writeCString("SELECT 1") }
        try client.writeInbound(query)
        var ready = ByteBuffer()
        ReadyForQuery.encode(status: ReadyForQuery.idle, into: &ready)
        try server.writeInbound(ready)
        _ = try client.readOutbound(as: ByteBuffer.self)
        try client.writeInbound(terminate())
        client.pipeline.syncOperations.fireErrorCaught(UncleanShutdown())
        #expect(observer.released == true)
        #expect(server.isActive)
        _ = try? server.finish()
    }

    /// Without Terminate an error still ends both sides.
    @Test func anErrorWithoutTerminateClosesTheServer() throws {
        let (client, server, _) = try session()
        client.pipeline.syncOperations.fireErrorCaught(UncleanShutdown())
        #expect(!server.isActive)
        #expect(!client.isActive)
    }
}

/// Stands for NIOSSL's error when the peer closes TCP without close_notify.
private struct UncleanShutdown: Error {}
