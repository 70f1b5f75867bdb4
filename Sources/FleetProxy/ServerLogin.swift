import FleetCore
import NIOCore
import PGWire

/// Why the proxy could not log in to a tenant's server on a client's behalf.
enum ServerLoginError: Error {
    /// The server said no (too many connections, no such database, …): passed on to the client as it is.
    case refused(ErrorResponse)
    case failed(String)
}

/// A logged-in server session: what a client must be told about it.
struct ServerSession {
    var backendKey: BackendKeyData?
    var parameters: [ParameterStatus]
}

/// Logs in to a tenant's server on a fresh channel: the startup packet, authentication (SCRAM
/// proving a recovered ClientKey, or nothing for the pgfleet role's peer authentication), then
/// ParameterStatus and BackendKeyData until ReadyForQuery. It fails the promise on anything else.
final class ServerLoginHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let startup: [StartupParameter]
    private var scram: ScramClientExchange?
    private let promise: EventLoopPromise<ServerSession>
    private let timeout: TimeAmount
    private var messages = PGMessageBuffer(maxLength: ProxyConfiguration.handshakeMessageLimit)
    private var session = ServerSession(backendKey: nil, parameters: [])
    private var finished = false
    private var timer: Scheduled<Void>?

    init(startup: [StartupParameter], scram: ScramClientExchange?, promise: EventLoopPromise<ServerSession>, timeout: TimeAmount = .seconds(10)) {
        self.startup = startup
        self.scram = scram
        self.promise = promise
        self.timeout = timeout
    }

    func channelActive(context: ChannelHandlerContext) {
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            self.fail(.failed("the server did not finish the login within \(self.timeout.nanoseconds / 1_000_000) ms"), context: context)
        }
        var packet = context.channel.allocator.buffer(capacity: 128)
        StartupCodec.encode(.startup(version: .v3_0, parameters: startup), into: &packet)
        context.writeAndFlush(wrapOutboundOut(packet), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !finished else { return }
        messages.append(unwrapInboundIn(data))
        do {
            while !finished, let message = try messages.next() {
                try handle(message, context: context)
            }
        } catch let error as ServerLoginError {
            fail(error, context: context)
        } catch {
            fail(.failed("\(error)"), context: context)
        }
    }

    private func handle(_ message: RawMessage, context: ChannelHandlerContext) throws {
        switch message.type {
        case BackendMessageType.authentication:
            try authenticate(try AuthenticationRequest(body: message.body), context: context)
        case BackendMessageType.parameterStatus:
            session.parameters.append(try ParameterStatus(body: message.body))
        case BackendMessageType.backendKeyData:
            session.backendKey = try BackendKeyData(body: message.body)
        case BackendMessageType.errorResponse:
            throw ServerLoginError.refused(try ErrorResponse(body: message.body))
        case BackendMessageType.readyForQuery:
            finished = true
            timer?.cancel()
            promise.succeed(session)
        case BackendMessageType.noticeResponse, BackendMessageType.negotiateProtocolVersion:
            break
        default:
            throw ServerLoginError.failed("unexpected message during login")
        }
    }

    private func authenticate(_ request: AuthenticationRequest, context: ChannelHandlerContext) throws {
        switch request {
        case .ok:
            break
        case .sasl(let mechanisms):
            guard let scram, mechanisms.contains(Scram.mechanism) else {
                throw ServerLoginError.failed("the server does not offer \(Scram.mechanism) for this role")
            }
            send(context: context) { out in
                out.writeCString(Scram.mechanism)
                let first = scram.clientFirst
                out.writeInteger(Int32(first.count))
                out.writeBytes(first)
            }
        case .saslContinue(let data):
            guard var exchange = scram else { throw ServerLoginError.failed("unexpected SASL message") }
            let final = try exchange.receiveServerFirst(data)
            scram = exchange
            send(context: context) { $0.writeBytes(final) }
        case .saslFinal(let data):
            guard let scram else { throw ServerLoginError.failed("unexpected SASL message") }
            try scram.receiveServerFinal(data)
        case .cleartextPassword, .md5Password:
            throw ServerLoginError.failed("the server asks for a password (pg_hba.conf method password or md5 without a SCRAM verifier)")
        case .other(let code, _):
            throw ServerLoginError.failed("the server asks for authentication method \(code)")
        }
    }

    private func send(context: ChannelHandlerContext, _ body: (inout ByteBuffer) -> Void) {
        var out = context.channel.allocator.buffer(capacity: 128)
        out.writeMessage(type: FrontendMessageType.password, body)
        context.writeAndFlush(wrapOutboundOut(out), promise: nil)
    }

    private func fail(_ error: ServerLoginError, context: ChannelHandlerContext) {
        guard !finished else { return }
        finished = true
        timer?.cancel()
        promise.fail(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(.failed("the server closed the connection during login"), context: context)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(.failed("\(error)"), context: context)
    }
}

/// The pgfleet role's connection to one tenant, on one event loop: reads role verifiers through
/// `TenantRoles.authSecretFunction`, one extended-protocol round trip each (the role name is a
/// parameter, never spliced into SQL). Requests are pipelined and answered in order. The query
/// is parsed once per connection, as a named statement sent with the first lookup: an error
/// there fails that lookup and those behind it, and the pool closes the connection.
final class AuthLookupHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum LookupError: Error {
        /// The server answered with an error (no lookup function, no permission).
        case refused(String)
        case closed
    }

    private struct Pending {
        var promise: EventLoopPromise<String?>
        var value: String?
        var error: String?
    }

    private var pending = CircularBuffer<Pending>()
    /// Drops what it framed: this connection lives as long as its tenant runs.
    private var messages = PGMessageBuffer(maxLength: 1 << 16)
    private var context: ChannelHandlerContext?
    /// The named statement was sent (with the first lookup); later lookups only bind it.
    private var parsed = false
    static let statement = "pgfleet_auth_secret"

    /// For tests that the long-lived buffer stays bounded.
    var bufferedBytes: Int { messages.unprocessedBytes }
    var bufferCapacity: Int { messages.storageCapacity }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        context.read()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    /// The verifier of `role`, nil when it has none or cannot log in now.
    func lookup(_ role: String, promise: EventLoopPromise<String?>) {
        guard let context, context.channel.isActive else {
            promise.fail(LookupError.closed)
            return
        }
        pending.append(Pending(promise: promise))
        var out = context.channel.allocator.buffer(capacity: 128)
        if !parsed {
            parsed = true
            out.writeMessage(type: FrontendMessageType.parse) { body in
                body.writeCString(Self.statement)
                body.writeCString("SELECT \(TenantRoles.authSecretFunction)($1)")
                body.writeInteger(Int16(0))
            }
        }
        out.writeMessage(type: FrontendMessageType.bind) { body in
            body.writeCString("")
            body.writeCString(Self.statement)
            body.writeInteger(Int16(0))  // parameter formats: all text
            body.writeInteger(Int16(1))
            let value = Array(role.utf8)
            body.writeInteger(Int32(value.count))
            body.writeBytes(value)
            body.writeInteger(Int16(0))  // result formats: all text
        }
        out.writeMessage(type: FrontendMessageType.execute) { body in
            body.writeCString("")
            body.writeInteger(Int32(0))
        }
        out.writeMessage(type: FrontendMessageType.sync) { _ in }
        context.writeAndFlush(wrapOutboundOut(out), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        messages.append(unwrapInboundIn(data))
        do {
            while let message = try messages.next() {
                handle(message)
            }
        } catch {
            context.close(promise: nil)
        }
    }

    private func handle(_ message: RawMessage) {
        switch message.type {
        case BackendMessageType.dataRow:
            var body = message.body
            guard let columns = body.readInteger(as: Int16.self), columns == 1, let length = body.readInteger(as: Int32.self) else {
                if !pending.isEmpty { pending[pending.startIndex].error = "malformed row" }
                return
            }
            if length >= 0, let value = body.readString(length: Int(length)), !pending.isEmpty {
                pending[pending.startIndex].value = value
            }
        case BackendMessageType.errorResponse:
            if !pending.isEmpty {
                let error = try? ErrorResponse(body: message.body)
                pending[pending.startIndex].error = error?.message ?? "error"
            }
        case BackendMessageType.readyForQuery:
            guard let done = pending.popFirst() else { return }
            if let error = done.error {
                done.promise.fail(LookupError.refused(error))
            } else {
                done.promise.succeed(done.value)
            }
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        while let waiting = pending.popFirst() {
            waiting.promise.fail(LookupError.closed)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
