import FleetCore
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import PGWire

/// The client's side of one proxied connection, from its first byte until the tenant's server
/// is ready, after which a `GlueHandler` pair takes over and this handler leaves the pipeline.
/// All state lives on the channel's event loop.
final class ClientConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Phase {
        case handshake
        case routing
        case connecting
        /// Pooled: the proxy checks the client's SCRAM proof itself.
        case authenticating
        /// Pooled: authenticated, waiting for a server connection from the pool or a new one.
        case checkingOut
        case relaying(server: any Channel)
        /// Pooled: handed over to the glue and a `PooledSession`.
        case handedOver
        case done
    }

    /// A pooled login in progress: its decisions (see `PooledLoginMachine`) and the client's kind.
    struct PooledLogin {
        var machine: PooledLoginMachine
        let key: PoolKey
    }

    let shared: ProxyContext
    var machine: HandshakeMachine
    var phase = Phase.handshake
    var buffer: ByteBuffer?
    var pendingToServer: [ByteBuffer] = []
    var timeout: Scheduled<Void>?
    var serverName: String?
    /// Whether this connection holds one of `ConnectionLimits`' slots, given back when it closes.
    let holdsSlot: Bool
    /// Whether a descriptor is set aside for this client's server (`DescriptorGauge.admit`).
    var holdsReservation: Bool
    var login: PooledLogin?
    /// The client's SASL messages while the proxy checks its login itself.
    var authMessages = PGMessageBuffer(maxLength: ProxyConfiguration.authenticationMessageLimit)

    // What the close callback cleans up; it outlives this handler's stay in the pipeline.
    var tenant: TenantName?
    var cancelKey: CancelRegistry.Key?
    /// Client bytes passed on to the server (bounded before ReadyForQuery).
    var clientBytes = 0
    var tenantMetrics: ProxyMetrics.TenantMetrics?
    var countedUnknown = false

    /// `refusal`: why this client cannot be served (it gets the error in answer to its startup
    /// packet); `holdsSlot`: it took a slot of `shared.limits`.
    init(shared: ProxyContext, refusal: ProxyError? = nil, holdsSlot: Bool = true) {
        self.shared = shared
        self.holdsSlot = holdsSlot
        self.holdsReservation = holdsSlot && refusal == nil
        self.machine = HandshakeMachine(
            tlsMode: shared.tls == nil ? .disable : shared.configuration.tlsMode,
            router: Router(sniDomain: shared.configuration.sniDomain), refusal: refusal
        )
    }

    func handlerAdded(context: ChannelHandlerContext) {
        context.channel.closeFuture.assumeIsolated().whenComplete { _ in self.connectionClosed() }
    }

    func channelActive(context: ChannelHandlerContext) {
        timeout = context.eventLoop.assumeIsolated().scheduleTask(in: shared.configuration.startupTimeout) {
            self.perform(self.machine.timedOut(), context: context)
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        switch phase {
        case .handshake:
            if buffer == nil {
                buffer = incoming
            } else {
                buffer!.writeBuffer(&incoming)
            }
            processHandshake(context: context)
        case .routing, .connecting, .checkingOut:
            holdForServer(incoming, context: context)
        case .authenticating:
            authMessages.append(incoming)
            if authMessages.unprocessedBytes > ProxyConfiguration.pendingClientBytesLimit {
                fail(.protocolViolation("authentication messages too long"), context: context)
                return
            }
            processAuthentication(context: context)
        case .relaying(let server):
            countClientBytes(incoming.readableBytes)
            // Before ReadyForQuery a client only sends authentication messages, a few hundred bytes;
            // more is someone trying to make the proxy buffer on a server that does not read yet.
            if clientBytes > ProxyConfiguration.authenticationBytesLimit {
                shared.metrics.handshakeFailed(.protocolViolation("auth flood"))
                phase = .done
                server.close(promise: nil)
                context.close(promise: nil)
                return
            }
            server.writeAndFlush(incoming, promise: nil)
        case .handedOver, .done:
            break
        }
    }

    func holdForServer(_ bytes: ByteBuffer, context: ChannelHandlerContext) {
        pendingToServer.append(bytes)
        if pendingToServer.reduce(0, { $0 + $1.readableBytes }) > ProxyConfiguration.pendingClientBytesLimit {
            fail(.protocolViolation("too much data before the server was ready"), context: context)
        }
    }

    func processHandshake(context: ChannelHandlerContext) {
        while case .handshake = phase, var bytes = buffer, bytes.readableBytes > 0 {
            let actions: [HandshakeMachine.Action]
            if !machine.isInTLS && StartupCodec.looksLikeTLS(bytes) {
                actions = machine.clientHelloReceived()
            } else {
                do {
                    guard let packet = try StartupCodec.decode(&bytes) else { return }
                    buffer = bytes
                    actions = machine.packetReceived(packet, moreBuffered: bytes.readableBytes > 0)
                } catch {
                    buffer = nil
                    actions = machine.decodeFailed(error)
                }
            }
            perform(actions, context: context)
        }
        // A client that sent more after its startup packet: it goes to the server once connected.
        if case .handshake = phase {} else if case .done = phase {} else if let rest = buffer, rest.readableBytes > 0 {
            buffer = nil
            holdForServer(rest, context: context)
        }
    }

    func perform(_ actions: [HandshakeMachine.Action], context: ChannelHandlerContext) {
        for action in actions {
            switch action {
            case .reply(let byte):
                var answer = context.channel.allocator.buffer(capacity: 1)
                answer.writeInteger(byte)
                context.writeAndFlush(wrapOutboundOut(answer), promise: nil)
            case .startTLS(let direct):
                startTLS(direct: direct, context: context)
            case .route(let request, let negotiate):
                route(request, negotiate: negotiate, context: context)
            case .cancel(let processID, let secretKey):
                phase = .done
                shared.forwardCancel(CancelRegistry.Key(processID: processID, secret: secretKey), eventLoop: context.eventLoop)
                context.close(promise: nil)
            case .fail(let error):
                fail(error, context: context)
            case .close:
                phase = .done
                shared.metrics.handshakeFailed(.protocolViolation("tls"))
                context.close(promise: nil)
            }
        }
    }

    func startTLS(direct: Bool, context: ChannelHandlerContext) {
        guard let tls = shared.tls else {
            fail(.tlsUnavailable, context: context)
            return
        }
        let loop = context.eventLoop
        let sni = SNIHandler { result in
            loop.assumeIsolated().execute {
                if case .hostname(let name) = result { self.serverName = name }
            }
            return loop.makeSucceededVoidFuture()
        }
        do {
            try context.pipeline.syncOperations.addHandlers([ByteToMessageHandler(sni), NIOSSLServerHandler(context: tls)], position: .before(self))
        } catch {
            fail(.protocolViolation("TLS could not be set up"), context: context)
            return
        }
        if direct, let hello = buffer {
            // The bytes already here are the ClientHello: they belong to TLS, from the head of the pipeline.
            buffer = nil
            context.pipeline.syncOperations.fireChannelRead(NIOAny(hello))
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted(let alpn) = event {
            perform(machine.tlsEstablished(serverName: serverName, alpn: alpn), context: context)
            processHandshake(context: context)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if case .handshake = phase {
            shared.metrics.handshakeFailed(error is NIOSSLError ? .protocolViolation("tls") : .protocolViolation("io"))
        }
        shared.logger.debug("client connection error", metadata: ["error": "\(error)"])
        phase = .done
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .relaying(let server) = phase { server.close(promise: nil) }
        phase = .done
        context.fireChannelInactive()
    }

    func fail(_ error: ProxyError, context: ChannelHandlerContext) {
        // The route led nowhere: the next client of this tenant asks for a fresh one.
        if case .backendUnavailable = error, let tenant { shared.routes.forget(tenant) }
        shared.metrics.handshakeFailed(error)
        fail(error.errorResponse, label: error.metricLabel, context: context)
    }

    func fail(_ response: ErrorResponse, label: String, context: ChannelHandlerContext) {
        if case .done = phase { return }
        phase = .done
        timeout?.cancel()
        shared.logger.debug("connection refused", metadata: ["reason": "\(label)"])
        var message = context.channel.allocator.buffer(capacity: 256)
        response.encode(into: &message)
        context.writeAndFlush(wrapOutboundOut(message)).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }

    func countClientBytes(_ count: Int) {
        clientBytes += count
        tenantMetrics?.bytes.clientToServer.increment(by: count)
    }

    func countServerBytes(_ count: Int) {
        tenantMetrics?.bytes.serverToClient.increment(by: count)
    }

    /// The client has its server connection (counted as the proxy's socket) or is gone: what
    /// was set aside for it is free.
    func releaseReservation() {
        guard holdsReservation else { return }
        holdsReservation = false
        shared.descriptors.releaseReservation()
    }

    func connectionClosed() {
        timeout?.cancel()
        releaseReservation()
        if holdsSlot { shared.limits.releaseConnection() }
        if let key = cancelKey { shared.cancels.remove(key) }
        if let tenant {
            shared.limits.release(tenant: tenant)
            if let tenantMetrics { shared.metrics.closed(tenantMetrics, open: shared.limits.connections(of: tenant)) }
        }
    }
}
