import FleetCore
import Logging
import Metrics
import NIOCore
import Synchronization

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
    /// Counts the pools' server sockets.
    let descriptors: DescriptorGauge

    init(configuration: PoolConfiguration, logger: Logger, descriptors: DescriptorGauge = .unlimited()) {
        self.configuration = configuration
        self.logger = logger
        self.descriptors = descriptors
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

    /// Closes every idle server connection: the daemon is short of descriptors, and a pooled
    /// connection nobody uses must not keep a client out.
    func trimIdle() {
        for tenant in counts.withLock({ Array($0.keys) }) { trim(tenant) }
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
