import FleetCore
import NIOCore
import NIOPosix
import PGWire

/// The pooled login: the proxy checks the client's SCRAM itself, then lends it a pooled server
/// session, queues it for one, or opens one.
extension ClientConnectionHandler {
    /// With pooling on and a SCRAM verifier for the user, the proxy authenticates the client
    /// itself and lends it a pooled server connection; otherwise the client gets a server
    /// connection of its own and authenticates with the server.
    func connect(socketPath: String, request: RouteRequest, negotiate: NegotiateProtocolVersion?, context: ChannelHandlerContext) {
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
    func startPooledLogin(_ login: PooledLogin, context: ChannelHandlerContext) {
        self.login = login
        phase = .authenticating
        for pending in pendingToServer { authMessages.append(pending) }
        pendingToServer = []
        processAuthentication(context: context)
    }

    func processAuthentication(context: ChannelHandlerContext) {
        while case .authenticating = phase {
            let message: RawMessage?
            do {
                message = try authMessages.next()
            } catch {
                fail(.protocolViolation("invalid authentication message"), context: context)
                return
            }
            guard let message else { return }
            guard message.type == FrontendMessageType.password else {
                // A Terminate, or anything else, instead of the password: the client gave up.
                phase = .done
                context.close(promise: nil)
                return
            }
            authenticate(message.body, context: context)
        }
    }

    func authenticate(_ body: ByteBuffer, context: ChannelHandlerContext) {
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
    func checkOut(_ login: PooledLogin, clientKey: [UInt8], attempt: Int = 1, queue: Bool = true, context: ChannelHandlerContext) {
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
            waitForSession(login, clientKey: clientKey, pool: pool, attempt: attempt, context: context)
            return
        }
        openServer(login, clientKey: clientKey, pool: pool, attempt: attempt, context: context)
    }

    func openServer(_ login: PooledLogin, clientKey: [UInt8], pool: ServerPool, attempt: Int, context: ChannelHandlerContext) {
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
                let refused = self.loginMachine.slotRefused(now: .now())
                guard case .checkingOut = self.phase, context.channel.isActive else { return }
                guard refused == .trim else {
                    self.shared.metrics.slotWaitEnded(login.key.tenant, served: false)
                    self.fail(response, label: "server_refused", context: context)
                    return
                }
                // Idle pooled sessions this client cannot use (other users, databases, event
                // loops) give their slots back.
                self.shared.pools.trim(login.key.tenant, keeping: login.key, on: context.eventLoop)
                switch self.loginMachine.trimmed(hasLent: pool.hasLent(login.key), attempt: attempt) {
                case .waitForSession:
                    self.waitForSession(login, clientKey: clientKey, pool: pool, attempt: attempt, context: context)
                case .retry(let delay):
                    context.eventLoop.assumeIsolated().scheduleTask(in: delay) {
                        guard case .checkingOut = self.phase, context.channel.isActive else { return }
                        self.checkOut(login, clientKey: clientKey, attempt: attempt + 1, context: context)
                    }
                case .refuse, .trim:
                    self.fail(response, label: "server_refused", context: context)
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
    func waitForSession(_ login: PooledLogin, clientKey: [UInt8], pool: ServerPool, attempt: Int, context: ChannelHandlerContext) {
        let deadline = loginMachine.queued(now: .now(), saturated: pool.isSaturated(login.key))
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
    func begin(_ server: PooledServer, pool: ServerPool, context: ChannelHandlerContext) {
        phase = .handedOver
        timeout?.cancel()
        if loginMachine.waitedForSlot { shared.metrics.slotWaitEnded(server.key.tenant, served: true) }
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
        if let rest = authMessages.takeRemaining() { early.insert(rest, at: 0) }
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

    func releaseCancelKey() {
        if let key = cancelKey {
            shared.cancels.remove(key)
            cancelKey = nil
        }
    }
}
