import NIOCore
import NIOEmbedded
import PGWire
import Testing

@testable import FleetProxy

/// The pool's channel handlers against a scripted server, on an EmbeddedChannel: no sockets, no PostgreSQL.
@Suite struct PoolHandlerTests {
    let verifier = ScramVerifier.make(password: "pencil", salt: Array("0123456789abcdef".utf8), iterations: 16)

    func clientKey() -> [UInt8] {
        let salted = Scram.pbkdf2(password: Array("pencil".utf8), salt: verifier.salt, iterations: verifier.iterations)
        return Scram.hmac(key: salted, "Client Key")
    }

    func message(_ type: UInt8, _ body: (inout ByteBuffer) -> Void) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeMessage(type: type, body)
        return buffer
    }

    /// The next frontend message the handler wrote.
    func sent(_ channel: EmbeddedChannel) throws -> RawMessage {
        var bytes = try #require(try channel.readOutbound(as: ByteBuffer.self))
        return try #require(try MessageFramer.next(&bytes, maxLength: 1 << 16))
    }

    @Test func logsInByProvingTheRecoveredClientKey() throws {
        let channel = EmbeddedChannel()
        let promise = channel.eventLoop.makePromise(of: ServerSession.self)
        let startup = [StartupParameter(name: "user", value: "bob"), StartupParameter(name: "database", value: "app")]
        try channel.pipeline.syncOperations.addHandler(
            ServerLoginHandler(startup: startup, scram: ScramClientExchange(verifier: verifier, clientKey: clientKey()), promise: promise)
        )
        channel.pipeline.fireChannelActive()
        var packet = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(try StartupCodec.decode(&packet) == .startup(version: .v3_0, parameters: startup))

        // The tenant's side of SCRAM, with the stored verifier only.
        var server = ScramServerExchange(verifier: verifier)
        var request = ByteBuffer()
        AuthenticationRequest.sasl(mechanisms: ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]).encode(into: &request)
        try channel.writeInbound(request)
        var initial = try sent(channel).body
        #expect(try initial.readCString("mechanism") == "SCRAM-SHA-256")
        let length = try initial.readInt32("length")
        let data = initial.readBytes(length: Int(length))
        let first = try server.receiveClientFirst(try #require(data))
        request.clear()
        AuthenticationRequest.saslContinue(first).encode(into: &request)
        try channel.writeInbound(request)
        let (final, _) = try server.receiveClientFinal(Array(try sent(channel).body.readableBytesView))
        request.clear()
        AuthenticationRequest.saslFinal(final).encode(into: &request)
        AuthenticationRequest.ok.encode(into: &request)
        ParameterStatus(name: "server_version", value: "15.18").encode(into: &request)
        BackendKeyData(processID: 4242, secretKey: [1, 2, 3, 4]).encode(into: &request)
        ReadyForQuery.encode(status: ReadyForQuery.idle, into: &request)
        try channel.writeInbound(request)

        let session = try promise.futureResult.wait()
        #expect(session.parameters == [ParameterStatus(name: "server_version", value: "15.18")])
        #expect(session.backendKey == BackendKeyData(processID: 4242, secretKey: [1, 2, 3, 4]))
        _ = try? channel.finish()
    }

    @Test func aServerThatDoesNotKnowTheVerifierIsNotTrusted() throws {
        let channel = EmbeddedChannel()
        let promise = channel.eventLoop.makePromise(of: ServerSession.self)
        try channel.pipeline.syncOperations.addHandler(
            ServerLoginHandler(startup: [StartupParameter(name: "user", value: "bob")], scram: ScramClientExchange(verifier: verifier, clientKey: clientKey()), promise: promise)
        )
        channel.pipeline.fireChannelActive()
        _ = try channel.readOutbound(as: ByteBuffer.self)
        var impostor = ScramServerExchange(verifier: ScramVerifier.make(password: "other", salt: verifier.salt, iterations: verifier.iterations))
        var request = ByteBuffer()
        AuthenticationRequest.sasl(mechanisms: ["SCRAM-SHA-256"]).encode(into: &request)
        try channel.writeInbound(request)
        var initial = try sent(channel).body
        _ = try initial.readCString("mechanism")
        let length = try initial.readInt32("length")
        request.clear()
        AuthenticationRequest.saslContinue(try impostor.receiveClientFirst(initial.readBytes(length: Int(length))!)).encode(into: &request)
        try channel.writeInbound(request)
        _ = try sent(channel)
        request.clear()
        // A made-up server signature.
        AuthenticationRequest.saslFinal(Array("v=\(Scram.encode([UInt8](repeating: 7, count: 32)))".utf8)).encode(into: &request)
        try channel.writeInbound(request)
        #expect(throws: ServerLoginError.self) { try promise.futureResult.wait() }
        #expect(!channel.isActive)
    }

    @Test func refusalsAndPasswordRequestsFailTheLogin() throws {
        for reply in [
            { (buffer: inout ByteBuffer) in ErrorResponse(severity: "FATAL", sqlstate: "53300", message: "sorry, too many clients already").encode(into: &buffer) },
            { (buffer: inout ByteBuffer) in AuthenticationRequest.cleartextPassword.encode(into: &buffer) },
            { (buffer: inout ByteBuffer) in AuthenticationRequest.sasl(mechanisms: ["SCRAM-SHA-256-PLUS"]).encode(into: &buffer) },
        ] {
            let channel = EmbeddedChannel()
            let promise = channel.eventLoop.makePromise(of: ServerSession.self)
            try channel.pipeline.syncOperations.addHandler(
                ServerLoginHandler(startup: [], scram: ScramClientExchange(verifier: verifier, clientKey: clientKey()), promise: promise)
            )
            channel.pipeline.fireChannelActive()
            var bytes = ByteBuffer()
            reply(&bytes)
            try channel.writeInbound(bytes)
            #expect(throws: ServerLoginError.self) { try promise.futureResult.wait() }
        }
    }

    @Test func resetSucceedsOnlyWhenTheServerIsIdleAgain() throws {
        for (status, ok) in [(ReadyForQuery.idle, true), (ReadyForQuery.inTransaction, false)] {
            let channel = EmbeddedChannel()
            let promise = channel.eventLoop.makePromise(of: [ParameterStatus].self)
            try channel.pipeline.syncOperations.addHandler(ResetHandler(promise: promise))
            var query = try sent(channel)
            let sql = try query.body.readCString("sql")
            #expect(query.type == FrontendMessageType.query && sql == "DISCARD ALL")
            var reply = message(BackendMessageType.commandComplete) { $0.writeCString("DISCARD ALL") }
            ParameterStatus(name: "application_name", value: "psql").encode(into: &reply)
            ReadyForQuery.encode(status: status, into: &reply)
            try channel.writeInbound(reply)
            if ok {
                #expect(try promise.futureResult.wait() == [ParameterStatus(name: "application_name", value: "psql")])
            } else {
                #expect(throws: ServerLoginError.self) { try promise.futureResult.wait() }
            }
        }
        // An error instead of CommandComplete.
        let channel = EmbeddedChannel()
        let promise = channel.eventLoop.makePromise(of: [ParameterStatus].self)
        try channel.pipeline.syncOperations.addHandler(ResetHandler(promise: promise))
        var reply = ByteBuffer()
        ErrorResponse(severity: "ERROR", sqlstate: "25001", message: "cannot run inside a transaction block").encode(into: &reply)
        try channel.writeInbound(reply)
        #expect(throws: ServerLoginError.self) { try promise.futureResult.wait() }
    }
}
