import FleetCore
import NIOCore
import PGWire

/// The tenant server's side until ReadyForQuery: passes authentication through (without the
/// channel-binding mechanism, which cannot survive TLS termination) and swaps the cancel key.
final class ServerHandshakeHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let client: ClientConnectionHandler
    private let clientContext: ChannelHandlerContext
    private let tenant: TenantName
    private let socketPath: String
    private var messages = PGMessageBuffer(maxLength: ProxyConfiguration.handshakeMessageLimit)
    private var switched = false
    /// The client has the SASL request already: the server's first one is checked and dropped.
    private var clientAskedForSCRAM: Bool

    init(client: ClientConnectionHandler, clientContext: ChannelHandlerContext, tenant: TenantName, socketPath: String, clientAskedForSCRAM: Bool = false) {
        self.client = client
        self.clientContext = clientContext
        self.tenant = tenant
        self.socketPath = socketPath
        self.clientAskedForSCRAM = clientAskedForSCRAM
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        messages.append(unwrapInboundIn(data))
        do {
            while !switched, let message = try messages.next() {
                try forward(message, context: context)
            }
        } catch AuthenticationMismatch.asked(let what) {
            client.serverAuthenticationMismatch(what, context: clientContext)
            context.close(promise: nil)
            return
        } catch {
            client.serverClosedDuringHandshake(context: clientContext)
            context.close(promise: nil)
            return
        }
        clientContext.flush()
        if switched {
            // What the server sent after ReadyForQuery goes to the client untouched.
            if let rest = messages.takeRemaining() {
                clientContext.writeAndFlush(NIOAny(rest), promise: nil)
            }
            client.switchToGlue(server: context.channel, serverHandler: self, clientContext: clientContext)
        }
    }

    private func forward(_ message: RawMessage, context: ChannelHandlerContext) throws {
        var out = context.channel.allocator.buffer(capacity: message.body.readableBytes + 5)
        switch message.type {
        case BackendMessageType.authentication:
            let request = try AuthenticationRequest(body: message.body)
            if clientAskedForSCRAM {
                clientAskedForSCRAM = false
                guard case .sasl(let mechanisms) = request else { throw AuthenticationMismatch.asked(Self.describe(request)) }
                guard mechanisms.contains(Scram.mechanism) else {
                    throw AuthenticationMismatch.asked("SASL with \(mechanisms.joined(separator: ", "))")
                }
                return
            }
            if case .sasl(let mechanisms) = request {
                AuthenticationRequest.sasl(mechanisms: mechanisms.filter { $0 != "SCRAM-SHA-256-PLUS" }).encode(into: &out)
            } else {
                message.encode(into: &out)
            }
        case BackendMessageType.backendKeyData:
            client.issueCancelKey(for: try BackendKeyData(body: message.body), socketPath: socketPath).encode(into: &out)
        case BackendMessageType.readyForQuery:
            message.encode(into: &out)
            switched = true
        default:
            message.encode(into: &out)
        }
        clientContext.write(NIOAny(out), promise: nil)
    }

    private enum AuthenticationMismatch: Error {
        case asked(String)
    }

    private static func describe(_ request: AuthenticationRequest) -> String {
        switch request {
        case .ok: "no password (trust)"
        case .cleartextPassword: "a cleartext password"
        case .md5Password: "an MD5 password"
        case .other(let code, _): "authentication request \(code)"
        case .sasl, .saslContinue, .saslFinal: "an unexpected SASL step"
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !switched { client.serverClosedDuringHandshake(context: clientContext) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
