import FleetCore
import Logging
import Metrics
import NIOCore
import NIOPosix
import PGWire
import Synchronization

/// Server connections are shared only between clients of the same tenant that sent the same
/// startup parameters (user, database, options, application_name, …) after routing.
struct PoolKey: Hashable {
    var tenant: TenantName
    var socketPath: String
    var parameters: [StartupParameter]
}

/// A logged-in server connection owned by the pool: idle in it, or lent to one client.
final class PooledServer {
    let channel: any Channel
    let key: PoolKey
    let backendKey: BackendKeyData?
    /// ParameterStatus values the server has reported, which the next client is told.
    var parameters: [ParameterStatus] {
        didSet { encodedParameters = nil }
    }
    /// `parameters` as the ParameterStatus messages a client is sent, encoded once per change.
    private var encodedParameters: ByteBuffer?
    var idleSince = NIODeadline.now()
    /// Lent to a client, or being reset after one (counted in `ServerPool`'s `lent`).
    fileprivate(set) var isLent = false

    init(channel: any Channel, key: PoolKey, session: ServerSession) {
        self.channel = channel
        self.key = key
        self.backendKey = session.backendKey
        self.parameters = session.parameters
    }

    /// Writes the ParameterStatus messages for the next client.
    func writeParameters(into out: inout ByteBuffer) {
        if encodedParameters == nil {
            var encoded = channel.allocator.buffer(capacity: 512)
            for parameter in parameters { parameter.encode(into: &encoded) }
            encodedParameters = encoded
        }
        out.writeImmutableBuffer(encodedParameters!)
    }
}

public struct PoolConfiguration: Sendable {
    /// Off: every client gets a server connection of its own, authenticated by the server itself.
    public var enabled: Bool
    /// Idle server connections are closed after this long.
    public var idleTimeout: TimeAmount
    /// Idle server connections kept per key and event loop.
    public var maxIdlePerKey: Int

    public init(enabled: Bool = true, idleTimeout: TimeAmount = .seconds(30), maxIdlePerKey: Int = 32) {
        self.enabled = enabled
        self.idleTimeout = idleTimeout
        self.maxIdlePerKey = maxIdlePerKey
    }
}

/// The pools of every event loop of one proxy, and how many server connections they hold per
/// tenant (idle suspension must not count them as clients).
final class ServerPools: Sendable {
    let configuration: PoolConfiguration
    let logger: Logger
    private let pools = Mutex<[ObjectIdentifier: (loop: any EventLoop, pool: NIOLoopBound<ServerPool>)]>([:])
    private let counts = Mutex<[TenantName: Int]>([:])

    init(configuration: PoolConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// The verifier of `role` (see `ServerPool.lookupSecret`), answered on `loop`. Each event
    /// loop has its own lookup connection to a tenant: a lookup is on every login's path, and
    /// handing it to another loop and back cost more (two thread wake-ups, about 150 µs here)
    /// than the query itself (about 40 µs).
    func lookupSecret(tenant: TenantName, socketPath: String, role: String, on loop: any EventLoop) -> EventLoopFuture<String?> {
        pool(on: loop).lookupSecret(tenant: tenant, socketPath: socketPath, role: role)
    }

    /// Opens `tenant`'s lookup connection on each of `loops`, unless it is open or off.
    func prepareLookups(tenant: TenantName, socketPath: String, on loops: [any EventLoop]) {
        guard configuration.enabled else { return }
        for loop in loops {
            loop.execute { self.pool(on: loop).prepareLookup(tenant: tenant, socketPath: socketPath) }
        }
    }

    /// The pool of `loop`; call on `loop`.
    func pool(on loop: any EventLoop) -> ServerPool {
        let id = ObjectIdentifier(loop)
        if let existing = pools.withLock({ $0[id] }) { return existing.pool.value }
        let pool = ServerPool(loop: loop, owner: self)
        pools.withLock { $0[id] = (loop, NIOLoopBound(pool, eventLoop: loop)) }
        pool.startSweeping()
        return pool
    }

    /// Closes the idle server connections of `tenant` on every event loop: the tenant ran out of
    /// connection slots, and idle pooled sessions should not keep a client out. Those of `key`
    /// on `keepLoop` stay: the client that asked can use them itself.
    func trim(_ tenant: TenantName, keeping key: PoolKey? = nil, on keepLoop: (any EventLoop)? = nil) {
        for (loop, pool) in pools.withLock({ Array($0.values) }) {
            let spare = keepLoop.map { $0 === loop } == true ? key : nil
            loop.execute { pool.value.closeIdle(of: tenant, except: spare) }
        }
    }

    func opened(_ tenant: TenantName) {
        let now = counts.withLock { counts in
            counts[tenant, default: 0] += 1
            return counts[tenant]!
        }
        Gauge(label: "pgfleet_proxy_server_connections", dimensions: [("tenant", tenant.rawValue)]).record(now)
    }

    func closed(_ tenant: TenantName) {
        let now = counts.withLock { counts in
            let left = (counts[tenant] ?? 1) - 1
            counts[tenant] = left > 0 ? left : nil
            return max(left, 0)
        }
        Gauge(label: "pgfleet_proxy_server_connections", dimensions: [("tenant", tenant.rawValue)]).record(now)
    }

    /// Server connections the pools hold for `tenant` now, idle or lent, verifier lookups included.
    func serverConnections(of tenant: TenantName) -> Int {
        counts.withLock { $0[tenant] ?? 0 }
    }
}

/// One event loop's idle server connections and verifier-lookup connections. Loop-bound.
final class ServerPool {
    private let loop: any EventLoop
    private unowned let owner: ServerPools
    private var idle: [PoolKey: [PooledServer]] = [:]
    private var lookups: [String: Lookup] = [:]
    private var sweeper: Scheduled<Void>?
    /// Sessions of each key lent to clients, or being reset after one.
    private var lent: [PoolKey: Int] = [:]
    /// Clients waiting for a session of their key to come back, first come first served: the
    /// tenant had no connection slot left for a new one.
    private var waiters: [PoolKey: CircularBuffer<Waiter>] = [:]
    /// Keys whose last new session was refused for want of a connection slot while sessions of
    /// theirs were lent: their clients wait for one to come back, and one of them asks the
    /// tenant again each `probeInterval` (each refused login is a backend started for nothing
    /// and a FATAL line in the tenant's log).
    private var saturated: Set<PoolKey> = []
    /// Logins of new sessions under way, per key.
    private var opening: [PoolKey: Int] = [:]
    /// Sessions of each key being reset after their client left (a millisecond or so): a client
    /// that finds none idle waits for one rather than starting a backend of its own.
    private var resetting: [PoolKey: Int] = [:]
    private var probes: [PoolKey: Scheduled<Void>] = [:]

    /// New sessions of one key a pool logs in at once; more clients wait for one of those logins
    /// to end or for a session to come back. A burst then costs the tenant a few backends
    /// more than it has slots, not one per client (PgBouncer opens one at a time).
    static let maxOpening = 4
    /// How often one waiting client of a saturated key asks the tenant again: a slot may have
    /// been freed by a connection that is not the pool's.
    static let probeInterval = TimeAmount.seconds(1)

    /// A client in `waiters`. `resume` gets a session (true: the client took it) or nil (its
    /// turn to log in a new one); it is called once.
    private final class Waiter {
        let resume: (PooledServer?) -> Bool
        var timeout: Scheduled<Void>?

        init(resume: @escaping (PooledServer?) -> Bool) {
            self.resume = resume
        }
    }

    private enum Lookup {
        case connecting(waiting: [(role: String, promise: EventLoopPromise<String?>)])
        case ready(AuthLookupHandler, channel: any Channel, lastUsed: NIODeadline)
        /// The tenant cannot answer lookups (no lookup function, peer authentication refused):
        /// its clients authenticate with the server directly until then.
        case unavailable(until: NIODeadline)
    }

    init(loop: any EventLoop, owner: ServerPools) {
        self.loop = loop
        self.owner = owner
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
        while var list = idle[key], let server = list.popLast() {
            idle[key] = list.isEmpty ? nil : list
            if server.channel.isActive {
                lend(server)
                return server
            }
        }
        return nil
    }

    /// Opens and logs in a new server connection for `key`, proving `clientKey`; it is lent.
    /// A refusal for want of a slot while sessions of `key` are lent marks the key saturated.
    func open(_ key: PoolKey, verifier: ScramVerifier, clientKey: [UInt8]) -> EventLoopFuture<PooledServer> {
        opening[key, default: 0] += 1
        let opened = connect(key, scram: ScramClientExchange(verifier: verifier, clientKey: clientKey)).assumeIsolated().map { server in
            self.saturated.remove(key)
            self.lend(server)
            server.channel.closeFuture.assumeIsolated().whenComplete { _ in self.closed(server) }
            return server
        }
        opened.whenComplete { result in
            let left = self.opening[key, default: 1] - 1
            self.opening[key] = left > 0 ? left : nil
            if case .failure(ServerLoginError.refused(let response)) = result, response.sqlstate == "53300", self.lent[key, default: 0] > 0 {
                self.saturated.insert(key)
                self.scheduleProbe(key)
            } else if !self.saturated.contains(key) {
                // A login ended: the next client in line may log in.
                self.resumeNext(key)
            }
        }
        return opened.nonisolated()
    }

    // MARK: Waiting for a session to come back

    /// Whether a client of `key` without an idle session should queue rather than log in a new
    /// one: a session of `key` being reset is not promised to a client already in line, the
    /// tenant is out of slots while sessions of `key` are lent, or `maxOpening` logins of `key`
    /// are under way.
    func shouldWait(_ key: PoolKey) -> Bool {
        resetting[key, default: 0] > waiters[key]?.count ?? 0
            || (saturated.contains(key) && lent[key, default: 0] > 0) || opening[key, default: 0] >= Self.maxOpening
    }

    /// Whether the tenant refused the last new session of `key` for want of a slot.
    func isSaturated(_ key: PoolKey) -> Bool {
        saturated.contains(key)
    }

    /// Whether sessions of `key` are lent, so one will come back to this pool.
    func hasLent(_ key: PoolKey) -> Bool {
        lent[key, default: 0] > 0
    }

    /// Queues a client for the next session of `key` that comes back, or for its turn to log
    /// in a new one (`resume(nil)`): when a login of `key` ends, when it is the one that asks
    /// the tenant again, when none of `key` is lent any more, or at `deadline`.
    func wait(for key: PoolKey, until deadline: NIODeadline, resume: @escaping (PooledServer?) -> Bool) {
        let waiter = Waiter(resume: resume)
        waiters[key, default: []].append(waiter)
        waiter.timeout = loop.assumeIsolated().scheduleTask(deadline: deadline) { [weak self, weak waiter] in
            guard let self, let waiter, var queue = self.waiters[key], let index = queue.firstIndex(where: { $0 === waiter }) else { return }
            queue.remove(at: index)
            self.waiters[key] = queue.isEmpty ? nil : queue
            _ = waiter.resume(nil)
        }
        if saturated.contains(key) { scheduleProbe(key) }
    }

    /// Each `probeInterval` while clients of a saturated `key` wait, the first of them asks the
    /// tenant again.
    private func scheduleProbe(_ key: PoolKey) {
        guard probes[key] == nil, waiters[key] != nil else { return }
        probes[key] = loop.assumeIsolated().scheduleTask(in: Self.probeInterval) { [weak self] in
            guard let self else { return }
            self.probes[key] = nil
            while let waiter = self.nextWaiter(key), !waiter.resume(nil) {}
            if self.saturated.contains(key) { self.scheduleProbe(key) }
        }
    }

    private func lend(_ server: PooledServer) {
        server.isLent = true
        lent[server.key, default: 0] += 1
    }

    /// `server` is back (idle, or closed): no longer lent. With none of its key lent any more,
    /// nothing will come back to the clients waiting for one: they ask the tenant again.
    private func unlend(_ server: PooledServer) {
        guard server.isLent else { return }
        server.isLent = false
        let left = lent[server.key, default: 1] - 1
        lent[server.key] = left > 0 ? left : nil
        if left <= 0 {
            saturated.remove(server.key)
            while let waiter = nextWaiter(server.key) { resumeLater(waiter) }
        }
    }

    /// Gives `waiter` its turn to log in, on the next tick: not from inside the pool's own
    /// bookkeeping, which the client's checkout would run into.
    private func resumeLater(_ waiter: Waiter) {
        loop.assumeIsolated().execute { _ = waiter.resume(nil) }
    }

    /// Gives the first client waiting for `key` that is still there its turn to log in, after
    /// `delay` (or on the next tick).
    private func resumeNext(_ key: PoolKey, after delay: TimeAmount = .zero) {
        loop.assumeIsolated().scheduleTask(in: delay) {
            while let waiter = self.nextWaiter(key), !waiter.resume(nil) {}
        }
    }

    private func nextWaiter(_ key: PoolKey) -> Waiter? {
        guard var queue = waiters[key], let waiter = queue.popFirst() else { return nil }
        if queue.isEmpty {
            waiters[key] = nil
            probes.removeValue(forKey: key)?.cancel()
        } else {
            waiters[key] = queue
        }
        waiter.timeout?.cancel()
        return waiter
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

    private func connect(_ key: PoolKey, scram: ScramClientExchange?) -> EventLoopFuture<PooledServer> {
        let promise = loop.makePromise(of: ServerSession.self)
        let owner = owner
        return ClientBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ServerLoginHandler(startup: key.parameters, scram: scram, promise: promise))
                }
            }
            .connect(unixDomainSocketPath: key.socketPath)
            .flatMap { channel in
                owner.opened(key.tenant)
                channel.closeFuture.whenComplete { _ in owner.closed(key.tenant) }
                return promise.futureResult.flatMapErrorThrowing { error in
                    channel.close(promise: nil)
                    throw error
                }.flatMapThrowing { session in
                    let login = try channel.pipeline.syncOperations.handler(type: ServerLoginHandler.self)
                    channel.pipeline.syncOperations.removeHandler(login, promise: nil)
                    return PooledServer(channel: channel, key: key, session: session)
                }
            }
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
        resetting[server.key, default: 0] += 1
        promise.futureResult.assumeIsolated().whenComplete { result in
            let left = self.resetting[server.key, default: 1] - 1
            self.resetting[server.key] = left > 0 ? left : nil
            switch result {
            case .success(let changes):
                for change in changes {
                    if let index = server.parameters.firstIndex(where: { $0.name == change.name }) {
                        server.parameters[index] = change
                    } else {
                        server.parameters.append(change)
                    }
                }
                self.checkin(server)
            case .failure(let error):
                self.owner.logger.debug("server connection reset failed; closed", metadata: ["tenant": "\(server.key.tenant)", "error": "\(error)"])
                server.channel.close(promise: nil)
            }
        }
    }

    /// A server connection of the pool's closed: a lent one is no longer, and the tenant has a
    /// connection slot free again once its backend has exited, which the first client waiting
    /// for the key may take, or else one waiting for another key of the tenant (`trim` closes
    /// idle sessions for them).
    private func closed(_ server: PooledServer) {
        unlend(server)
        let key = waiters[server.key] != nil ? server.key : waiters.keys.first { $0.tenant == server.key.tenant }
        if let key { resumeNext(key, after: .milliseconds(10)) }
    }

    private func checkin(_ server: PooledServer) {
        guard !handOver(server) else { return }
        unlend(server)
        var list = idle[server.key] ?? []
        guard server.channel.isActive, list.count < owner.configuration.maxIdlePerKey else {
            server.channel.close(promise: nil)
            return
        }
        do {
            try server.channel.pipeline.syncOperations.addHandler(PoolIdleHandler())
        } catch {
            server.channel.close(promise: nil)
            return
        }
        server.idleSince = .now()
        owner.logger.trace("server connection back in the pool", metadata: ["tenant": "\(server.key.tenant)", "idle": "\(list.count + 1)"])
        list.append(server)
        idle[server.key] = list
        server.channel.read()
    }

    /// Lent out again: the idle watcher leaves the pipeline.
    func prepareForClient(_ server: PooledServer) throws {
        let watcher = try server.channel.pipeline.syncOperations.handler(type: PoolIdleHandler.self)
        server.channel.pipeline.syncOperations.removeHandler(watcher, promise: nil)
    }

    func closeIdle(of tenant: TenantName, except spare: PoolKey? = nil) {
        for (key, list) in idle where key.tenant == tenant && key != spare {
            idle[key] = nil
            for server in list { server.channel.close(promise: nil) }
        }
    }

    private func sweep() {
        let cutoff = NIODeadline.now() - owner.configuration.idleTimeout
        for (key, list) in idle {
            var fresh: [PooledServer] = []
            for server in list {
                if server.idleSince >= cutoff && server.channel.isActive {
                    fresh.append(server)
                } else {
                    server.channel.close(promise: nil)
                }
            }
            idle[key] = fresh.isEmpty ? nil : fresh
        }
        for (path, lookup) in lookups {
            if case .ready(_, let channel, let lastUsed) = lookup, lastUsed < cutoff {
                lookups[path] = nil
                channel.close(promise: nil)
            }
        }
    }

    // MARK: Verifier lookups

    /// The SCRAM verifier of `role` in the tenant at `socketPath`; nil when there is none, or the
    /// tenant cannot tell (then the client authenticates with the server directly).
    func lookupSecret(tenant: TenantName, socketPath: String, role: String) -> EventLoopFuture<String?> {
        let promise = loop.makePromise(of: String?.self)
        switch lookups[socketPath] {
        case .ready(let handler, let channel, _) where channel.isActive:
            lookups[socketPath] = .ready(handler, channel: channel, lastUsed: .now())
            handler.lookup(role, promise: promise)
        case .connecting(let waiting):
            lookups[socketPath] = .connecting(waiting: waiting + [(role, promise)])
        case .unavailable(let until) where until > .now():
            promise.succeed(nil)
        default:
            lookups[socketPath] = .connecting(waiting: [(role, promise)])
            connectLookup(tenant: tenant, socketPath: socketPath)
        }
        return promise.futureResult.assumeIsolated().flatMapErrorThrowing { error in
            if case AuthLookupHandler.LookupError.refused(let reason) = error {
                // A tenant without the lookup function (made by an older pgfleet), or one that
                // took the pgfleet role's right to it away: stop asking for a while.
                self.markUnavailable(socketPath, waiting: [], reason: reason)
            }
            return nil
        }.nonisolated()
    }

    /// Opens the lookup connection to a tenant if there is none, so that its first login does
    /// not wait for a backend to start (see `ProxyServer.prepare`).
    func prepareLookup(tenant: TenantName, socketPath: String) {
        guard lookups[socketPath] == nil else { return }
        lookups[socketPath] = .connecting(waiting: [])
        connectLookup(tenant: tenant, socketPath: socketPath)
    }

    private func connectLookup(tenant: TenantName, socketPath: String) {
        let key = PoolKey(tenant: tenant, socketPath: socketPath, parameters: [
            StartupParameter(name: "user", value: TenantRoles.daemon), StartupParameter(name: "database", value: "postgres"),
            StartupParameter(name: "application_name", value: "pgfleet-proxy"),
        ])
        connect(key, scram: nil).assumeIsolated().whenComplete { result in
            guard case .connecting(let waiting) = self.lookups[socketPath] else { return }
            switch result {
            case .success(let server):
                let handler = AuthLookupHandler()
                do {
                    try server.channel.pipeline.syncOperations.addHandler(handler)
                } catch {
                    server.channel.close(promise: nil)
                    self.lookups[socketPath] = nil
                    for (_, promise) in waiting { promise.succeed(nil) }
                    return
                }
                self.lookups[socketPath] = .ready(handler, channel: server.channel, lastUsed: .now())
                server.channel.closeFuture.assumeIsolated().whenComplete { _ in
                    if case .ready(_, let channel, _) = self.lookups[socketPath], channel === server.channel {
                        self.lookups[socketPath] = nil
                    }
                }
                for (role, promise) in waiting { handler.lookup(role, promise: promise) }
            case .failure(ServerLoginError.refused(let error)):
                // Peer authentication refused: a proxy not running as the daemon's OS user.
                self.markUnavailable(socketPath, waiting: waiting, reason: error.message ?? "refused")
            case .failure:
                // Not running (suspended, starting): ask again next time.
                self.lookups[socketPath] = nil
                for (_, promise) in waiting { promise.succeed(nil) }
            }
        }
    }

    private func markUnavailable(_ socketPath: String, waiting: [(role: String, promise: EventLoopPromise<String?>)], reason: String) {
        if case .ready(_, let channel, _) = lookups[socketPath] { channel.close(promise: nil) }
        lookups[socketPath] = .unavailable(until: .now() + .seconds(30))
        owner.logger.info("verifier lookup unavailable for 30 s; clients authenticate with the tenant directly", metadata: [
            "socket": "\(socketPath)", "reason": "\(reason)",
        ])
        for (_, promise) in waiting { promise.succeed(nil) }
    }
}

/// In the pipeline of an idle pooled connection: anything the server sends now (a FATAL at
/// shutdown, a ParameterStatus after a reload) ends the connection's life in the pool.
final class PoolIdleHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// Resets a session its client has left (`DISCARD ALL`: settings, prepared statements, temporary
/// tables, advisory locks, LISTEN, role) and succeeds with the ParameterStatus changes it caused
/// when the server is idle again; fails on anything unexpected.
final class ResetHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let promise: EventLoopPromise<[ParameterStatus]>
    private var buffer: ByteBuffer?
    private var changes: [ParameterStatus] = []
    private var completed = false
    private var finished = false
    private var timer: Scheduled<Void>?

    init(promise: EventLoopPromise<[ParameterStatus]>) {
        self.promise = promise
    }

    func handlerAdded(context: ChannelHandlerContext) {
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(5)) {
            self.finish(context: context, success: false)
        }
        var query = context.channel.allocator.buffer(capacity: 32)
        query.writeMessage(type: FrontendMessageType.query) { $0.writeCString("DISCARD ALL") }
        context.writeAndFlush(wrapOutboundOut(query), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        guard !finished else { return }
        if buffer == nil { buffer = incoming } else { buffer!.writeBuffer(&incoming) }
        do {
            while !finished, var bytes = buffer, let message = try MessageFramer.next(&bytes, maxLength: 1 << 16) {
                buffer = bytes
                switch message.type {
                case BackendMessageType.commandComplete:
                    completed = true
                case BackendMessageType.parameterStatus:
                    changes.append(try ParameterStatus(body: message.body))
                case BackendMessageType.noticeResponse, BackendMessageType.notificationResponse:
                    break
                case BackendMessageType.readyForQuery:
                    let idle = (try? ReadyForQuery.status(body: message.body)) == ReadyForQuery.idle
                    finish(context: context, success: completed && idle && (buffer?.readableBytes ?? 0) == 0)
                default:
                    finish(context: context, success: false)
                }
            }
        } catch {
            finish(context: context, success: false)
        }
    }

    private func finish(context: ChannelHandlerContext, success: Bool) {
        guard !finished else { return }
        finished = true
        timer?.cancel()
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        if success {
            promise.succeed(changes)
        } else {
            promise.fail(ServerLoginError.failed("reset failed"))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(context: context, success: false)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
