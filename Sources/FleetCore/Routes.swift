/// Where a tenant's postmaster can be reached right now, as the proxy needs to know it.
public enum TenantRoute: Sendable, Equatable {
    /// The postmaster's unix socket, e.g. `…/socket/.s.PGSQL.5432`.
    case available(socketPath: String)
    case unknown
    case stopped
    /// Transiently not ready (starting, restarting after a crash, stopping).
    case unavailable(TenantState)
    case failed
}

/// The proxy's one view of the fleet. `pgfleet serve` answers from its own supervisors; a
/// standalone proxy asks a daemon's API; later, a catalog shared by several hosts.
public protocol RouteProvider: Sendable {
    func route(for tenant: TenantName) async -> TenantRoute
}
