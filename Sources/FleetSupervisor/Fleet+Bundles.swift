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
        // Imported on purpose: the daemon registers it again at its next start if it is a
        // system installation that was removed before.
        try? forgetRemovedSystemBundle(source: path)
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

    /// `pgfleet bundle default ID [--fleet]`.
    public func setDefaultBundle(_ id: String, _ request: BundleDefaultRequest) async throws -> BundleInfo {
        guard BundleID.problem(with: id) == nil else { throw FleetError.bundleNotFound(id.debugClipped) }
        try catalog.setDefault(id: id, fleet: request.fleet ?? false)
        guard let stored = try catalog.bundle(id: id) else { throw FleetError.bundleNotFound(id) }
        logger.info("default bundle set", metadata: ["bundle": "\(id)", "major": "\(stored.major)", "fleet": "\(stored.isDefault)"])
        return try info(for: stored)
    }

    /// `pgfleet bundle remove ID`: refused while a tenant uses it (the catalog checks that in the
    /// transaction that deletes the row, so no create can slip in between); then its files go,
    /// and the ready pool drops the clusters it had made from it.
    public func removeBundle(_ id: String) async throws -> BundleInfo {
        guard BundleID.problem(with: id) == nil, let stored = try catalog.bundle(id: id) else { throw FleetError.bundleNotFound(id.debugClipped) }
        let before = try info(for: stored)
        do {
            try catalog.deleteBundle(id: id)
        } catch FleetError.conflict(let message) {
            throw FleetError.conflict("\(message); drop them or move them to another bundle first (`pgfleet tenant update NAME --bundle ID`)")
        }
        loadedBundles[id] = nil
        if stored.sourceKind == BundleManifest.Source.Kind.system.rawValue { try? rememberRemovedSystemBundle(source: stored.source) }
        pool.wake()
        diskPool.wake()
        do { try bundles.remove(id: id) } catch {
            throw FleetError.failed("bundle \(id) is no longer in the catalog, but its files could not be removed: \(error); remove \(stored.path) by hand")
        }
        logger.info("removed bundle", metadata: ["bundle": "\(id)"])
        return before
    }

    /// System installations removed with `bundle remove`: `registerSystemBundles` leaves them alone.
    static let removedSystemBundlesKey = "removed_system_bundles"

    func removedSystemBundles() -> Set<String> {
        let text = (try? catalog.meta(Self.removedSystemBundlesKey)) ?? nil
        return Set((text ?? "").split(separator: "\n").map(String.init))
    }

    private func rememberRemovedSystemBundle(source: String) throws {
        let sources = removedSystemBundles().union([source])
        try catalog.setMeta(Self.removedSystemBundlesKey, sources.sorted().joined(separator: "\n"))
    }

    private func forgetRemovedSystemBundle(source: String) throws {
        var sources = removedSystemBundles()
        guard sources.remove(source) != nil else { return }
        try catalog.setMeta(Self.removedSystemBundlesKey, sources.sorted().joined(separator: "\n"))
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
        // The manifest's facts, when the bundle's files are readable (a missing bundle still lists).
        let manifest = try? loadBundle(id: record.id).manifest
        return BundleInfo(
            id: record.id, major: record.major, version: record.version, sourceKind: record.sourceKind, source: record.source,
            path: record.path, isDefault: record.isDefault, isMajorDefault: record.isMajorDefault, importedAt: record.importedAt,
            glibcVersion: record.glibcVersion, icuVersion: record.icuVersion, fileCount: record.fileCount,
            tenants: try catalog.tenantCount(bundleID: record.id), glibcNeeded: manifest?.glibcNeeded, extensions: manifest?.extensions,
            vendored: manifest.map { $0.vendored != nil }, verification: manifest.flatMap(BundleVerification.info)
        )
    }
}
