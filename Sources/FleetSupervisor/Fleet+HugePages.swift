import FleetBundles
import FleetCatalog
import FleetCore
import FleetHost
import FleetSystem
import Foundation
import Synchronization

/// The huge pages given to each tenant at its last start, and the host pool pgfleet manages
/// (`serve --huge-pages-pool`). Read and written by the supervisors' starts on any thread.
public final class HugePageLedger: Sendable {
    struct Entry: Sendable {
        var grant: HugePagesGrant
        /// What the pages were computed from, so a start with unchanged settings runs no `postgres -C`.
        var neededKey: String?
        var needed: Int?
        /// The tenant leaves min_dynamic_shared_memory at 0: with huge pages it is given
        /// `Fleet.hugePageDynamicSharedMemory` of them (`needed` counts it).
        var addsDynamicSharedMemory = false
    }

    private let entries = Mutex<[String: Entry]>([:])
    /// `nr_hugepages` when the daemon started managing the pool: it never shrinks below it and
    /// goes back to it at shutdown.
    let baseline = Mutex<Int?>(nil)

    public init() {}

    func grant(of tenant: String) -> HugePagesGrant? { entries.withLock { $0[tenant]?.grant } }

    func record(_ grant: HugePagesGrant, for tenant: String) {
        entries.withLock { $0[tenant, default: Entry(grant: grant)].grant = grant }
    }

    func cachedNeed(of tenant: String, key: String) -> Int?? {
        entries.withLock { entries in
            guard let entry = entries[tenant], entry.neededKey == key else { return nil }
            return .some(entry.needed)
        }
    }

    func cacheNeed(_ needed: Int?, addsDynamicSharedMemory: Bool, of tenant: String, key: String) {
        entries.withLock { entries in
            var entry = entries[tenant] ?? Entry(grant: .without(note: nil))
            entry.neededKey = key
            entry.needed = needed
            entry.addsDynamicSharedMemory = addsDynamicSharedMemory
            entries[tenant] = entry
        }
    }

    /// The last need computed for the tenant, whatever its configuration is now.
    func knownNeed(of tenant: String) -> Int? { entries.withLock { $0[tenant]?.needed } }

    func addsDynamicSharedMemory(_ tenant: String) -> Bool { entries.withLock { $0[tenant]?.addsDynamicSharedMemory ?? false } }

    /// Pages granted to the tenants `holding` says still hold theirs, `except` one.
    func granted(except tenant: String?, holding: (String) -> Bool) -> Int {
        entries.withLock { entries in
            entries.reduce(0) { sum, item in item.key == tenant || !holding(item.key) ? sum : sum + item.value.grant.pages }
        }
    }

    func remove(_ tenant: String) { _ = entries.withLock { $0.removeValue(forKey: tenant) } }
}

extension Fleet {
    /// The daemon's default when neither the tenant nor `serve --default-huge-pages` says: `try`,
    /// which costs one read of /sys at a start on a host without a pool.
    static let defaultHugePages = HugePagesMode.try

    /// What the supervisor runs before each spawn: the tenant's huge pages decided and its hugetlb
    /// cgroup limited to them; returns the settings for the postmaster's command line.
    func startSettings(for record: TenantRecord, name: TenantName, bundle: FleetBundles.Bundle, user: UserIdentity?) -> @Sendable () async throws -> [String] {
        let limits = limitsBoard
        let ledger = hugePages
        let board = board
        let cgroups = cgroupsReady ? options.cgroups : nil
        let managesPool = options.managesHugePagePool
        let logger = logger
        return { [weak self] in
            let mode = limits[name.rawValue].hugePages ?? Self.defaultHugePages
            let host = HugePageHost()
            var grant: HugePagesGrant
            do {
                grant = try await Self.decideHugePages(
                    mode: mode, name: name, host: host, cgroups: cgroups, ledger: ledger, managesPool: managesPool, board: board
                ) { [weak self] in
                    guard let self else { return nil }
                    return try await self.neededHugePages(record: record, bundle: bundle, owner: user)
                }
            } catch {
                ledger.record(.without(note: nil), for: name.rawValue)
                _ = try? cgroups?.applyHugePages(0, pageBytes: host.defaultPageBytes ?? 0, to: name.rawValue)
                throw error
            }
            if let cgroups {
                do {
                    try cgroups.create(name.rawValue)
                    try cgroups.applyHugePages(grant.pages, pageBytes: host.defaultPageBytes ?? 0, to: name.rawValue)
                } catch {
                    // Pages are never given without their limit in place; none given (and the
                    // postmaster told off) needs no limit to be safe.
                    _ = try? cgroups.applyHugePages(0, pageBytes: host.defaultPageBytes ?? 0, to: name.rawValue)
                    if grant.pages > 0 {
                        if mode == .on { throw FleetError.invalidRequest("huge pages (--huge-pages on) cannot be limited: \(error)") }
                        grant = .without(note: "started without huge pages: their limit could not be set (\(error))")
                    } else {
                        logger.warning("could not write the tenant's zero huge page limit", metadata: ["tenant": "\(name)", "error": "\(error)"])
                    }
                }
            }
            ledger.record(grant, for: name.rawValue)
            if case .pages(let pages, let size) = grant {
                logger.info("huge pages given", metadata: ["tenant": "\(name)", "pages": "\(pages)", "size": "\(ByteSize.format(size))"])
            } else if case .without(let note?) = grant {
                logger.info("\(note)", metadata: ["tenant": "\(name)"])
            }
            var settings = ["-c", "huge_pages=\(HugePagesDecision.setting(mode: mode, grant: grant))"]
            if grant.pages > 0, ledger.addsDynamicSharedMemory(name.rawValue) {
                settings += ["-c", "min_dynamic_shared_memory=\(Self.hugePageDynamicSharedMemory)"]
            }
            return settings
        }
    }

    /// Where huge pages are given, the first dynamic shared memory (the statistics' and small
    /// parallel queries') comes out of the main segment, on those pages and reserved at the
    /// start, instead of /dev/shm. Elsewhere it would only cost an idle tenant memory.
    static let hugePageDynamicSharedMemory = "8MB"

    /// The decision's inputs read from the host (and the pool grown first when pgfleet manages it).
    static func decideHugePages(
        mode: HugePagesMode, name: TenantName, host: HugePageHost, cgroups: (any CgroupControl)?, ledger: HugePageLedger, managesPool: Bool,
        board: SnapshotBoard<SupervisorSnapshot>, needed: @Sendable () async throws -> Int?
    ) async throws -> HugePagesGrant {
        if mode == .off { return .without(note: nil) }
        let problem = cgroups.map { $0.hugePagesProblem() } ?? "the daemon has no cgroups (not root, or none usable), so it cannot limit a tenant's huge pages"
        var pool = host.pool()
        // Without a pool to draw from, `try` needs no `postgres -C`: a start stays as fast as before.
        if mode == .try, problem != nil || pool == nil || (pool?.total == 0 && !managesPool) {
            return try HugePagesDecision.decide(.init(mode: mode, neededPages: 1, pool: pool, unlimitable: problem))
        }
        let neededPages = try await needed()
        let holding: (String) -> Bool = { tenant in
            guard let name = try? TenantName(validating: tenant), let state = board.snapshot(of: name)?.state else { return false }
            return state == .running || state == .starting || state == .stopping
        }
        let others = ledger.granted(except: name.rawValue, holding: holding)
        if managesPool, problem == nil, let neededPages, var current = pool, current.available < neededPages {
            ledger.baseline.withLock { if $0 == nil { $0 = current.total } }
            _ = try? host.setPoolSize(current.total + neededPages - current.available, pageBytes: current.pageBytes)
            current = host.pool(pageBytes: current.pageBytes) ?? current
            pool = current
        }
        return try HugePagesDecision.decide(.init(mode: mode, neededPages: neededPages, pool: pool, grantedToOthers: others, unlimitable: problem))
    }

    /// `tenant set --huge-pages on` (or settings under `on`): refused now, with the numbers, when
    /// the host cannot give the pages, rather than at the start that follows.
    func checkHugePagesAdmission(record: TenantRecord, mode: HugePagesMode, settings: [(name: String, value: String)]) async throws {
        guard mode == .on, let name = try? TenantName(validating: record.name) else { return }
        let bundle = try loadBundle(id: record.bundleID)
        let owner = options.isolated ? UserIdentity(name: record.osUser, uid: uid_t(record.uid), gid: gid_t(record.gid)) : nil
        let cgroups = cgroupsReady ? options.cgroups : nil
        let overrides = settings.flatMap { ["-c", "\($0.name)=\($0.value)"] }
        _ = try await Self.decideHugePages(
            mode: mode, name: name, host: HugePageHost(), cgroups: cgroups, ledger: hugePages, managesPool: options.managesHugePagePool, board: board
        ) {
            try await self.neededHugePages(record: record, bundle: bundle, owner: owner, overrides: overrides)
        }
    }

    /// `shared_memory_size_in_huge_pages` with the tenant's settings, as its own PostgreSQL
    /// computes it (inside its sandbox: it loads the tenant's preload libraries); cached while
    /// its configuration files are unchanged. Nil before PostgreSQL 15, which cannot say.
    func neededHugePages(record: TenantRecord, bundle: FleetBundles.Bundle, owner: UserIdentity?, overrides: [String] = []) async throws -> Int? {
        let key = Self.configurationKey(dataDirectory: record.dataDirectory, bundle: bundle.manifest.id)
        if overrides.isEmpty, let cached = hugePages.cachedNeed(of: record.name, key: key) { return cached }
        let own = try await runTenantPostgres(
            ["-D", record.dataDirectory, "-C", "min_dynamic_shared_memory"] + overrides, record: record, bundle: bundle, owner: owner
        )
        let addsDynamic = own.succeeded && own.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "0"
        let dynamic = addsDynamic ? ["-c", "min_dynamic_shared_memory=\(Self.hugePageDynamicSharedMemory)"] : []
        // huge_pages=try: what it is computed for does not map anything here.
        let result = try await runTenantPostgres(
            ["-D", record.dataDirectory, "-C", "shared_memory_size_in_huge_pages", "-c", "huge_pages=try"] + dynamic + overrides,
            record: record, bundle: bundle, owner: owner
        )
        let needed: Int?
        if result.succeeded, let pages = Int(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)), pages > 0 {
            needed = pages
        } else if result.stderr.contains("unrecognized configuration parameter") {
            needed = nil
        } else if result.succeeded {
            needed = nil
        } else {
            throw FleetError.failed("could not compute the huge pages of tenant \(record.name): \(result.stderr.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        if overrides.isEmpty { hugePages.cacheNeed(needed, addsDynamicSharedMemory: addsDynamic, of: record.name, key: key) }
        return needed
    }

    /// The configuration files' sizes and modification times, and the bundle.
    static func configurationKey(dataDirectory: String, bundle: String) -> String {
        var key = bundle
        for file in ["postgresql.conf", ClusterConfig.includeFile, "postgresql.auto.conf"] {
            var info = stat()
            if stat(dataDirectory + "/" + file, &info) == 0 {
                key += "|\(info.st_size):\(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)"
            } else {
                key += "|-"
            }
        }
        return key
    }

    /// With `serve --huge-pages-pool`: the pool shrinks back to what the running tenants hold
    /// (never below what the host had), after a tenant stops or is dropped.
    func rebalanceHugePagePool() {
        guard options.managesHugePagePool, let baseline = hugePages.baseline.withLock({ $0 }) else { return }
        let host = HugePageHost()
        guard let pool = host.pool() else { return }
        let board = board
        let held = hugePages.granted(except: nil) { tenant in
            guard let name = try? TenantName(validating: tenant), let state = board.snapshot(of: name)?.state else { return false }
            return state == .running || state == .starting || state == .stopping
        }
        let target = max(baseline, held)
        guard pool.total > target else { return }
        // Only free, unreserved pages can go; the kernel keeps the rest.
        let shrink = min(pool.total - target, pool.available)
        guard shrink > 0 else { return }
        if let now = try? host.setPoolSize(pool.total - shrink, pageBytes: pool.pageBytes) {
            logger.info("huge page pool shrunk to what the tenants hold", metadata: ["pages": "\(now)", "held": "\(held)"])
        }
    }

    /// At shutdown: the pool as the host had it.
    func restoreHugePagePool() {
        guard options.managesHugePagePool, let baseline = hugePages.baseline.withLock({ $0 }), let pool = HugePageHost().pool() else { return }
        if pool.total != baseline { _ = try? HugePageHost().setPoolSize(baseline, pageBytes: pool.pageBytes) }
    }

    /// For `tenant info`: the huge pages in use and the note of a `try` that got none.
    func hugePagesUsage(of record: TenantRecord, into usage: inout TenantUsage?) {
        let grant = hugePages.grant(of: record.name)
        guard let size = HugePageHost().defaultPageBytes else { return }
        if let cgroups = options.cgroups, cgroupsReady {
            let (used, limit) = cgroups.hugePagesUsage(of: record.name, pageBytes: size)
            if let used, used > 0 || (limit ?? 0) > 0 {
                usage = usage ?? TenantUsage()
                usage?.hugePagesBytes = used
                usage?.hugePagesLimitBytes = limit
            }
        }
        if case .without(let note?) = grant {
            usage = usage ?? TenantUsage()
            usage?.hugePagesNote = note
        }
    }
}
