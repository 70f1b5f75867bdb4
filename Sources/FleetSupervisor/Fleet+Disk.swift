import FleetCatalog
import FleetCore
import FleetHost
import FleetSystem
import Foundation

/// Each tenant's disk quota (`--disk SIZE`): four areas of its own (see `DiskAreas`), made at
/// create, mounted at start-up, resized by `tenant set --disk`, removed by drop.
extension Fleet {
    var diskPaths: DiskPaths { DiskPaths(layout: options.layout) }

    /// Whether the tenant's areas were made (at its create: a quota is given then, not added later).
    func hasDisk(_ name: TenantName) -> Bool {
        options.disk != nil && FileManager.default.fileExists(atPath: diskPaths.directory(name))
    }

    /// The split of `--disk` and the WAL settings that fit it; refused with the arithmetic when too small.
    static func diskPlan(_ bytes: UInt64) throws -> DiskPlan {
        try DiskPlan.make(diskBytes: bytes, wal: .pgfleetDefaults)
    }

    /// pgfleet.conf with the WAL settings the tenant's WAL area can hold (later lines win).
    func writeDiskSettings(_ plan: DiskPlan, dataDirectory: String, owner: UserIdentity?) throws {
        let path = dataDirectory + "/" + ClusterConfig.includeFile
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        let lines = "\n# The tenant's disk quota (--disk \(ByteSize.format(plan.diskBytes))): WAL that fits its WAL area.\n" + plan.wal.configurationLines
        try Files.write(text + lines, to: path, mode: 0o600, owner: owner, sync: false)
    }

    /// At start-up, before anything looks into their directories: every tenant's areas mounted
    /// again (after a reboot nothing is). Tenants whose areas cannot be mounted are named and
    /// left for the supervisor to fail.
    func mountDisks(for records: [TenantRecord]) async {
        guard let disk = options.disk else { return }
        await withTaskGroup(of: Void.self) { group in
            for record in records {
                guard let name = try? TenantName(validating: record.name), hasDisk(name) else { continue }
                group.addTask { [logger] in
                    do {
                        try await disk.ensureMounted(name)
                    } catch {
                        logger.error("could not mount the tenant's disk", metadata: ["tenant": "\(name)", "error": "\(error)"])
                    }
                }
            }
        }
    }

    func removeDisk(of name: TenantName) async throws {
        guard let disk = options.disk, hasDisk(name) else { return }
        try await disk.remove(name)
    }

    /// `tenant set --disk`: a tenant with a quota gets new limits online; one without keeps none
    /// (its data would have to move), said plainly.
    func changeDisk(from old: UInt64?, to new: UInt64?, record: TenantRecord, name: TenantName) async throws -> [String] {
        guard old != new else { return [] }
        guard let disk = options.disk else {
            return ["--disk is stored but not enforced: the daemon is not root, so it makes no disk quotas"]
        }
        guard hasDisk(name) else {
            return new == nil ? [] : ["--disk is stored but not enforced: tenant \(name) was created without a disk quota, and one is given at `tenant create --disk` only"]
        }
        guard let new else {
            throw FleetError.invalidRequest("tenant \(name) keeps its disk quota: its data lives in its own areas; give a larger --disk instead of none")
        }
        let plan = try Self.diskPlan(new)
        try await disk.resize(name, areas: plan.areas)
        // The WAL settings for the new WAL area, read at once (max_wal_size is a reload setting).
        let owner = options.isolated ? UserIdentity(name: record.osUser, uid: uid_t(record.uid), gid: gid_t(record.gid)) : nil
        try writeDiskSettings(plan, dataDirectory: record.dataDirectory, owner: owner)
        if let pid = await supervisors[name]?.snapshot.pid { kill(pid, SIGHUP) }
        return ["disk quota now \(ByteSize.format(new))"] + plan.adjustments
    }

    func diskUsage(_ name: TenantName) -> DiskUsage? {
        guard let disk = options.disk, hasDisk(name) else { return nil }
        return try? disk.usage(name)
    }
}
