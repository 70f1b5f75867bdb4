import FleetBundles
import FleetCatalog
import FleetCore
import FleetSystem
import Foundation
import Logging

// `pgfleet tenant update`: another minor of the same major, through the collation guard, with
// one restart. With --reindex the affected indexes are rebuilt in single-user mode on the new
// bundle while the tenant is down (the daemon's role is no superuser, and the tenant's superuser's
// password is the tenant's), so the one start serves rebuilt indexes; pg_amcheck then verifies
// them over the socket as the daemon's role, which the single-user session granted amcheck's
// functions to.
extension Fleet {
    public func updateTenant(_ name: TenantName, _ request: UpdateTenantRequest, progress: @escaping ProgressReporter) async throws -> TenantInfo {
        try await operations.run(name, .restart) {
            try await update(name, request, progress: progress)
        }
    }

    private func update(_ name: TenantName, _ request: UpdateTenantRequest, progress: @escaping ProgressReporter) async throws -> TenantInfo {
        let record = try existing(name)
        try notHalfCreated(name, "updated")
        guard let target = try catalog.bundle(id: request.bundle) else { throw FleetError.bundleNotFound(request.bundle) }
        guard let current = try catalog.bundle(id: record.bundleID) else { throw FleetError.bundleNotFound(record.bundleID) }
        guard target.major == current.major else {
            throw FleetError.invalidRequest(
                "bundle \(target.id) is PostgreSQL \(target.major) and tenant \(name) runs \(current.major): `tenant update` moves between minors of one major; "
                    + "moving to another major needs `pgfleet tenant upgrade` (not available yet). Pick a \(current.major).x bundle (`pgfleet bundle list`)"
            )
        }
        guard target.id != current.id || request.reindex else {
            throw FleetError.invalidRequest("tenant \(name) already runs on bundle \(target.id); add --reindex to rebuild its collation-dependent indexes there")
        }
        let supervisor = try supervisor(for: record, name: name)
        let wasRunning = await supervisor.snapshot.state == .running
        // A tenant meant to run (even one whose start the guard refused) runs after its update.
        let shouldRun = wasRunning || record.desiredState == .running

        // The guard, before anything is touched.
        await progress(.progress("checking collations of tenant \(name) against bundle \(target.id)"))
        let recorded = try await currentFingerprint(record: record, bundle: current, running: wasRunning)
        let goal = Self.collationTarget(target)
        let verdict = CollationGuard.decide(recorded: recorded, target: goal, reindex: request.reindex)
        if let refusal = CollationGuard.refusal(verdict, tenant: name.rawValue, target: goal) {
            throw FleetError.invalidRequest(refusal)
        }
        var toRebuild: [CollationIndex] = []
        if case .reindex(let changes, let indexes) = verdict {
            toRebuild = indexes
            await progress(.progress("\(changes.joined(separator: ", ")): \(indexes.count) index\(indexes.count == 1 ? "" : "es") to rebuild"))
        } else if request.reindex {
            // Asked for on the same libraries: rebuild every collation-dependent index anyway.
            toRebuild = recorded.indexes
        }

        await progress(.progress("stopping tenant \(name)"))
        let stopped = await supervisor.stop()
        guard stopped.state == .stopped else {
            throw FleetError.failed("tenant \(name) did not stop (\(stopped.state.rawValue)); nothing was changed. See `pgfleet tenant logs \(name)` and try again")
        }
        await progress(.progress("switching tenant \(name) from bundle \(current.id) to \(target.id)"))
        let moved = try switchBundle(of: record, to: target.id)

        do {
            if request.reindex {
                let bundle = try loadBundle(id: target.id)
                try await rebuild(toRebuild, recorded: recorded, record: moved, name: name, bundle: bundle, progress: progress)
                // Rebuilt with the target's libraries: that is what they now depend on.
                var rebuilt = recorded
                rebuilt.bundleID = target.id
                rebuilt.icuVersion = goal.icuVersion
                rebuilt.glibcVersion = goal.glibcVersion
                rebuilt.collectedAt = Date()
                try catalog.setCollationFingerprint(rebuilt, forTenant: name.rawValue)
            }
            await progress(.progress("starting tenant \(name) on bundle \(target.id)"))
            try catalog.setDesiredState(.running, forTenant: name.rawValue)
            await refreshFileLimit(moved)
            let started = await (try self.supervisor(for: moved, name: name)).start()
            guard started.state == .running else {
                throw FleetError.failed("tenant \(name) did not start on bundle \(target.id): \(started.failureReason ?? started.state.rawValue)")
            }
        } catch {
            await progress(.progress("going back to bundle \(current.id)"))
            await rollBack(record: record, name: name, to: current, restart: shouldRun)
            throw FleetError.failed("\((error as? FleetError)?.description ?? "\(error)"); tenant \(name) is back on bundle \(current.id)")
        }

        if !toRebuild.isEmpty {
            await progress(.progress("verifying \(toRebuild.count) rebuilt index\(toRebuild.count == 1 ? "" : "es") with pg_amcheck --heapallindexed"))
            try await verify(toRebuild, record: moved, bundle: try loadBundle(id: target.id))
        }
        await progress(.progress("recording the collation fingerprint of tenant \(name)"))
        let fingerprint = try await collectFingerprint(record: moved, bundle: target)
        try catalog.setCollationFingerprint(fingerprint, forTenant: name.rawValue)
        if !shouldRun {
            await progress(.progress("stopping tenant \(name) again: it was stopped"))
            try catalog.setDesiredState(.stopped, forTenant: name.rawValue)
            await (try self.supervisor(for: moved, name: name)).stop()
        }
        logger.info("tenant updated", metadata: ["tenant": "\(name)", "from": "\(current.id)", "to": "\(target.id)", "reindexed": "\(toRebuild.count)"])
        return try await tenantInfo(name)
    }

    /// The fingerprint the guard judges: fresh indexes when the tenant runs (the list may have
    /// grown since), with the library versions of the recorded one (what they were built with).
    private func currentFingerprint(record: TenantRecord, bundle: BundleRecord, running: Bool) async throws -> CollationFingerprint {
        let recorded = try catalog.collationFingerprint(forTenant: record.name)
        guard running else {
            guard let recorded else {
                throw FleetError.invalidRequest(
                    "pgfleet has not yet recorded which collations tenant \(record.name) uses; start it once (`pgfleet tenant start \(record.name)`) and update it again"
                )
            }
            return recorded
        }
        var fresh = try await collectFingerprint(record: record, bundle: bundle)
        if let recorded {
            fresh.icuVersion = recorded.icuVersion
            fresh.glibcVersion = recorded.glibcVersion
        }
        return fresh
    }

    /// The tenant's row on another bundle, with a supervisor for it (the old one is gone).
    private func switchBundle(of record: TenantRecord, to bundleID: String) throws -> TenantRecord {
        var moved = record
        moved.bundleID = bundleID
        try catalog.updateTenant(moved)
        if let name = try? TenantName(validating: record.name) {
            supervisors[name] = nil
        }
        return moved
    }

    private func rollBack(record: TenantRecord, name: TenantName, to bundle: BundleRecord, restart: Bool) async {
        if let failed = supervisors[name] { await failed.stop() }
        do {
            let back = try switchBundle(of: record, to: bundle.id)
            try catalog.setDesiredState(restart ? .running : .stopped, forTenant: name.rawValue)
            if restart {
                await refreshFileLimit(back)
                let snapshot = await (try supervisor(for: back, name: name)).start()
                if snapshot.state != .running {
                    logger.error("tenant did not start again on its old bundle", metadata: ["tenant": "\(name)", "bundle": "\(bundle.id)"])
                }
            }
        } catch {
            logger.error("could not go back to the old bundle", metadata: ["tenant": "\(name)", "error": "\(error)"])
        }
    }

    /// In single-user mode on the stopped cluster, one session per database: REINDEX exactly
    /// `indexes`, refresh the recorded collation versions, and make amcheck (CREATE EXTENSION)
    /// available to the daemon's role for the verification.
    private func rebuild(
        _ indexes: [CollationIndex], recorded: CollationFingerprint, record: TenantRecord, name: TenantName, bundle: FleetBundles.Bundle,
        progress: @escaping ProgressReporter
    ) async throws {
        let owner = options.isolated ? UserIdentity(name: record.osUser, uid: uid_t(record.uid), gid: gid_t(record.gid)) : nil
        let byDatabase = Dictionary(grouping: indexes, by: \.database)
        for database in recorded.databases where byDatabase[database.name] != nil || database.collationVersion != nil {
            var statements: [String] = []
            for index in byDatabase[database.name] ?? [] {
                statements.append("REINDEX INDEX \(ClusterConfig.identifier(index.schema)).\(ClusterConfig.identifier(index.name))")
            }
            if bundle.manifest.major >= 15 && database.provider != .builtin {
                statements.append("ALTER DATABASE \(ClusterConfig.identifier(database.name)) REFRESH COLLATION VERSION")
            }
            for collation in database.collations where collation.provider != .builtin && collation.version != nil {
                statements.append("ALTER COLLATION \(ClusterConfig.identifier(collation.schema)).\(ClusterConfig.identifier(collation.name)) REFRESH VERSION")
            }
            if byDatabase[database.name] != nil {
                statements += Self.amcheckGrants
            }
            await progress(.progress("rebuilding \(byDatabase[database.name]?.count ?? 0) index(es) in database \(database.name)"))
            try await NewCluster.singleUser(
                statements.map { $0 + ";\n" }.joined(), doing: "rebuilding indexes of database \(database.name)", bundle: bundle,
                dataDirectory: record.dataDirectory, owner: owner, sandbox: singleUserSandbox(for: record, name: name, bundle: bundle, user: owner),
                database: database.name
            )
        }
    }

    /// amcheck in the database, its index check executable by the daemon's role (pg_amcheck
    /// calls bt_index_check; its other functions stay the superuser's).
    static let amcheckGrants = [
        "CREATE EXTENSION IF NOT EXISTS amcheck",
        "DO $$ DECLARE f regprocedure; BEGIN FOR f IN SELECT p.oid FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass "
            + "JOIN pg_extension e ON e.oid = d.refobjid AND d.refclassid = 'pg_extension'::regclass WHERE e.extname = 'amcheck' AND p.proname = 'bt_index_check' "
            + "LOOP EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO \(HealthProbe.role)', f); END LOOP; END $$",
    ]

    /// The bundle's pg_amcheck over the tenant's socket as the daemon's role, on exactly `indexes`.
    private func verify(_ indexes: [CollationIndex], record: TenantRecord, bundle: FleetBundles.Bundle) async throws {
        var arguments = [
            "--host=\(record.socketDirectory)", "--port=\(FleetLayout.tenantPort)", "--username=\(HealthProbe.role)", "--no-password",
            "--heapallindexed", "--no-dependent-toast", "--maintenance-db=postgres",
        ]
        for index in indexes {
            arguments.append("--index=\(index.database).\(index.schema).\(index.name)")
        }
        let result = try await Command.run(bundle.binary("pg_amcheck"), arguments, environment: Self.environment(for: bundle))
        guard result.succeeded else {
            let output = (result.stdout + "\n" + result.stderr).trimmingCharacters(in: .whitespacesAndNewlines)
            throw FleetError.failed(
                "pg_amcheck found problems in the rebuilt indexes of tenant \(record.name): \(String(output.prefix(2000))); "
                    + "the tenant runs on its new bundle; see `pgfleet tenant logs \(record.name)`"
            )
        }
    }
}
