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
        let machine = PooledLoginMachine(user: user, tenant: request.tenant.rawValue)
        let key = PoolKey(tenant: request.tenant, socketPath: socketPath, parameters: request.parameters)
        shared.pools.lookupSecret(tenant: request.tenant, socketPath: socketPath, role: user, on: context.eventLoop)
            .assumeIsolated().whenSuccess { secret in
                guard case .connecting = self.phase, context.channel.isActive else { return }
                let verifier = secret.flatMap { ScramVerifier($0) }
                var machine = machine
                let actions = machine.event(.verifierLookedUp(verifier))
                self.login = PooledLogin(machine: machine, key: key)
                self.run(actions, socketPath: socketPath, request: request, context: context)
            }
    }

    /// Feeds the pooled login's machine one event and runs what it decides.
    func loginEvent(_ event: PooledLoginMachine.Event, server: PooledServer? = nil, context: ChannelHandlerContext) {
        guard var login else { return }
        let actions = login.machine.event(event)
        self.login = login
        run(actions, server: server, context: context)
    }

    /// Runs the machine's actions. `server`: the session the event that led to them brought,
    /// which a `.begin` lends; the direct path needs the route (`socketPath`, `request`).
    func run(
        _ actions: [PooledLoginMachine.Action], server: PooledServer? = nil, socketPath: String? = nil, request: RouteRequest? = nil,
        context: ChannelHandlerContext
    ) {
        for action in actions {
            switch action {
            case .goDirect:
                login = nil
                guard let socketPath, let request else { return }
                connectDirect(socketPath: socketPath, request: request, negotiate: nil, clientAskedForSCRAM: true, context: context)
            case .readAuthentication:
                // The client was asked for SCRAM already (see `connect`); what it sent since is its answer.
                phase = .authenticating
                for pending in pendingToServer { authMessages.append(pending) }
                pendingToServer = []
                processAuthentication(context: context)
            case .sendServerFirst(let serverFirst):
                var out = context.channel.allocator.buffer(capacity: 128)
                AuthenticationRequest.saslContinue(serverFirst).encode(into: &out)
                context.writeAndFlush(wrapOutboundOut(out), promise: nil)
            case .sendServerFinal(let serverFinal):
                var out = context.channel.allocator.buffer(capacity: 128)
                AuthenticationRequest.saslFinal(serverFinal).encode(into: &out)
                AuthenticationRequest.ok.encode(into: &out)
                context.write(wrapOutboundOut(out), promise: nil)
                phase = .checkingOut
            case .checkOut:
                checkOut(context: context)
            case .wait(let deadline):
                waitForSession(until: deadline, context: context)
            case .open(let verifier, let clientKey):
                openServer(verifier: verifier, clientKey: clientKey, context: context)
            case .trim:
                guard let key = login?.key else { return }
                // Idle pooled sessions this client cannot use (other users, databases, event
                // loops) give their slots back.
                shared.pools.trim(key.tenant, keeping: key, on: context.eventLoop)
                loginEvent(.trimmed(hasLent: shared.pools.pool(on: context.eventLoop).hasLent(key)), context: context)
            case .retry(let delay):
                context.eventLoop.assumeIsolated().scheduleTask(in: delay) {
                    guard case .checkingOut = self.phase, context.channel.isActive else { return }
                    self.loginEvent(.retryTimerFired, context: context)
                }
            case .slotWaitEnded(let served):
                if let key = login?.key { shared.metrics.slotWaitEnded(key.tenant, served: served) }
            case .begin(let id):
                login = nil
                guard let server, server.id == id else { return }
                begin(server, pool: shared.pools.pool(on: context.eventLoop), context: context)
            case .fail(let error):
                login = nil
                fail(error, context: context)
            case .refuse(let response, let label):
                login = nil
                fail(response, label: label, context: context)
            case .close:
                login = nil
                phase = .done
                context.close(promise: nil)
            }
        }
    }

    func processAuthentication(context: ChannelHandlerContext) {
        while case .authenticating = phase {
            let message: RawMessage?
            do {
                message = try authMessages.next()
            } catch {
                loginEvent(.invalidMessage, context: context)
                return
            }
            guard let message else { return }
            loginEvent(.message(message), context: context)
        }
    }

    /// Asks this event loop's pool for an idle session of the client's kind, else whether to
    /// queue (see `ServerPool.shouldWait`).
    func checkOut(context: ChannelHandlerContext) {
        guard let key = login?.key else { return }
        let pool = shared.pools.pool(on: context.eventLoop)
        if let server = pool.checkout(key) {
            do {
                try pool.prepareForClient(server)
                shared.metrics.serverSession(.reused)
                loginEvent(.pool(.idle(server.id)), server: server, context: context)
                return
            } catch {
                server.channel.close(promise: nil)
            }
        }
        if pool.shouldWait(key) {
            loginEvent(.pool(.shouldWait(saturated: pool.isSaturated(key), now: .now())), context: context)
        } else {
            loginEvent(.pool(.mustOpen), context: context)
        }
    }

    func openServer(verifier: ScramVerifier, clientKey: [UInt8], context: ChannelHandlerContext) {
        guard let key = login?.key else { return }
        let pool = shared.pools.pool(on: context.eventLoop)
        pool.open(key, verifier: verifier, clientKey: clientKey).whenComplete { result in
            switch result {
            case .success(let server):
                guard case .checkingOut = self.phase, context.channel.isActive else {
                    pool.release(server, parameters: server.parameters)
                    return
                }
                self.shared.metrics.serverSession(.opened)
                self.loginEvent(.opened(server.id), server: server, context: context)
            case .failure(ServerLoginError.refused(let response)):
                guard case .checkingOut = self.phase, context.channel.isActive else { return }
                self.loginEvent(.refused(response, now: .now()), context: context)
            case .failure(let error):
                self.shared.logger.warning("cannot open a server session", metadata: ["tenant": "\(key.tenant.rawValue)", "error": "\(error)"])
                self.loginEvent(.openFailed, context: context)
            }
        }
    }

    /// Queues the client for the next session of its kind that comes back to this event loop's
    /// pool, or its turn to log in a new one (see `ServerPool.wait`).
    func waitForSession(until deadline: NIODeadline, context: ChannelHandlerContext) {
        guard let key = login?.key else { return }
        let pool = shared.pools.pool(on: context.eventLoop)
        pool.wait(for: key, until: deadline) { server in
            guard case .checkingOut = self.phase, context.channel.isActive else { return false }
            if server != nil { self.shared.metrics.serverSession(.reused) }
            self.loginEvent(.resumed(server?.id), server: server, context: context)
            return true
        }
    }

    /// Lends `server` to this client: the server's parameters, a cancel key of the proxy's and
    /// ReadyForQuery, then the glue with a `PooledSession` watching it.
    func begin(_ server: PooledServer, pool: ServerPool, context: ChannelHandlerContext) {
        phase = .handedOver
        releaseReservation()
        timeout?.cancel()
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
