import FleetBundles
import FleetCatalog
import FleetCore
import FleetSystem
import Foundation
import Logging

// Idle suspension: tenants with no client for their suspend-after period are suspended.
extension Fleet {
    /// Lets idle suspension see the proxy's connection counts: its clients, and the server
    /// sessions its pools hold (which are on the tenant's socket but are nobody's client).
    public func setProxyConnections(
        clients: @escaping @Sendable (TenantName) -> Int, serverSessions: @escaping @Sendable (TenantName) -> Int,
        prepare: (@Sendable (TenantName, String) -> Void)? = nil
    ) {
        proxyConnections = clients
        proxyServerSessions = serverSessions
        proxyPrepare = prepare
    }

    /// Suspends every running tenant that has had no client for its suspend-after period: none
    /// through the proxy, and none on its socket directly. It runs once a second, so it looks at
    /// the running tenants only (from the board, and their catalog rows by name), not at every
    /// registered one.
    public func suspendIdleTenants() async {
        guard let proxyConnections else { return }
        let running = board.tenants { $0.state == .running }.filter { supervisors[$0] != nil && !operations.hides($0) }
        // Tenants that stopped running start afresh when they run again.
        idle.keepOnly(Set(running))
        guard !running.isEmpty else { return }
        let records = (try? catalog.tenants(named: running.map(\.rawValue))) ?? []
        for record in records {
            guard let name = try? TenantName(validating: record.name) else { continue }
            // A tenant an operation has is skipped, not waited for: the next round looks again.
            await operations.runIfFree(name, .suspend) { await suspendIfIdle(record, name: name, proxyConnections: proxyConnections) }
        }
    }

    private func suspendIfIdle(_ record: TenantRecord, name: TenantName, proxyConnections: @Sendable (TenantName) -> Int) async {
        // Looked up in its turn: an operation that finished meanwhile may have dropped it.
        guard let supervisor = supervisors[name] else { return }
        let after = record.suspendAfter ?? options.defaultSuspendAfter
        let now = monotonicNow
        guard idle.observe(name, connections: proxyConnections(name), isRunning: board.snapshot(of: name)?.state == .running,
                           suspendAfter: .seconds(after), now: now) else { return }
        // Sessions that bypass the proxy count as clients too; the proxy's own pooled ones do not.
        let sessions = await probe.clientSessions(socketDirectory: record.socketDirectory)
        let direct = sessions.map { $0 - (proxyServerSessions?(name) ?? 0) }
        if direct.map({ $0 > 0 }) ?? true {
            idle.markBusy(name, now: now)
            return
        }
        logger.info("suspending idle tenant", metadata: ["tenant": "\(name)", "idle": "\(after)s"])
        if await supervisor.suspend().state == .suspended {
            try? catalog.setSuspended(true, forTenant: name.rawValue)
        }
        idle.forget(name)
    }
}
