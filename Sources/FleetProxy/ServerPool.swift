import FleetCore
import Logging
import NIOCore
import NIOPosix
import PGWire

/// One event loop's server connections and verifier-lookup connections. Loop-bound. The
/// decisions are `PoolState`'s; this class runs them on channels and timers.
final class ServerPool {
    private let loop: any EventLoop
    private unowned let owner: ServerPools
    private var state: PoolState
    private var servers: [PoolState.ServerID: PooledServer] = [:]
    private var waiters: [PoolState.WaiterID: Waiter] = [:]
    private var probes: [PoolKey: Scheduled<Void>] = [:]
    private var sweeper: Scheduled<Void>?
    private lazy var lookups = VerifierLookups(pool: self, loop: loop, logger: owner.logger)

    static let maxOpening = PoolState.maxOpening
    static let probeInterval = PoolState.probeInterval

    /// A client in line. `resume` gets a session (true: the client took it) or nil (its turn
    /// to log in a new one); it is called once.
    private struct Waiter {
        let resume: (PooledServer?) -> Bool
        var timeout: Scheduled<Void>?
    }

    init(loop: any EventLoop, owner: ServerPools) {
        self.loop = loop
        self.owner = owner
        self.state = PoolState(maxIdlePerKey: owner.configuration.maxIdlePerKey)
    }

    /// Sweeps a third of the idle timeout apart. Each sweep schedules the next on the loop
    /// itself (NIO's repeated tasks take a `Sendable` closure, and the pool is loop-bound).
    func startSweeping() {
        let interval = TimeAmount.nanoseconds(max(owner.configuration.idleTimeout.nanoseconds / 3, 100_000_000))
        sweeper = loop.assumeIsolated().scheduleTask(in: interval) { [weak self] in
            self?.sweep()
            self?.startSweeping()
        }
    }

    /// An idle connection for `key`, taken out of the pool and lent, or nil.
    func checkout(_ key: PoolKey) -> PooledServer? {
        while let id = state.checkout(key) {
            if let server = servers[id], server.channel.isActive { return server }
            state.forget(id)
        }
        return nil
    }

    /// Opens and logs in a new server connection for `key`, proving `clientKey`; it is lent.
    /// A refusal for want of a slot while sessions of `key` are lent marks the key saturated.
    /// The future stays on the pool's loop (a `PooledServer` is loop-bound, not `Sendable`).
    func open(_ key: PoolKey, verifier: ScramVerifier, clientKey: [UInt8]) -> EventLoopFuture<PooledServer>.Isolated {
        let id = state.startOpening(key)
        let opened = connect(key, scram: ScramClientExchange(verifier: verifier, clientKey: clientKey)).assumeIsolated().map { channel, session in
            self.register(id, channel: channel, key: key, session: session)
        }
        opened.whenComplete { result in
            switch result {
            case .success:
                self.run(self.state.opened(id))
            case .failure(let error):
                var outOfSlots = false
                if case ServerLoginError.refused(let response) = error, response.sqlstate == "53300" { outOfSlots = true }
                self.run(self.state.openFailed(id, outOfSlots: outOfSlots))
            }
        }
        return opened
    }

    /// A channel logged in to `key`'s server joins the pool, lent to the client that opened it
    /// (what `open` does once logged in; tests bring channels of their own).
    func adopt(_ channel: any Channel, key: PoolKey, session: ServerSession) -> PooledServer {
        let id = state.startOpening(key)
        let server = register(id, channel: channel, key: key, session: session)
        run(state.opened(id))
        return server
    }

    private func register(_ id: PoolState.ServerID, channel: any Channel, key: PoolKey, session: ServerSession) -> PooledServer {
        let server = PooledServer(id: id, channel: channel, key: key, session: session)
        servers[id] = server
        channel.closeFuture.assumeIsolated().whenComplete { _ in
            self.servers[id] = nil
            self.run(self.state.closed(id, key: key))
        }
        return server
    }

    // MARK: Waiting for a session to come back

    /// See `PoolState.shouldWait`.
    func shouldWait(_ key: PoolKey) -> Bool { state.shouldWait(key) }

    /// Whether the tenant refused the last new session of `key` for want of a slot.
    func isSaturated(_ key: PoolKey) -> Bool { state.isSaturated(key) }

    /// Whether sessions of `key` are lent, so one will come back to this pool.
    func hasLent(_ key: PoolKey) -> Bool { state.hasLent(key) }

    /// Queues a client for the next session of `key` that comes back, or for its turn to log
    /// in a new one (`resume(nil)`): when a login of `key` ends, when it is the one that asks
    /// the tenant again, when none of `key` is lent any more, or at `deadline`.
    func wait(for key: PoolKey, until deadline: NIODeadline, resume: @escaping (PooledServer?) -> Bool) {
        let (id, actions) = state.wait(for: key, until: deadline)
        waiters[id] = Waiter(resume: resume)
        run(actions)
    }

    /// Takes a server connection back after its client left with the session idle: it is reset
    /// (DISCARD ALL) and kept for the next client, or closed if the reset does not go cleanly.
    func release(_ server: PooledServer, parameters: [ParameterStatus]) {
        guard server.channel.isActive else { return }
        server.parameters = parameters
        let promise = loop.makePromise(of: [ParameterStatus].self)
        do {
            try server.channel.pipeline.syncOperations.addHandler(ResetHandler(promise: promise))
        } catch {
            server.channel.close(promise: nil)
            return
        }
        server.channel.read()
        state.resetStarted(server.id)
        promise.futureResult.assumeIsolated().whenComplete { result in
            switch result {
            case .success(let changes):
                server.apply(changes)
                self.state.resetSucceeded(server.id)
                if !self.handOver(server) {
                    self.run(self.state.checkIn(server.id, active: server.channel.isActive, now: .now()))
                }
            case .failure(let error):
                self.owner.logger.debug("server connection reset failed; closed", metadata: ["tenant": "\(server.key.tenant)", "error": "\(error)"])
                self.run(self.state.resetFailed(server.id))
            }
        }
    }

    /// Lent out again: the idle watcher leaves the pipeline.
    func prepareForClient(_ server: PooledServer) throws {
        let watcher = try server.channel.pipeline.syncOperations.handler(type: PoolIdleHandler.self)
        server.channel.pipeline.syncOperations.removeHandler(watcher, promise: nil)
    }

    func closeIdle(of tenant: TenantName, except spare: PoolKey? = nil) {
        run(state.closeIdle(of: tenant, except: spare))
    }

    private func sweep() {
        let dead = Set(state.idleServers.filter { servers[$0]?.channel.isActive != true })
        run(state.sweep(now: .now(), idleTimeout: owner.configuration.idleTimeout, dead: dead))
        lookups.sweep(before: .now() - owner.configuration.idleTimeout)
    }

    // MARK: Running PoolState's actions

    private func run(_ actions: [PoolState.Action]) {
        for action in actions { run(action) }
    }

    private func run(_ action: PoolState.Action) {
        switch action {
        case .close(let id):
            servers[id]?.channel.close(promise: nil)
        case .watchIdle(let id):
            guard let server = servers[id] else { return state.forget(id) }
            do {
                try server.channel.pipeline.syncOperations.addHandler(PoolIdleHandler())
            } catch {
                state.forget(id)
                server.channel.close(promise: nil)
                return
            }
            owner.logger.trace("server connection back in the pool", metadata: ["tenant": "\(server.key.tenant)", "idle": "\(state.idleCount(server.key))"])
            server.channel.read()
        case .offerTurn(let key, let delay):
            loop.assumeIsolated().scheduleTask(in: delay) { self.offerTurn(key) }
        case .giveTurn(let id):
            // On the next tick: not from inside the pool's own bookkeeping, which the client's
            // checkout would run into.
            guard let waiter = waiters.removeValue(forKey: id) else { return }
            loop.assumeIsolated().execute { _ = waiter.resume(nil) }
        case .scheduleTimeout(let id, let deadline):
            waiters[id]?.timeout = loop.assumeIsolated().scheduleTask(deadline: deadline) { [weak self] in
                guard let self, self.state.timedOut(id), let waiter = self.waiters.removeValue(forKey: id) else { return }
                _ = waiter.resume(nil)
            }
        case .cancelTimeout(let id):
            waiters[id]?.timeout?.cancel()
        case .scheduleProbe(let key, let delay):
            probes[key] = loop.assumeIsolated().scheduleTask(in: delay) { [weak self] in
                guard let self else { return }
                self.probes[key] = nil
                self.state.probeFired(key)
                self.offerTurn(key)
                self.run(self.state.probeEnded(key))
            }
        case .cancelProbe(let key):
            probes.removeValue(forKey: key)?.cancel()
        }
    }

    /// The first waiter of `key`, out of line; nil when none waits.
    private func nextWaiter(_ key: PoolKey) -> Waiter? {
        while let (id, actions) = state.nextWaiter(key) {
            run(actions)
            if let waiter = waiters.removeValue(forKey: id) { return waiter }
        }
        return nil
    }

    /// The first client waiting for `key` that is still there gets its turn to log in.
    private func offerTurn(_ key: PoolKey) {
        while let waiter = nextWaiter(key), !waiter.resume(nil) {}
    }

    /// A session of `server.key` came back reset: the first waiting client that is still there
    /// takes it, and it stays lent. False if none did.
    private func handOver(_ server: PooledServer) -> Bool {
        guard server.channel.isActive else { return false }
        while let waiter = nextWaiter(server.key) {
            if waiter.resume(server) { return true }
        }
        return false
    }

    // MARK: Connections

    /// The verifier of `role` (see `VerifierLookups.lookupSecret`).
    func lookupSecret(tenant: TenantName, socketPath: String, role: String) -> EventLoopFuture<String?> {
        lookups.lookupSecret(tenant: tenant, socketPath: socketPath, role: role)
    }

    func prepareLookup(tenant: TenantName, socketPath: String) {
        lookups.prepare(tenant: tenant, socketPath: socketPath)
    }

    /// A new channel to `key`'s server, logged in. Its futures stay on the loop
    /// (`assumeIsolated`): the channel and the session are loop-bound, not `Sendable`.
    func connect(_ key: PoolKey, scram: ScramClientExchange?) -> EventLoopFuture<(any Channel, ServerSession)> {
        let promise = loop.makePromise(of: ServerSession.self)
        let owner = owner
        return ClientBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    owner.descriptors.track(channel)
                    try channel.pipeline.syncOperations.addHandler(ServerLoginHandler(startup: key.parameters, scram: scram, promise: promise))
                }
            }
            .connect(unixDomainSocketPath: key.socketPath)
            .assumeIsolated()
            .flatMapError { [loop] error in
                // No channel, so no login handler to answer the promise (socket() can fail
                // with EMFILE before there is one): it is answered here, or it would leak.
                promise.fail(error)
                return loop.makeFailedFuture(error)
            }
            .flatMap { channel in
                owner.opened(key.tenant)
                channel.closeFuture.whenComplete { _ in owner.closed(key.tenant) }
                return promise.futureResult.assumeIsolated().flatMapErrorThrowing { error in
                    channel.close(promise: nil)
                    throw error
                }.flatMapThrowing { session in
                    let login = try channel.pipeline.syncOperations.handler(type: ServerLoginHandler.self)
                    channel.pipeline.syncOperations.removeHandler(login, promise: nil)
                    return (channel, session)
                }.nonisolated()
            }
            .nonisolated()
    }
}
