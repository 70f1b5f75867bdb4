import FleetCore
import NIOCore
import NIOPosix
import PGWire

/// The direct path: a server connection of the client's own, authenticated by the server.
extension ClientConnectionHandler {
    /// `clientAskedForSCRAM`: the client has been sent the SASL request already; the server's
    /// own is not passed on.
    func connectDirect(
        socketPath: String, request: RouteRequest, negotiate: NegotiateProtocolVersion?, clientAskedForSCRAM: Bool = false,
        context: ChannelHandlerContext
    ) {
        shared.metrics.serverSession(.direct)
        let client = NIOLoopBound(self, eventLoop: context.eventLoop)
        let clientContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        let tenant = request.tenant
        ClientBootstrap(group: context.eventLoop)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelInitializer { [shared] channel in
                channel.eventLoop.makeCompletedFuture {
                    shared.descriptors.track(channel)
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
                    self.releaseReservation()
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
}
