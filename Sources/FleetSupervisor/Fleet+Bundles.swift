import FleetBundles
import FleetCatalog
import FleetCore
import FleetSystem
import Foundation
import Logging

// The daemon's status and its PostgreSQL bundles.
extension Fleet {
    public func status() async throws -> DaemonStatus {
        let tenants = try await listTenants()
        var byState: [String: Int] = [:]
        for tenant in tenants { byState[tenant.state.rawValue, default: 0] += 1 }
        var status = DaemonStatus(
            version: PGFleetVersion.current, root: options.layout.root, pid: getpid(), isolated: options.isolated,
            startedAt: startedAt, tenants: tenants.count, tenantsByState: byState, bundles: try catalog.bundles().count,
            proxy: options.proxy, poolSize: options.poolSize, pool: await pool.status()
        )
        if await diskPool.size > 0 { status.diskPool = await diskPool.status() }
        return status
    }

    public func listBundles() async throws -> [BundleInfo] {
        try catalog.bundles().map { try info(for: $0) }
    }

    public func importBundle(_ request: ImportBundleRequest, progress: @escaping ProgressReporter) async throws -> BundleInfo {
        let path = request.path
        guard path.hasPrefix("/") else {
            throw FleetError.invalidRequest("bundle path must be absolute: \(path.debugClipped)")
        }
        let bundle = try await bundles.importBundle(from: path, progress: progress)
        loadedBundles[bundle.manifest.id] = nil
        do {
            try catalog.insertBundle(record(for: bundle, makeDefault: request.makeDefault ?? false))
        } catch {
            try? bundles.remove(id: bundle.manifest.id)
            throw error
        }
        guard let stored = try catalog.bundle(id: bundle.manifest.id) else { throw FleetError.bundleNotFound(bundle.manifest.id) }
        // Proved at once, before a tenant or the ready pool can use it; without root there is no sandbox.
        if geteuid() == 0 {
            do { return try await verifyBundle(id: stored.id, progress: progress) } catch {
                await progress(.progress("not verified: \(error); retry with `pgfleet bundle verify \(stored.id)`"))
            }
        } else {
            await progress(.progress("not verified: the daemon does not run as root, so there is no sandbox to verify the bundle in"))
        }
        pool.wake()
        diskPool.wake()
        return try info(for: stored)
    }

    func record(for bundle: FleetBundles.Bundle, makeDefault: Bool) -> BundleRecord {
        let manifest = bundle.manifest
        return BundleRecord(
            id: manifest.id, major: manifest.major, version: manifest.version, sourceKind: manifest.source.kind.rawValue,
            source: manifest.source.origin, path: bundle.directory, isDefault: makeDefault, importedAt: manifest.importedAt,
            glibcVersion: manifest.host.glibcVersion, icuVersion: manifest.host.icuVersion, fileCount: manifest.files.count
        )
    }

    func info(for record: BundleRecord) throws -> BundleInfo {
        BundleInfo(
            id: record.id, major: record.major, version: record.version, sourceKind: record.sourceKind, source: record.source,
            path: record.path, isDefault: record.isDefault, importedAt: record.importedAt, glibcVersion: record.glibcVersion,
            icuVersion: record.icuVersion, fileCount: record.fileCount, tenants: try catalog.tenantCount(bundleID: record.id),
            verification: (try? loadBundle(id: record.id)).flatMap { BundleVerification.info($0.manifest) }
        )
    }
}
