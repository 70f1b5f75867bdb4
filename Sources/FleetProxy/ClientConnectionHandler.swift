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

    /// A pooled login in progress.
    private struct PooledLogin {
        var exchange: ScramServerExchange
        var key: PoolKey
        var user: String
        var receivedFirst = false
    }

    private let shared: ProxyContext
    private var machine: HandshakeMachine
    private var phase = Phase.handshake
    private var buffer: ByteBuffer?
    private var pendingToServer: [ByteBuffer] = []
    private var timeout: Scheduled<Void>?
    /// Set when the tenant first refused a session for want of a connection slot: the client
    /// waits for one until then (see `slotWait`).
    private var slotDeadline: NIODeadline?
    /// The client queued for a session or was refused one for want of a slot (for the metric).
    private var waitedForSlot = false
    private var serverName: String?
    private let overLimit: Bool
    private var login: PooledLogin?
    private var authBuffer: ByteBuffer?

    // What the close callback cleans up; it outlives this handler's stay in the pipeline.
    private var tenant: TenantName?
    private var cancelKey: CancelRegistry.Key?
    /// Client bytes passed on to the server (bounded before ReadyForQuery).
    private var clientBytes = 0
    private var tenantMetrics: ProxyMetrics.TenantMetrics?
    private var countedUnknown = false

    init(shared: ProxyContext, overLimit: Bool) {
        self.shared = shared
        self.overLimit = overLimit
        self.machine = HandshakeMachine(
            tlsMode: shared.tls == nil ? .disable : shared.configuration.tlsMode,
            router: Router(sniDomain: shared.configuration.sniDomain)
        )
    }

    func handlerAdded(context: ChannelHandlerContext) {
        context.channel.closeFuture.assumeIsolated().whenComplete { _ in self.connectionClosed() }
    }

    func channelActive(context: ChannelHandlerContext) {
        if overLimit {
            fail(.tooManyConnections, context: context)
            return
        }
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
            if authBuffer == nil { authBuffer = incoming } else { authBuffer!.writeBuffer(&incoming) }
            if authBuffer!.readableBytes > ProxyConfiguration.pendingClientBytesLimit {
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

    private func holdForServer(_ bytes: ByteBuffer, context: ChannelHandlerContext) {
        pendingToServer.append(bytes)
        if pendingToServer.reduce(0, { $0 + $1.readableBytes }) > ProxyConfiguration.pendingClientBytesLimit {
            fail(.protocolViolation("too much data before the server was ready"), context: context)
        }
    }

    private func processHandshake(context: ChannelHandlerContext) {
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

    private func perform(_ actions: [HandshakeMachine.Action], context: ChannelHandlerContext) {
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
                forwardCancel(CancelRegistry.Key(processID: processID, secret: secretKey), eventLoop: context.eventLoop)
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

    private func startTLS(direct: Bool, context: ChannelHandlerContext) {
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

    // MARK: Routing and the tenant's server

    private func route(_ request: RouteRequest, negotiate: NegotiateProtocolVersion?, context: ChannelHandlerContext) {
        let tenant = request.tenant
        guard shared.limits.acquire(tenant: tenant) else {
            fail(.tooManyTenantConnections(tenant.rawValue), context: context)
            return
        }
        self.tenant = tenant
        phase = .routing
        let routes = shared.routes
        if let known = routes.cachedRoute(for: tenant) {
            follow(known, request: request, negotiate: negotiate, context: context, woken: false)
            return
        }
        context.eventLoop.makeFutureWithTask { await routes.route(for: tenant) }
            .assumeIsolated().whenSuccess { route in
                self.follow(route, request: request, negotiate: negotiate, context: context, woken: false)
            }
    }

    private func follow(_ route: TenantRoute, request: RouteRequest, negotiate: NegotiateProtocolVersion?, context: ChannelHandlerContext, woken: Bool) {
        guard case .routing = phase else { return }
        countConnection(request.tenant, route: route)
        let name = request.tenant.rawValue
        switch route {
        case .available(let socketPath):
            connect(socketPath: socketPath, request: request, negotiate: negotiate, context: context)
        case .suspended where !woken, .unavailable(.starting) where !woken:
            // Suspended, or already waking for another client: wait for the same start.
            wake(request, negotiate: negotiate, context: context)
        case .suspended, .unavailable(.backoff), .unavailable(.failed):
            fail(woken ? .wakeFailed(name) : .tenantUnavailable(name, .backoff), context: context)
        case .wakeRefused: fail(.wakeRateLimited(name), context: context)
        case .unknown: fail(.unknownTenant(name), context: context)
        case .stopped: fail(.tenantStopped(name), context: context)
        case .unavailable(let state): fail(.tenantUnavailable(name, state), context: context)
        case .failed: fail(woken ? .wakeFailed(name) : .tenantFailed(name), context: context)
        }
    }

    /// Counted once the route source has said whether the tenant exists: a made-up name must
    /// not get series of its own (see `ProxyMetrics`).
    private func countConnection(_ tenant: TenantName, route: TenantRoute) {
        guard tenantMetrics == nil, !countedUnknown else { return }
        if route == .unknown {
            countedUnknown = true
            shared.metrics.openedUnknownTenant()
            return
        }
        let metrics = shared.metrics.tenant(tenant)
        tenantMetrics = metrics
        shared.metrics.opened(metrics, open: shared.limits.connections(of: tenant))
    }

    /// A suspended tenant: hold the client while the fleet starts it (one start for all waiting
    /// clients), up to the wake timeout instead of the startup timeout.
    private func wake(_ request: RouteRequest, negotiate: NegotiateProtocolVersion?, context: ChannelHandlerContext) {
        let tenant = request.tenant
        let limit = shared.configuration.wakeTimeout
        timeout?.cancel()
        timeout = context.eventLoop.assumeIsolated().scheduleTask(in: limit) {
            guard case .routing = self.phase else { return }
            self.fail(.wakeTimeout(tenant.rawValue, seconds: limit.nanoseconds / 1_000_000_000), context: context)
        }
        let routes = shared.routes
        context.eventLoop.makeFutureWithTask { await routes.wake(tenant) }
            .assumeIsolated().whenSuccess { route in
                self.follow(route, request: request, negotiate: negotiate, context: context, woken: true)
            }
    }

    /// With pooling on and a SCRAM verifier for the user, the proxy authenticates the client
    /// itself and lends it a pooled server connection; otherwise the client gets a server
    /// connection of its own and authenticates with the server.
    private func connect(socketPath: String, request: RouteRequest, negotiate: NegotiateProtocolVersion?, context: ChannelHandlerContext) {
        phase = .connecting
        guard shared.pools.configuration.enabled, let user = request.parameters.first(where: { $0.name == "user" })?.value,
            !request.parameters.contains(where: { $0.name == "replication" })
        else {
            connectDirect(socketPath: socketPath, request: request, negotiate: negotiate, context: context)
            return
        }
        // The tenant's pg_hba.conf asks every login through the proxy for SCRAM-SHA-256 (see
        // ClusterConfig.hba), so the client gets that request now and answers it while the
        // verifier is looked up: the two round trips overlap. Without a verifier the client
        // authenticates with the tenant directly, which asks the same first.
        var out = context.channel.allocator.buffer(capacity: 64)
        negotiate?.encode(into: &out)
        AuthenticationRequest.sasl(mechanisms: [Scram.mechanism]).encode(into: &out)
        context.writeAndFlush(wrapOutboundOut(out), promise: nil)
        shared.pools.lookupSecret(tenant: request.tenant, socketPath: socketPath, role: user, on: context.eventLoop)
            .assumeIsolated().whenSuccess { secret in
                guard case .connecting = self.phase, context.channel.isActive else { return }
                guard let secret, let verifier = ScramVerifier(secret) else {
                    self.connectDirect(socketPath: socketPath, request: request, negotiate: nil, clientAskedForSCRAM: true, context: context)
                    return
                }
                self.startPooledLogin(
                    PooledLogin(exchange: ScramServerExchange(verifier: verifier),
                                key: PoolKey(tenant: request.tenant, socketPath: socketPath, parameters: request.parameters), user: user),
                    context: context
                )
            }
    }

    /// The client was asked for SCRAM already (see `connect`); what it sent since is its answer.
    private func startPooledLogin(_ login: PooledLogin, context: ChannelHandlerContext) {
        self.login = login
        phase = .authenticating
        for var pending in pendingToServer {
            if authBuffer == nil { authBuffer = pending } else { authBuffer!.writeBuffer(&pending) }
        }
        pendingToServer = []
        processAuthentication(context: context)
    }

    private func processAuthentication(context: ChannelHandlerContext) {
        while case .authenticating = phase, var bytes = authBuffer {
            let message: RawMessage?
            do {
                message = try MessageFramer.next(&bytes, maxLength: ProxyConfiguration.authenticationMessageLimit)
            } catch {
                fail(.protocolViolation("invalid authentication message"), context: context)
                return
            }
            guard let message else { return }
            authBuffer = bytes.readableBytes > 0 ? bytes : nil
            guard message.type == FrontendMessageType.password else {
                // A Terminate, or anything else, instead of the password: the client gave up.
                phase = .done
                context.close(promise: nil)
                return
            }
            authenticate(message.body, context: context)
        }
    }

    private func authenticate(_ body: ByteBuffer, context: ChannelHandlerContext) {
        guard var login else { return }
        do {
            if !login.receivedFirst {
                var body = body
                let mechanism = try body.readCString("SASL mechanism")
                guard mechanism == Scram.mechanism else {
                    fail(.unsupportedAuthentication("SASL mechanism not supported"), context: context)
                    return
                }
                let length = try body.readInt32("SASL data length")
                guard length >= 0, let data = body.readBytes(length: Int(length)) else {
                    fail(.protocolViolation("malformed SCRAM message"), context: context)
                    return
                }
                let serverFirst = try login.exchange.receiveClientFirst(data)
                login.receivedFirst = true
                self.login = login
                var out = context.channel.allocator.buffer(capacity: 128)
                AuthenticationRequest.saslContinue(serverFirst).encode(into: &out)
                context.writeAndFlush(wrapOutboundOut(out), promise: nil)
            } else {
                let (serverFinal, clientKey) = try login.exchange.receiveClientFinal(Array(body.readableBytesView))
                self.login = nil
                var out = context.channel.allocator.buffer(capacity: 128)
                AuthenticationRequest.saslFinal(serverFinal).encode(into: &out)
                AuthenticationRequest.ok.encode(into: &out)
                context.write(wrapOutboundOut(out), promise: nil)
                phase = .checkingOut
                checkOut(login, clientKey: clientKey, context: context)
            }
        } catch ScramError.wrongProof {
            fail(.authenticationFailed(user: login.user), context: context)
        } catch ScramError.unsupported(let what) {
            fail(.unsupportedAuthentication(what), context: context)
        } catch {
            fail(.protocolViolation("malformed SCRAM message"), context: context)
        }
    }

    /// A pooled session for `login`: an idle one of this event loop's pool, or a new one, or
    /// (`queue`) a place in line for either (see `ServerPool.shouldWait`). `attempt` counts
    /// the tries.
    private func checkOut(_ login: PooledLogin, clientKey: [UInt8], attempt: Int = 1, queue: Bool = true, context: ChannelHandlerContext) {
        let pool = shared.pools.pool(on: context.eventLoop)
        if let server = pool.checkout(login.key) {
            do {
                try pool.prepareForClient(server)
                shared.metrics.serverSession(.reused)
                begin(server, pool: pool, context: context)
                return
            } catch {
                server.channel.close(promise: nil)
            }
        }
        if queue && pool.shouldWait(login.key) {
            if pool.isSaturated(login.key) { waitedForSlot = true }
            waitForSession(login, clientKey: clientKey, pool: pool, attempt: attempt, context: context)
            return
        }
        openServer(login, clientKey: clientKey, pool: pool, attempt: attempt, context: context)
    }

    /// How long a client waits in line (for a connection slot of its tenant, or its turn to log
    /// in a new session): a burst of clients larger than max_connections waits for sessions to
    /// come back instead of failing at once. Then it tries once more, and a refusal of the
    /// tenant's (53300) is passed on.
    static let slotWait = TimeAmount.seconds(3)

    private func openServer(_ login: PooledLogin, clientKey: [UInt8], pool: ServerPool, attempt: Int, context: ChannelHandlerContext) {
        let name = login.key.tenant.rawValue
        pool.open(login.key, verifier: login.exchange.verifier, clientKey: clientKey).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let server):
                guard case .checkingOut = self.phase, context.channel.isActive else {
                    pool.release(server, parameters: server.parameters)
                    return
                }
                self.shared.metrics.serverSession(.opened)
                self.begin(server, pool: pool, context: context)
            case .failure(ServerLoginError.refused(let response)) where response.sqlstate == "53300":
                let deadline = self.slotDeadline ?? .now() + Self.slotWait
                self.slotDeadline = deadline
                self.waitedForSlot = true
                guard case .checkingOut = self.phase, context.channel.isActive else { return }
                guard NIODeadline.now() < deadline else {
                    self.shared.metrics.slotWaitEnded(login.key.tenant, served: false)
                    self.fail(response, label: "server_refused", context: context)
                    return
                }
                // Idle pooled sessions this client cannot use (other users, databases, event
                // loops) give their slots back.
                self.shared.pools.trim(login.key.tenant, keeping: login.key, on: context.eventLoop)
                if pool.hasLent(login.key) {
                    self.waitForSession(login, clientKey: clientKey, pool: pool, attempt: attempt, context: context)
                } else {
                    // None of its kind lent here: only a slot freed elsewhere helps; ask again soon.
                    context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(25 * Int64(min(attempt, 8)))) {
                        guard case .checkingOut = self.phase, context.channel.isActive else { return }
                        self.checkOut(login, clientKey: clientKey, attempt: attempt + 1, context: context)
                    }
                }
            case .failure(ServerLoginError.refused(let response)):
                // The server's own refusal (no such database, …), as it is.
                self.fail(response, label: "server_refused", context: context)
            case .failure(let error):
                self.shared.logger.warning("cannot open a server session", metadata: ["tenant": "\(name)", "error": "\(error)"])
                self.fail(.backendUnavailable(name), context: context)
            }
        }
    }

    /// Queues the client for the next session of its kind that comes back to this event loop's
    /// pool, or its turn to log in a new one (see `ServerPool.wait`).
    private func waitForSession(_ login: PooledLogin, clientKey: [UInt8], pool: ServerPool, attempt: Int, context: ChannelHandlerContext) {
        let deadline = slotDeadline ?? .now() + Self.slotWait
        slotDeadline = deadline
        pool.wait(for: login.key, until: deadline) { server in
            guard case .checkingOut = self.phase, context.channel.isActive else { return false }
            if let server {
                self.shared.metrics.serverSession(.reused)
                self.begin(server, pool: pool, context: context)
            } else {
                self.checkOut(login, clientKey: clientKey, attempt: attempt + 1, queue: false, context: context)
            }
            return true
        }
    }

    /// Lends `server` to this client: the server's parameters, a cancel key of the proxy's and
    /// ReadyForQuery, then the glue with a `PooledSession` watching it.
    private func begin(_ server: PooledServer, pool: ServerPool, context: ChannelHandlerContext) {
        phase = .handedOver
        timeout?.cancel()
        if waitedForSlot { shared.metrics.slotWaitEnded(server.key.tenant, served: true) }
        var out = context.channel.allocator.buffer(capacity: 512)
        server.writeParameters(into: &out)
        if let key = server.backendKey {
            issueCancelKey(for: key, socketPath: server.key.socketPath).encode(into: &out)
        }
        ReadyForQuery.encode(status: ReadyForQuery.idle, into: &out)
        context.write(wrapOutboundOut(out), promise: nil)

        let session = PooledSession(server: server, pool: pool) { [weak self] in self?.releaseCancelKey() }
        let (clientGlue, serverGlue) = GlueHandler.matchedPair(
            onClientBytes: { self.countClientBytes($0) }, onServerBytes: { self.countServerBytes($0) }, observer: session
        )
        session.attach(serverGlue: serverGlue)
        do {
            try server.channel.pipeline.syncOperations.addHandler(serverGlue)
            try context.pipeline.syncOperations.addHandler(clientGlue, position: .after(self))
        } catch {
            server.channel.close(promise: nil)
            context.close(promise: nil)
            return
        }
        // Whatever the client sent after its last authentication message.
        var early = pendingToServer
        if let rest = authBuffer { early.insert(rest, at: 0) }
        authBuffer = nil
        pendingToServer = []
        for bytes in early {
            countClientBytes(bytes.readableBytes)
            let forward = session.clientSent(bytes)
            if forward > 0 { server.channel.write(bytes.getSlice(at: bytes.readerIndex, length: forward)!, promise: nil) }
        }
        server.channel.flush()
        context.flush()
        server.channel.read()
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    private func releaseCancelKey() {
        if let key = cancelKey {
            shared.cancels.remove(key)
            cancelKey = nil
        }
    }

    /// `clientAskedForSCRAM`: the client has been sent the SASL request already; the server's
    /// own is not passed on.
    private func connectDirect(
        socketPath: String, request: RouteRequest, negotiate: NegotiateProtocolVersion?, clientAskedForSCRAM: Bool = false,
        context: ChannelHandlerContext
    ) {
        shared.metrics.serverSession(.direct)
        let client = NIOLoopBound(self, eventLoop: context.eventLoop)
        let clientContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        let tenant = request.tenant
        ClientBootstrap(group: context.eventLoop)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ServerHandshakeHandler(
                            client: client.value, clientContext: clientContext.value, tenant: tenant, socketPath: socketPath,
                            clientAskedForSCRAM: clientAskedForSCRAM
                        )
                    )
                }
            }
            .connect(unixDomainSocketPath: socketPath)
            .assumeIsolated().whenComplete { result in
                switch result {
                case .failure(let error):
                    self.shared.logger.warning("cannot reach tenant server", metadata: ["tenant": "\(tenant)", "error": "\(error)"])
                    self.fail(.backendUnavailable(tenant.rawValue), context: context)
                case .success(let server):
                    guard case .connecting = self.phase, context.channel.isActive else {
                        server.close(promise: nil)
                        return
                    }
                    self.phase = .relaying(server: server)
                    self.timeout?.cancel()
                    if let negotiate {
                        var message = context.channel.allocator.buffer(capacity: 64)
                        negotiate.encode(into: &message)
                        context.writeAndFlush(self.wrapOutboundOut(message), promise: nil)
                    }
                    var startup = server.allocator.buffer(capacity: 256)
                    StartupCodec.encode(.startup(version: .v3_0, parameters: request.parameters), into: &startup)
                    server.write(startup, promise: nil)
                    for pending in self.pendingToServer {
                        self.countClientBytes(pending.readableBytes)
                        server.write(pending, promise: nil)
                    }
                    self.pendingToServer = []
                    server.flush()
                }
            }
    }

    /// The tenant's server sent BackendKeyData: the client gets the backend's pid with a secret
    /// of the proxy's (see `CancelRegistry`).
    func issueCancelKey(for key: BackendKeyData, socketPath: String) -> BackendKeyData {
        guard let tenant else { return key }
        if let old = cancelKey { shared.cancels.remove(old) }
        let issued = shared.cancels.register(
            CancelRegistry.Target(tenant: tenant, socketPath: socketPath, processID: key.processID, secretKey: key.secretKey)
        )
        cancelKey = issued
        return BackendKeyData(processID: issued.processID, secretKey: issued.secret)
    }

    /// ReadyForQuery: from here on bytes flow untouched in both directions.
    func switchToGlue(server: any Channel, serverHandler: ServerHandshakeHandler, clientContext: ChannelHandlerContext) {
        let (clientGlue, serverGlue) = GlueHandler.matchedPair(
            onClientBytes: { self.countClientBytes($0) },
            onServerBytes: { self.countServerBytes($0) }
        )
        do {
            try clientContext.pipeline.syncOperations.addHandler(clientGlue, position: .after(self))
            try server.pipeline.syncOperations.addHandler(serverGlue, position: .after(serverHandler))
            clientContext.pipeline.syncOperations.removeHandler(context: clientContext, promise: nil)
            let serverContext = try server.pipeline.syncOperations.context(handler: serverHandler)
            server.pipeline.syncOperations.removeHandler(context: serverContext, promise: nil)
        } catch {
            clientContext.close(promise: nil)
            server.close(promise: nil)
        }
    }

    func serverClosedDuringHandshake(context: ChannelHandlerContext) {
        phase = .done
        context.close(promise: nil)
    }

    /// The server asked for another authentication than the SCRAM the client was asked for.
    func serverAuthenticationMismatch(_ what: String, context: ChannelHandlerContext) {
        fail(.unsupportedAuthentication(
            "the tenant's server asks for \(what), not SCRAM-SHA-256 as pgfleet configures it: "
                + "its pg_hba.conf was changed; put back pgfleet's line `local all all scram-sha-256` and reload it"
        ), context: context)
    }

    private func forwardCancel(_ key: CancelRegistry.Key, eventLoop: any EventLoop) {
        guard let target = shared.cancels.lookup(key) else {
            shared.metrics.cancelForwarded(false)
            return
        }
        shared.metrics.cancelForwarded(true)
        ClientBootstrap(group: eventLoop)
            .connect(unixDomainSocketPath: target.socketPath)
            .whenSuccess { channel in
                var request = channel.allocator.buffer(capacity: 16)
                StartupCodec.encode(.cancelRequest(processID: target.processID, secretKey: target.secretKey), into: &request)
                channel.writeAndFlush(request).whenComplete { _ in channel.close(promise: nil) }
            }
    }

    private func fail(_ error: ProxyError, context: ChannelHandlerContext) {
        // The route led nowhere: the next client of this tenant asks for a fresh one.
        if case .backendUnavailable = error, let tenant { shared.routes.forget(tenant) }
        shared.metrics.handshakeFailed(error)
        fail(error.errorResponse, label: error.metricLabel, context: context)
    }

    private func fail(_ response: ErrorResponse, label: String, context: ChannelHandlerContext) {
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

    private func countClientBytes(_ count: Int) {
        clientBytes += count
        tenantMetrics?.bytes.clientToServer.increment(by: count)
    }

    private func countServerBytes(_ count: Int) {
        tenantMetrics?.bytes.serverToClient.increment(by: count)
    }

    private func connectionClosed() {
        timeout?.cancel()
        if !overLimit { shared.limits.releaseConnection() }
        if let key = cancelKey { shared.cancels.remove(key) }
        if let tenant {
            shared.limits.release(tenant: tenant)
            if let tenantMetrics { shared.metrics.closed(tenantMetrics, open: shared.limits.connections(of: tenant)) }
        }
    }
}

/// The tenant server's side until ReadyForQuery: passes authentication through (without the
/// channel-binding mechanism, which cannot survive TLS termination) and swaps the cancel key.
final class ServerHandshakeHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let client: ClientConnectionHandler
    private let clientContext: ChannelHandlerContext
    private let tenant: TenantName
    private let socketPath: String
    private var buffer: ByteBuffer?
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
        var incoming = unwrapInboundIn(data)
        if buffer == nil { buffer = incoming } else { buffer!.writeBuffer(&incoming) }
        guard var bytes = buffer else { return }
        do {
            while !switched, let message = try MessageFramer.next(&bytes, maxLength: ProxyConfiguration.handshakeMessageLimit) {
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
        buffer = bytes.readableBytes > 0 ? bytes : nil
        clientContext.flush()
        if switched {
            if let rest = buffer {
                buffer = nil
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
