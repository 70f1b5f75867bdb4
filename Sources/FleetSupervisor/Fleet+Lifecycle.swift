import FleetBundles
import FleetCatalog
import FleetCore
import FleetSystem
import Foundation
import Logging

// Tenants listed, described, started, stopped, suspended and restarted.
extension Fleet {
    public func listTenants() async throws -> [TenantInfo] {
        let bundleRecords = Dictionary(uniqueKeysWithValues: try catalog.bundles().map { ($0.id, $0) })
        // One look at the board for the whole list, not a lock per tenant.
        let snapshots = board.current()
        let fingerprints = (try? catalog.collationFingerprints()) ?? [:]
        return try catalog.tenants().map {
            info(for: $0, bundle: bundleRecords[$0.bundleID], snapshot: { snapshots[$0] }, fingerprint: fingerprints[$0.name])
        }
    }

    public func tenantInfo(_ name: TenantName) async throws -> TenantInfo {
        let record = try existing(name)
        return info(
            for: record, bundle: try catalog.bundle(id: record.bundleID), snapshot: board.snapshot(of:),
            fingerprint: try? catalog.collationFingerprint(forTenant: record.name)
        )
    }

    private func info(
        for record: TenantRecord, bundle: BundleRecord?, snapshot: (TenantName) -> SupervisorSnapshot?, fingerprint: CollationFingerprint?
    ) -> TenantInfo {
        let name = try? TenantName(validating: record.name)
        let snapshot = name.flatMap { supervisors[$0] == nil ? nil : snapshot($0) }
        let state: TenantState = name.map { operations.hides($0) } == true ? .starting : snapshot?.state ?? .stopped
        var info = TenantInfo(
            name: record.name, version: bundle?.version ?? "?", major: bundle?.major ?? 0, bundle: record.bundleID,
            state: state, desiredState: record.desiredState, pid: snapshot?.pid, superuser: record.superuser,
            osUser: record.osUser, socketDirectory: record.socketDirectory, port: record.port,
            dataDirectory: record.dataDirectory, logFile: record.logFile, createdAt: record.createdAt,
            runningSince: snapshot?.runningSince, restarts: snapshot?.restarts ?? 0,
            failureReason: snapshot?.failureReason ?? record.failureReason
        )
        info.proxy = options.proxy
        info.suspendAfter = record.suspendAfter ?? options.defaultSuspendAfter
        info.limits = effectiveLimits(record)
        info.network = record.sandboxNetwork
        info.sandboxed = snapshot?.sandboxed
        if let fingerprint { info.collation = CollationSummary(fingerprint) }
        if let pid = snapshot?.pid { info.usage = usage(of: record, postmaster: pid, sandboxed: snapshot?.sandboxed == true) }
        return info
    }

    func existing(_ name: TenantName) throws -> TenantRecord {
        guard let record = try catalog.tenant(named: name.rawValue) else { throw FleetError.tenantNotFound(name.rawValue) }
        return record
    }

    // Each operation looks the tenant up inside its turn: one queued behind a drop finds it gone.

    public func startTenant(_ name: TenantName) async throws -> TenantInfo {
        try await operations.run(name, .start) {
            let record = try existing(name)
            try notHalfCreated(name)
            try catalog.setDesiredState(.running, forTenant: name.rawValue)
            await refreshFileLimit(record)
            let snapshot = await (try supervisor(for: record, name: name)).start()
            try catalog.setSuspended(false, forTenant: name.rawValue)
            if snapshot.state == .failed {
                throw FleetError.failed("tenant \(name) failed to start: \(snapshot.failureReason ?? "unknown reason")\nSee `pgfleet tenant logs \(name)`.")
            }
            await collectFingerprintIfNeeded(name)
            return try await tenantInfo(name)
        }
    }

    public func stopTenant(_ name: TenantName) async throws -> TenantInfo {
        await cutShortStart(name)
        return try await operations.run(name, .stop) {
            let record = try existing(name)
            try catalog.setDesiredState(.stopped, forTenant: name.rawValue)
            await (try supervisor(for: record, name: name)).stop()
            try catalog.setSuspended(false, forTenant: name.rawValue)
            return try await tenantInfo(name)
        }
    }

    /// A stop (or drop) does not wait behind a start still waiting for a postmaster that may never
    /// answer (a minute per try, five tries): the supervisor is told to stop now, so that the start
    /// returns and hands the tenant on, as a stop cut a start short before there was a queue.
    /// The stop itself then runs in its turn.
    func cutShortStart(_ name: TenantName) async {
        guard let kind = operations.running(name), kind == .start || kind == .restart, let supervisor = supervisors[name] else { return }
        logger.info("cutting a start short for a stop", metadata: ["tenant": "\(name)"])
        await supervisor.requestStop()
    }

    /// Shuts a running tenant down cleanly now; the next connection through the proxy wakes it.
    public func suspendTenant(_ name: TenantName) async throws -> TenantInfo {
        try await operations.run(name, .suspend) {
            let record = try existing(name)
            let supervisor = try supervisor(for: record, name: name)
            let before = await supervisor.snapshot.state
            guard before == .running || before == .suspended else {
                throw FleetError.conflict("tenant \(name) is \(before.rawValue); only a running tenant can be suspended")
            }
            let snapshot = await supervisor.suspend()
            if snapshot.state == .suspended {
                try catalog.setSuspended(true, forTenant: name.rawValue)
                logger.info("tenant suspended", metadata: ["tenant": "\(name)"])
            }
            return try await tenantInfo(name)
        }
    }

    public func restartTenant(_ name: TenantName) async throws -> TenantInfo {
        try await operations.run(name, .restart) {
            let record = try existing(name)
            try notHalfCreated(name)
            try catalog.setDesiredState(.running, forTenant: name.rawValue)
            await refreshFileLimit(record)
            let snapshot = await (try supervisor(for: record, name: name)).restart()
            if snapshot.state == .failed {
                throw FleetError.failed("tenant \(name) failed to restart: \(snapshot.failureReason ?? "unknown reason")")
            }
            await collectFingerprintIfNeeded(name)
            return try await tenantInfo(name)
        }
    }
}
