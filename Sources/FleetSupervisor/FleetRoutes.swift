import FleetCore

extension Fleet: RouteProvider {
    /// Where the proxy should send a client of `tenant`, from the supervisors' live state.
    public func route(for tenant: TenantName) async -> TenantRoute {
        if busy.contains(tenant) { return .unavailable(.starting) }
        guard let supervisor = supervisors[tenant] else {
            // Known to the catalog but never supervised here (e.g. its bundle is missing).
            return (try? catalog.tenant(named: tenant.rawValue)) == nil ? .unknown : .stopped
        }
        let snapshot = await supervisor.snapshot
        switch snapshot.state {
        case .running: return .available(socketPath: supervisor.socketPath)
        case .stopped: return .stopped
        case .failed: return .failed
        case .starting, .stopping, .backoff: return .unavailable(snapshot.state)
        }
    }
}
