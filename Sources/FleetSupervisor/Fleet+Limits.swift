import FleetCatalog
import FleetCore
import FleetSystem
import Foundation
import Synchronization

/// A tenant's cgroups as the supervisor uses them; `TenantCgroups` (FleetHost) is the real one.
/// Tenant names are validated before they reach it.
public protocol CgroupControl: Sendable {
    /// Makes the daemon's own subtree; returns what the host cannot do ("no io weight here: …").
    func prepare() throws -> [String]
    /// Makes the tenant's cgroups if they are missing (idempotent).
    func create(_ tenant: String) throws
    /// Writes the limits (nil members: no limit); returns what the kernel cannot do.
    func apply(_ limits: TenantLimits, to tenant: String) throws -> [String]
    func procsFiles(of tenant: String) -> [String]
    func usage(of tenant: String) -> TenantUsage
    /// Processes in the tenant's cgroups.
    func processes(of tenant: String) -> [pid_t]
    /// Moves a process (all its threads) into the tenant's cgroups.
    func move(_ pid: pid_t, into tenant: String) throws
    /// Limits the tenant to `pages` huge pages of `pageBytes` (usage and reservation), none of other sizes.
    @discardableResult
    func applyHugePages(_ pages: Int, pageBytes: UInt64, to tenant: String) throws -> Bool
    func hugePagesUsage(of tenant: String, pageBytes: UInt64) -> (used: UInt64?, limit: UInt64?)
    /// Why a tenant's huge pages cannot be limited here (then it is given none); nil when they can.
    func hugePagesProblem() -> String?
    func remove(_ tenant: String) throws
    /// Removes empty cgroups of tenants not in `keeping`; returns their names.
    func removeStale(keeping: Set<String>) -> [String]
    /// Removes the daemon's whole subtree where nothing runs in it any more; returns what is left.
    @discardableResult
    func removeSubtree() -> [String]
}

/// A value per tenant, read by the supervisors' spawns (any thread) and written by the fleet when
/// it changes: the limits in force, the sandbox's network.
final class TenantBoard<Value: Sendable>: Sendable {
    private let values = Mutex<[String: Value]>([:])
    private let fallback: Value

    init(default fallback: Value) {
        self.fallback = fallback
    }

    subscript(name: String) -> Value {
        get { values.withLock { $0[name] } ?? fallback }
        set { values.withLock { $0[name] = newValue } }
    }

    func remove(_ name: String) {
        _ = values.withLock { $0.removeValue(forKey: name) }
    }
}

extension Fleet {
    /// The tenant's own limits with the daemon's defaults filled in.
    func effectiveLimits(_ record: TenantRecord) -> TenantLimits {
        var limits = record.limits.filled(from: options.defaultLimits)
        if limits.hugePages == nil { limits.hugePages = Self.defaultHugePages }
        return limits
    }

    /// How the tenant's postmaster joins its cgroups: nil without cgroups (not root, or none usable).
    func cgroupPlacement(for record: TenantRecord) -> CgroupPlacement? {
        guard let cgroups = options.cgroups, cgroupsReady else { return nil }
        let name = record.name
        let board = limitsBoard
        board[name] = effectiveLimits(record)
        return CgroupPlacement(procsFiles: cgroups.procsFiles(of: name)) {
            // Every start: the group again if it went (a reboot), and the limits in force now.
            try cgroups.create(name)
            _ = try cgroups.apply(board[name], to: name)
        }
    }

    /// At start-up: the daemon's subtree, and the stale groups of dropped tenants removed.
    func prepareCgroups(for records: [TenantRecord]) {
        guard let cgroups = options.cgroups else { return }
        do {
            for note in try cgroups.prepare() { logger.warning("cgroups: \(note)") }
        } catch {
            logger.error("cgroups: \(error); tenants run without limits", metadata: ["error": "\(error)"])
            return
        }
        cgroupsReady = true
        for removed in cgroups.removeStale(keeping: Set(records.map(\.name))) {
            logger.info("removed the cgroup of a tenant that no longer exists", metadata: ["tenant": "\(removed)"])
        }
        // A tenant's own groups are made when its postmaster starts (or is adopted, below):
        // suspended and stopped tenants, most of a dense host's, cost the kernel nothing.
        for record in records { limitsBoard[record.name] = effectiveLimits(record) }
    }

    /// Puts a re-adopted postmaster and its children into the tenant's cgroups when they are not
    /// there (an older pgfleet started them without).
    func placeAdopted(record: TenantRecord) {
        guard let cgroups = options.cgroups, cgroupsReady, options.isolated else { return }
        do {
            try cgroups.create(record.name)
            for note in try cgroups.apply(effectiveLimits(record), to: record.name) {
                logger.warning("cgroups: \(note)", metadata: ["tenant": "\(record.name)"])
            }
        } catch {
            logger.error("could not set up the cgroup of an adopted tenant", metadata: ["tenant": "\(record.name)", "error": "\(error)"])
            return
        }
        let inside = Set(cgroups.processes(of: record.name))
        for pid in ProcFS.processes(ofUID: uid_t(record.uid)) where !inside.contains(pid) {
            do {
                try cgroups.move(pid, into: record.name)
                logger.info("moved a process of an adopted tenant into its cgroup", metadata: ["tenant": "\(record.name)", "pid": "\(pid)"])
            } catch {
                logger.warning("could not move a process into the tenant's cgroup", metadata: ["tenant": "\(record.name)", "pid": "\(pid)", "error": "\(error)"])
            }
        }
    }

    func removeCgroups(of name: TenantName) {
        limitsBoard.remove(name.rawValue)
        hugePages.remove(name.rawValue)
        guard let cgroups = options.cgroups else { return }
        do {
            try cgroups.remove(name.rawValue)
        } catch {
            logger.warning("could not remove the tenant's cgroup; it is removed at the next start", metadata: ["tenant": "\(name)", "error": "\(error)"])
        }
    }

    func usage(of record: TenantRecord, postmaster: Int32? = nil, sandboxed: Bool = false) -> TenantUsage? {
        var usage = cgroupsReady ? options.cgroups?.usage(of: record.name) : nil
        if sandboxed, let postmaster, let shm = Self.shmUsage(postmaster: postmaster) {
            usage = usage ?? TenantUsage()
            usage?.shmUsedBytes = shm.used
            usage?.shmSizeBytes = shm.size
        }
        hugePagesUsage(of: record, into: &usage)
        if let name = try? TenantName(validating: record.name), let disk = diskUsage(name) {
            usage = usage ?? TenantUsage()
            usage?.diskUsedBytes = disk.usedBytes
            usage?.diskWarning = disk.warnings.isEmpty ? nil : disk.warnings.joined(separator: "; ")
        }
        return usage
    }

    /// The tenant's settings as its own PostgreSQL reads them, with `overrides` (name → value) on top.
    func memorySettings(record: TenantRecord, overrides: [(name: String, value: String)]) async throws -> MemorySettings {
        let bundle = try loadBundle(id: record.bundleID)
        let owner = options.isolated ? UserIdentity(name: record.osUser, uid: uid_t(record.uid), gid: gid_t(record.gid)) : nil
        let arguments = overrides.flatMap { ["-c", "\($0.name)=\($0.value)"] }
        // One `postgres -C` per setting (it prints only the last one asked for), side by side.
        let values = try await withThrowingTaskGroup(of: (String, String).self) { group in
            for name in MemorySettings.names {
                group.addTask {
                    let result = try await self.runTenantPostgres(
                        ["-D", record.dataDirectory, "-C", name] + arguments, record: record, bundle: bundle, owner: owner
                    )
                    guard result.succeeded else {
                        throw FleetError.failed("could not read \(name) of tenant \(record.name): \(result.stderr.trimmingCharacters(in: .whitespacesAndNewlines))")
                    }
                    return (name, result.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
                }
            }
            var values: [String: String] = [:]
            for try await (name, value) in group { values[name] = value }
            return values
        }
        return try MemorySettings(values: values)
    }

    /// Refuses limits the tenant's settings cannot live with, with the arithmetic; returns notes.
    func checkFit(_ limits: TenantLimits, settings: MemorySettings) throws -> [String] {
        if let memory = limits.memoryBytes, let problem = LimitFit.memoryProblem(settings, limit: memory) {
            throw FleetError.invalidRequest(problem)
        }
        if let pids = limits.pids, let problem = LimitFit.pidsProblem(settings, pids: pids) {
            throw FleetError.invalidRequest(problem)
        }
        try checkShm(limits, settings: settings)
        return limits.memoryBytes.flatMap { LimitFit.memoryNote(settings, limit: $0) }.map { [$0] } ?? []
    }

    /// `tenant set --cpu … --memory …` (inside the tenant's turn): checked against its settings
    /// (with the ones being set), stored, and written to its cgroups at once.
    func changeLimits(_ change: LimitsChange, record: TenantRecord, settings: [(name: String, value: String)]) async throws -> [String] {
        let own = try change.applied(to: record.limits)
        let effective = own.filled(from: options.defaultLimits)
        var notes = try checkFit(effective, settings: try await memorySettings(record: record, overrides: settings))
        if change.hugePages != nil || !settings.isEmpty, let mode = effective.hugePages {
            try await checkHugePagesAdmission(record: record, mode: mode, settings: settings)
        }
        // The disk first: a size its data cannot shrink to is refused before anything is stored.
        notes += try await changeDisk(from: effectiveLimits(record).diskBytes, to: effective.diskBytes, record: record, name: try TenantName(validating: record.name))
        try catalog.setLimits(own, forTenant: record.name)
        limitsBoard[record.name] = effective
        if let cgroups = options.cgroups, cgroupsReady {
            try cgroups.create(record.name)
            notes += try cgroups.apply(effective, to: record.name)
        } else if !effective.isEmpty {
            notes.append("limits are stored but not enforced: the daemon has no cgroups it can use; run `pgfleet serve` as root with a writable cgroup tree (under systemd: Delegate=yes, see the README's Limits section)")
        }
        logger.info("tenant limits changed", metadata: ["tenant": "\(record.name)", "limits": "\(effective.summary)"])
        return notes
    }

    /// The settings check for `tenant set NAME key=value` under a memory limit already in force.
    func checkSettingsFit(record: TenantRecord, settings: [(name: String, value: String)]) async throws {
        let limits = effectiveLimits(record)
        guard limits.memoryBytes != nil || limits.pids != nil || limits.shmBytes != nil else { return }
        _ = try checkFit(limits, settings: try await memorySettings(record: record, overrides: settings))
    }
}
