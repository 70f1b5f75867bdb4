import FleetCore
import Foundation

extension Fleet: RouteProvider {
    public nonisolated func cachedRoute(for tenant: TenantName) -> TenantRoute? {
        running.socketPath(of: tenant).map { .available(socketPath: $0) }
    }

    /// Where the proxy should send a client of `tenant`, from the supervisors' live state.
    public func route(for tenant: TenantName) async -> TenantRoute {
        if operations.hides(tenant) { return .unavailable(.starting) }
        guard let supervisor = supervisors[tenant] else {
            // Known to the catalog but never supervised here (e.g. its bundle is missing).
            return (try? catalog.tenant(named: tenant.rawValue)) == nil ? .unknown : .stopped
        }
        let snapshot = await supervisor.snapshot
        switch snapshot.state {
        case .running: return .available(socketPath: supervisor.socketPath)
        case .stopped: return .stopped
        case .failed: return .failed
        case .suspended: return .suspended
        case .starting, .stopping, .backoff: return .unavailable(snapshot.state)
        }
    }

    public func wake(_ tenant: TenantName) async -> TenantRoute {
        // Being created, dropped or given a new password (its postmaster must not start now).
        // Not queued: a client does not wait behind an operator's operations (the supervisor
        // orders a wake with a start or stop itself), but never wakes a tenant one hides.
        if operations.hides(tenant) { return .unavailable(.starting) }
        guard let supervisor = supervisors[tenant] else { return await route(for: tenant) }
        let state = await supervisor.snapshot.state
        // Only a suspended tenant is woken (or one already starting, to wait for): a client must
        // never start a tenant its operator stopped.
        guard state == .suspended || state == .starting else { return await route(for: tenant) }
        if state == .suspended {
            guard wakeLimiter.allow(tenant, now: monotonicNow) else {
                logger.warning("wake refused by the rate limit", metadata: ["tenant": "\(tenant)"])
                return .wakeRefused
            }
            logger.info("waking suspended tenant", metadata: ["tenant": "\(tenant)"])
        }
        let snapshot = await supervisor.wake()
        if snapshot.state == .running {
            idle.markBusy(tenant, now: monotonicNow)
            try? catalog.setSuspended(false, forTenant: tenant.rawValue)
        }
        return await route(for: tenant)
    }
}
