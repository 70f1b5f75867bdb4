import FleetCore
import Logging
import NIOCore
import NIOEmbedded
import PGWire
import Testing

@testable import FleetProxy

/// ServerPool running PoolState's actions on EmbeddedChannels: no sockets, no PostgreSQL.
@Suite struct ServerPoolTests {
    let loop = EmbeddedEventLoop()
    let key = PoolKey(tenant: try! TenantName(validating: "acme"), socketPath: "/run/acme", parameters: [StartupParameter(name: "user", value: "bob")])

    /// The pools own nothing the pool keeps alive (it holds them unowned), so the suite does.
    let pools = ServerPools(configuration: PoolConfiguration(), logger: Logger(label: "test"))

    func makePool() -> ServerPool {
        pools.pool(on: loop)
    }

    /// A connected channel on the test's loop, as a logged-in server connection.
    func serverChannel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(loop: loop)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 5432)).wait()
        return channel
    }

    /// The server's side of a clean reset: the DISCARD ALL is answered, the session idle again.
    func answerReset(_ channel: EmbeddedChannel) throws {
        var query = try #require(try channel.readOutbound(as: ByteBuffer.self))
        let message = try #require(try MessageFramer.next(&query, maxLength: 1 << 16))
        #expect(message.type == FrontendMessageType.query)
        var reply = ByteBuffer()
        reply.writeMessage(type: BackendMessageType.commandComplete) { $0.writeCString("DISCARD ALL") }
        ReadyForQuery.encode(status: ReadyForQuery.idle, into: &reply)
        try channel.writeInbound(reply)
        loop.run()
    }

    @Test func aSessionResetCleanlyIsIdleForTheNextClient() throws {
        let pool = makePool()
        let channel = try serverChannel()
        let server = pool.adopt(channel, key: key, session: ServerSession(backendKey: nil, parameters: []))
        #expect(pool.hasLent(key))
        #expect(pool.checkout(key) == nil)
        pool.release(server, parameters: [ParameterStatus(name: "application_name", value: "psql")])
        #expect(pool.shouldWait(key))  // being reset: a client waits for it
        try answerReset(channel)
        #expect(!pool.hasLent(key))
        let again = try #require(pool.checkout(key))
        #expect(again === server)
        #expect(again.parameters == [ParameterStatus(name: "application_name", value: "psql")])
        try pool.prepareForClient(again)
        _ = try? channel.finish()
    }

    @Test func aSessionBackFromResetGoesToTheFirstWaiterStillThere() throws {
        let pool = makePool()
        let channel = try serverChannel()
        let server = pool.adopt(channel, key: key, session: ServerSession(backendKey: nil, parameters: []))
        var offered: [String] = []
        pool.wait(for: key, until: .now() + .seconds(3)) { session in
            offered.append(session == nil ? "gone: turn" : "gone: session")
            return false  // this client has left
        }
        pool.wait(for: key, until: .now() + .seconds(3)) { session in
            offered.append(session === server ? "session" : "turn")
            return true
        }
        pool.release(server, parameters: [])
        try answerReset(channel)
        #expect(offered == ["gone: session", "session"])
        #expect(pool.hasLent(key))
        #expect(pool.checkout(key) == nil)
        _ = try? channel.finish()
    }

    @Test func aClosedLentSessionGivesTheWaitersTheirTurn() throws {
        let pool = makePool()
        let channel = try serverChannel()
        _ = pool.adopt(channel, key: key, session: ServerSession(backendKey: nil, parameters: []))
        var turns = 0
        pool.wait(for: key, until: .now() + .seconds(3)) { session in
            if session == nil { turns += 1 }
            return true
        }
        try channel.close().wait()
        loop.run()
        #expect(turns == 1)
        #expect(!pool.hasLent(key))
    }
}
