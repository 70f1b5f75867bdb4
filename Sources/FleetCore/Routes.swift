#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Where a tenant's postmaster can be reached right now, as the proxy needs to know it.
public enum TenantRoute: Sendable, Equatable {
    /// The postmaster's unix socket, e.g. `…/socket/.s.PGSQL.5432`.
    case available(socketPath: String)
    case unknown
    case stopped
    /// Transiently not ready (starting, restarting after a crash, stopping).
    case unavailable(TenantState)
    case failed
    /// Suspended for idleness: ask `wake(_:)` for it.
    case suspended
    /// Waking it now would exceed the wake rate limits.
    case wakeRefused
}

/// The proxy's one view of the fleet. `pgfleet serve` answers from its own supervisors; a
/// standalone proxy asks a daemon's API; later, a catalog shared by several hosts.
public protocol RouteProvider: Sendable {
    func route(for tenant: TenantName) async -> TenantRoute
    /// Starts a suspended tenant and returns its route once it is ready, or why it is not.
    /// Concurrent calls for one tenant share one start.
    func wake(_ tenant: TenantName) async -> TenantRoute
    /// A route known without waiting, for the common case of a running tenant, so a new
    /// connection costs no task or actor hop. Nil: ask `route(for:)`.
    func cachedRoute(for tenant: TenantName) -> TenantRoute?
    /// The proxy could not reach the tenant where the route said: whatever is cached for it is
    /// wrong, and the next connection asks `route(for:)` again.
    func forget(_ tenant: TenantName)
}

extension RouteProvider {
    public func cachedRoute(for tenant: TenantName) -> TenantRoute? { nil }
    public func forget(_ tenant: TenantName) {}
}

/// Running tenants' sockets as a route provider that must ask someone else (a daemon's API, an
/// HTTP round trip and a JSON document) last saw them, for a short while. A hit also needs the
/// socket file to be there: PostgreSQL removes it when it shuts down, so a tenant stopped or
/// suspended since is asked about again rather than reached through a dead socket.
public final class RouteCache: Sendable {
    private let ttl: Duration
    private let now: @Sendable () -> ContinuousClock.Instant
    private let socketExists: @Sendable (String) -> Bool
    private let entries = Mutex<[TenantName: (socketPath: String, until: ContinuousClock.Instant)]>([:])

    public init(
        ttl: Duration, now: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now },
        socketExists: @escaping @Sendable (String) -> Bool = RouteCache.isSocket
    ) {
        self.ttl = ttl
        self.now = now
        self.socketExists = socketExists
    }

    /// The cached route, if it is fresh and its socket is there.
    public func route(for tenant: TenantName) -> TenantRoute? {
        let now = now()
        let socketPath = entries.withLock { current -> String? in
            guard let entry = current[tenant] else { return nil }
            guard entry.until > now else {
                current[tenant] = nil
                return nil
            }
            return entry.socketPath
        }
        guard let socketPath else { return nil }
        guard socketExists(socketPath) else {
            forget(tenant)
            return nil
        }
        return .available(socketPath: socketPath)
    }

    /// Keeps `route` if it is an available one; any other answer removes what was kept.
    public func store(_ route: TenantRoute, for tenant: TenantName) {
        let until = now() + ttl
        entries.withLock { current in
            if case .available(let socketPath) = route { current[tenant] = (socketPath, until) } else { current[tenant] = nil }
        }
    }

    public func forget(_ tenant: TenantName) {
        entries.withLock { $0[tenant] = nil }
    }

    public var count: Int { entries.withLock { $0.count } }

    /// Whether `path` is a unix socket (one stat, no connect).
    @Sendable public static func isSocket(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFSOCK
    }
}

/// Socket paths of the tenants that are running right now, kept by their supervisors as their
/// state changes and read by the proxy on its event loops.
public final class RunningTenants: Sendable {
    private let sockets = Mutex<[TenantName: String]>([:])

    public init() {}

    public func set(_ tenant: TenantName, socketPath: String?) {
        sockets.withLock { $0[tenant] = socketPath }
    }

    public func socketPath(of tenant: TenantName) -> String? {
        sockets.withLock { $0[tenant] }
    }
}
