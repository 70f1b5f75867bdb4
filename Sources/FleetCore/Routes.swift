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
}

extension RouteProvider {
    public func cachedRoute(for tenant: TenantName) -> TenantRoute? { nil }
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
