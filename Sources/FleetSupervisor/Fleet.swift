import FleetBundles
import FleetCatalog
import FleetCore
import FleetHost
import FleetSystem
import Foundation
import Logging

public struct FleetOptions: Sendable {
    public var layout: FleetLayout
    /// Root: each tenant gets its own OS user. Otherwise everything runs as the invoking user.
    public var isolated: Bool
    /// OS user names are this prefix plus the tenant name.
    public var userPrefix: String
    public var policy: RestartPolicy
    /// Register installed PostgreSQL versions (Debian's /usr/lib/postgresql/N) at start-up.
    public var registerSystemBundles: Bool
    /// The proxy in front of the tenants, for connection strings.
    public var proxy: ProxyEndpoint?
    /// Seconds without a client before a tenant is suspended, unless it says otherwise; 0: never.
    public var defaultSuspendAfter: Int
    /// Ready clusters kept per bundle for `tenant create` to claim; 0: none.
    public var poolSize: Int
    /// Limits for every tenant that has none of its own (`serve --default-memory …`).
    public var defaultLimits: TenantLimits = .none
    /// The tenants' cgroups; nil when the daemon cannot make any (not root, no writable tree).
    public var cgroups: (any CgroupControl)?
    /// Whether the postmaster's OOM score can be lowered to -1000 (CAP_SYS_RESOURCE). Without,
    /// its backends raise theirs instead: an OOM kill inside a tenant still takes a backend.
    public var canProtectPostmaster = ProcFS.hasCapability(24)
    /// Each postmaster in a sandbox of its own (bubblewrap); nil: none. Used only as root.
    public var sandbox: SandboxSettings?
    /// Disk quotas (`--disk`); nil: none can be made (not root).
    public var disk: (any TenantDisk)?
    /// Ready clusters kept per bundle inside disk images, for `tenant create --disk` (loop images only).
    public var poolDisks = 0
    /// `serve --huge-pages-pool`: grow `vm.nr_hugepages` to what the tenants need, and shrink it back.
    public var managesHugePagePool = false

    public init(
        layout: FleetLayout, isolated: Bool, userPrefix: String = "pgf-", policy: RestartPolicy = RestartPolicy(),
        registerSystemBundles: Bool = true, proxy: ProxyEndpoint? = nil, defaultSuspendAfter: Int = 0, poolSize: Int = 0
    ) {
        self.poolSize = poolSize
        self.proxy = proxy
        self.defaultSuspendAfter = defaultSuspendAfter
        self.layout = layout
        self.isolated = isolated
        self.userPrefix = userPrefix
        self.policy = policy
        self.registerSystemBundles = registerSystemBundles
    }
}

/// The fleet: catalog, bundles and one supervisor per tenant, behind the `FleetControl` API.
public actor Fleet: FleetControl {
    let options: FleetOptions
    let catalog: Catalog
    let bundles: BundleStore
    let probe: HealthProbe
    let logger: Logger
    let startedAt = Date()
    var supervisors: [TenantName: TenantSupervisor] = [:]
    /// Bundles as loaded for supervisors, by id. A manifest lists every file with its hash (about
    /// 340 kB of JSON for Debian's PostgreSQL 15): parsed once per tenant, it made a daemon with
    /// 2,000 tenants spend seconds at start-up before it answered anything.
    var loadedBundles: [String: FleetBundles.Bundle] = [:]
    /// Operations that change a tenant, one at a time per tenant: every entry point that changes
    /// one runs inside `operations.run`, so that none has to remember who else might be at it.
    let operations = TenantOperations()
    /// OS user ids chosen for tenants being created whose useradd has not finished yet.
    var promisedUserIDs: Set<Int> = []
    let daemonUser = UserIdentity.current
    /// Pre-initialised clusters for `tenant create`; its refill runs in `FleetService`.
    public let pool: ReadyPool
    /// The same, with each cluster already inside a disk quota's images.
    public let diskPool: ReadyPool
    /// Running tenants' sockets, for the proxy's fast path.
    public nonisolated let running = RunningTenants()
    /// Every supervisor's latest snapshot, readable without awaiting the supervisors.
    public nonisolated let board = SnapshotBoard<SupervisorSnapshot>()
    var idle = IdleTracker()
    var wakeLimiter = WakeLimiter()
    private let clock = ContinuousClock()
    private let epoch = ContinuousClock.now
    var monotonicNow: Duration { clock.now - epoch }
    /// Client connections the proxy holds for a tenant; idle suspension counts on it.
    var proxyConnections: (@Sendable (TenantName) -> Int)?
    var proxyServerSessions: (@Sendable (TenantName) -> Int)?
    /// Tells the proxy that a tenant was just created (see `ProxyServer.prepare`).
    var proxyPrepare: (@Sendable (TenantName, String) -> Void)?
    /// The limits in force per tenant, for the supervisors' spawns.
    let limitsBoard = TenantBoard<TenantLimits>(default: .none)
    /// The sandbox network per tenant, for the supervisors' spawns.
    let networkBoard = TenantBoard<SandboxNetwork>(default: .none)
    /// Huge pages given to each tenant at its last start.
    nonisolated let hugePages = HugePageLedger()
    /// Each tenant's postmaster's RLIMIT_NOFILE (`refreshFileLimit`), for the supervisors' spawns.
    let fileLimitBoard = TenantBoard<Int>(default: Fleet.defaultFileLimit())
    /// Whether the daemon's cgroup subtree is in place (`prepareCgroups` at start-up).
    var cgroupsReady = false

    public init(options: FleetOptions, catalog: Catalog, logger: Logger, probe: HealthProbe = HealthProbe()) {
        self.options = options
        self.catalog = catalog
        let bundles = BundleStore(directory: options.layout.bundlesDirectory)
        self.bundles = bundles
        self.probe = probe
        self.logger = logger
        self.pool = ReadyPool(
            size: options.poolSize, layout: options.layout, catalog: catalog, bundles: bundles, isolated: options.isolated,
            userPrefix: options.userPrefix, daemonUser: UserIdentity.current.name, logger: logger
        )
        self.diskPool = ReadyPool(
            size: options.isolated && options.disk is LoopImageDisk ? options.poolDisks : 0, layout: options.layout, catalog: catalog,
            bundles: bundles, isolated: options.isolated, userPrefix: options.userPrefix, daemonUser: UserIdentity.current.name,
            logger: logger, withDisks: true, sharingUserWith: pool
        )
    }

    // MARK: Start-up and shutdown

    /// Registers system bundles, then brings every tenant back to its desired state, re-adopting
    /// postmasters that outlived an earlier daemon instead of starting duplicates.
    public func bootstrap() async throws {
        if options.registerSystemBundles { await registerSystemBundles() }
        correctRecordedICU()
        try await resumeTenants()
    }

    /// Brings every tenant back to its desired state, re-adopting live postmasters.
    public func resumeTenants() async throws {
        var records = try catalog.tenants()
        prepareCgroups(for: records)
        await mountDisks(for: records)
        let marked = creationMarkers(known: Set(records.map(\.name)))
        for index in records.indices where marked.contains(records[index].name) {
            guard let name = try? TenantName(validating: records[index].name) else { continue }
            // The daemon died during its create: never started as if it were usable. A postmaster
            // that create had started is adopted below and stopped.
            let reason = Self.interruptedCreation(name)
            logger.error("tenant creation was interrupted; not starting it", metadata: ["tenant": "\(name)"])
            try? catalog.setDesiredState(.stopped, forTenant: name.rawValue)
            try? catalog.setFailureReason(reason, forTenant: name.rawValue)
            records[index].desiredState = .stopped
            records[index].failureReason = reason
        }
        await withTaskGroup(of: Void.self) { group in
            for record in records {
                guard let name = try? TenantName(validating: record.name) else { continue }
                guard let supervisor = try? supervisor(for: record, name: name) else {
                    logger.error("cannot supervise tenant: its bundle is missing", metadata: ["tenant": "\(name)", "bundle": "\(record.bundleID)"])
                    continue
                }
                group.addTask { [logger] in
                    if let running = await self.runningPostmaster(of: record, name: name) {
                        await self.placeAdopted(record: record)
                        await supervisor.adopt(pid: running.pid, sandboxed: running.sandboxed)
                        if record.desiredState == .stopped { await supervisor.stop() } else { await self.collectFingerprintIfNeeded(name) }
                    } else if record.desiredState == .running && record.suspended {
                        await supervisor.restoreSuspended()
                    } else if record.desiredState == .running {
                        await self.refreshFileLimit(record)
                        let result = await supervisor.start()
                        if result.state != .running {
                            logger.error("tenant did not start", metadata: ["tenant": "\(name)", "state": "\(result.state)"])
                        } else {
                            await self.collectFingerprintIfNeeded(name)
                        }
                    }
                }
            }
        }
        await updateMetrics()
    }

    /// Stops every postmaster with a fast shutdown. Desired states stay as they are, so the next
    /// daemon starts the same tenants again.
    public func shutdown() async {
        let all = Array(supervisors.values)
        logger.info("stopping tenants", metadata: ["count": "\(all.count)"])
        await withTaskGroup(of: Void.self) { group in
            for supervisor in all { group.addTask { await supervisor.stop() } }
        }
        restoreHugePagePool()
        // Nothing of the stopped tenants runs in their cgroups now: the daemon's subtree goes
        // with them (made again at the next start). What still holds a process stays: a
        // postmaster that did not stop, and on cgroup v2 the daemon's own leaf.
        if let cgroups = options.cgroups, cgroupsReady {
            let left = cgroups.removeSubtree()
            if !left.isEmpty { logger.debug("cgroups left at shutdown", metadata: ["left": "\(left)"]) }
        }
    }

    /// Removes what an interrupted bundle import or removal left behind.
    public func removeLeftovers() {
        for path in bundles.removeLeftovers() {
            logger.info("removed leftover of an interrupted bundle import", metadata: ["path": "\(path)"])
        }
    }

    public func registerSystemBundles() async {
        // Removed with `bundle remove` counts as known: the operator did not want it.
        let known = Set(((try? catalog.bundles()) ?? []).map(\.source)).union(removedSystemBundles())
        for installation in BundleStore.systemInstallations() where !known.contains(installation) {
            do {
                let bundle = try await bundles.importBundle(from: installation) { [logger] event in
                    if let message = event.message, event.completed == nil {
                        logger.info("importing system PostgreSQL", metadata: ["path": "\(installation)", "step": "\(message)"])
                    }
                }
                try catalog.insertBundle(record(for: bundle, makeDefault: false))
                logger.info("registered system PostgreSQL", metadata: ["bundle": "\(bundle.manifest.id)"])
            } catch FleetError.bundleExists(let id) {
                logger.debug("system PostgreSQL already registered", metadata: ["bundle": "\(id)"])
            } catch {
                logger.warning("could not register system PostgreSQL", metadata: ["path": "\(installation)", "error": "\(error)"])
            }
        }
    }

    /// Bundles imported before pgfleet read the server's own links may record the ICU that libxml2
    /// pulled into a server built without it; the collation guard would then let an ICU tenant
    /// onto a bundle that refuses its databases. What bin/postgres names itself decides.
    func correctRecordedICU() {
        for bundle in (try? catalog.bundles()) ?? [] where bundle.icuVersion != nil {
            guard let server = ELFDynamic.read(path: bundle.path + "/bin/postgres"), server.linkedICU == nil else { continue }
            try? catalog.setBundleICUVersion(id: bundle.id, nil)
            loadedBundles[bundle.id] = nil
            logger.notice("bundle is built without ICU; its record said otherwise", metadata: ["bundle": "\(bundle.id)"])
        }
    }

    static func interruptedCreation(_ name: TenantName) -> String {
        "its creation did not finish (the daemon stopped during `pgfleet tenant create`, or the new cluster did not start), so its superuser may have no password "
            + "and nobody may be able to log in; drop it with `pgfleet tenant drop \(name) --yes` and create it again"
    }

    /// Refuses to start (or otherwise use) a tenant whose create never finished: its marker is
    /// there although no create runs (call inside `operations.run`, where no create can). `what`: what cannot be done.
    func notHalfCreated(_ name: TenantName, _ what: String = "started") throws {
        if FileManager.default.fileExists(atPath: options.layout.creationMarker(name)) { throw FleetError.conflict("tenant \(name) cannot be \(what): \(Self.interruptedCreation(name))") }
    }

    /// The tenants of `known` whose create never finished, from one listing of the tenants'
    /// directory; markers of creates that died before their catalog row are removed.
    private func creationMarkers(known: Set<String>) -> Set<String> {
        let directory = options.layout.tenantsDirectory
        var marked: Set<String> = []
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where entry.hasPrefix(".") && entry.hasSuffix(".creating") {
            let name = String(entry.dropFirst().dropLast(".creating".count))
            if known.contains(name) {
                marked.insert(name)
            } else {
                try? FileManager.default.removeItem(atPath: directory + "/" + entry)
                logger.info("removed the marker of a create that died before it registered the tenant", metadata: ["tenant": "\(name)"])
            }
        }
        return marked
    }

    /// A bundle with its manifest, parsed once (about 10 ms for a 340 kB manifest) and kept.
    func loadBundle(id: String) throws -> FleetBundles.Bundle {
        if let loaded = loadedBundles[id] { return loaded }
        let bundle = try bundles.load(id: id)
        loadedBundles[id] = bundle
        return bundle
    }

    func supervisor(for record: TenantRecord, name: TenantName) throws -> TenantSupervisor {
        if let existing = supervisors[name] { return existing }
        let bundle = try loadBundle(id: record.bundleID)
        let user = options.isolated ? UserIdentity(name: record.osUser, uid: uid_t(record.uid), gid: gid_t(record.gid)) : nil
        let environment = Self.postmasterEnvironment(for: bundle, isolated: options.isolated, protected: options.canProtectPostmaster)
        var launch = PostmasterLaunch(
            postgres: bundle.postgres, dataDirectory: record.dataDirectory, socketDirectory: record.socketDirectory,
            logFile: record.logFile, user: user, environment: environment,
            cgroup: cgroupPlacement(for: record), oomScoreAdjust: options.isolated && options.canProtectPostmaster ? -1000 : nil,
            sandbox: sandboxLaunch(for: record, name: name, bundle: bundle, user: user, environment: environment),
            startSettings: guardedByCollation(startSettings(for: record, name: name, bundle: bundle, user: user), record: record)
        )
        launch.fileLimit = fileLimitSource(for: record)
        let catalog = catalog
        let supervisor = TenantSupervisor(
            name: name, launch: launch, policy: options.policy, probe: probe, logger: logger,
            failureReason: record.failureReason, running: running, board: board,
            onFailureChange: { name, reason in try? catalog.setFailureReason(reason, forTenant: name.rawValue) },
            onStateChange: { [weak self] in await self?.updateMetrics() }
        )
        supervisors[name] = supervisor
        return supervisor
    }

    /// The environment for a bundle's programs. Release tarballs carry libraries (libpq among
    /// them) that some of their extension modules look for under the build machine's prefix;
    /// pointing the loader at the bundle keeps them from picking up the host's copies instead.
    /// The postmaster's environment: its backends set their OOM score back to 0 after forking
    /// (PostgreSQL's "Linux Memory Overcommit" advice), so the kernel picks them, never it. Where
    /// the postmaster could not be given -1000 (no CAP_SYS_RESOURCE, as in some containers), the
    /// backends raise theirs to 500 instead, which anyone may: the same order of victims.
    static func postmasterEnvironment(for bundle: FleetBundles.Bundle, isolated: Bool, protected: Bool) -> [String: String] {
        var environment = environment(for: bundle)
        if isolated {
            environment["PG_OOM_ADJUST_FILE"] = "/proc/self/oom_score_adj"
            environment["PG_OOM_ADJUST_VALUE"] = protected ? "0" : "500"
        }
        return environment
    }

    static func environment(for bundle: FleetBundles.Bundle) -> [String: String] {
        var environment = SpawnSpec.baseEnvironment
        if bundle.manifest.source.kind == .tarball {
            environment["LD_LIBRARY_PATH"] = bundle.directory + "/lib"
        }
        return environment
    }
}
