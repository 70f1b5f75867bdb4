import FleetBundles
import FleetCatalog
import FleetCore
import FleetHost
import FleetSystem
import Foundation
import Logging
import Metrics

/// Keeps a few initialised, bootstrapped, stopped clusters per bundle under `ROOT/pool/<bundle>/`,
/// so that `tenant create` only claims one (a rename), personalises it and starts it. Each entry
/// comes from its own initdb, so every tenant keeps its own system identifier.
///
/// Decisions live in `ReadyPoolState`; this actor does the I/O. Entries are built one at a time
/// at the lowest CPU and I/O priority, and not while a tenant is being created. A claim is one
/// synchronous step on this actor (take the name, rename the directory), so two creates never get
/// the same entry, and the refill only ever touches `building-*` directories.
///
/// A pool `withDisks` keeps its clusters already inside the four loop images of a disk quota
/// (`LoopImageDisk`, unmounted), for `tenant create --disk`: a claim then moves the images and
/// mounts them, instead of making filesystems and copying the cluster in.
public actor ReadyPool {
    private let layout: FleetLayout
    /// `ROOT/pool` (or `ROOT/pool-disks`): one directory per bundle.
    private let directory: String
    private let withDisks: Bool
    private let catalog: Catalog
    private let bundles: BundleStore
    /// Root: entries belong to the pool's own OS user until claimed. Otherwise to the daemon's user.
    private let isolated: Bool
    private let userPrefix: String
    private let daemonUser: String
    private let logger: Logger
    private var state: ReadyPoolState
    private var createsInProgress = 0
    private var lastCreateFinished: ContinuousClock.Instant?
    private var poolUser: Task<UserIdentity, any Error>?
    /// The pool whose OS user this one's entries belong to too (one user per daemon root).
    private let userSource: ReadyPool?
    private let clock = ContinuousClock()
    private let epoch = ContinuousClock.now
    /// The refill loop, asleep until something calls for a build.
    private var sleeper: CheckedContinuation<Void, Never>?
    private var nudged = false

    public init(
        size: Int, layout: FleetLayout, catalog: Catalog, bundles: BundleStore, isolated: Bool, userPrefix: String,
        daemonUser: String, logger: Logger, withDisks: Bool = false, sharingUserWith userSource: ReadyPool? = nil
    ) {
        self.userSource = userSource
        self.state = ReadyPoolState(size: size)
        self.layout = layout
        self.withDisks = withDisks
        self.directory = withDisks ? layout.root + "/pool-disks" : layout.poolDirectory
        self.catalog = catalog
        self.bundles = bundles
        self.isolated = isolated
        self.userPrefix = userPrefix
        self.daemonUser = daemonUser
        self.logger = logger
    }

    public var size: Int { state.size }

    private var now: Duration { clock.now - epoch }

    // MARK: Claims

    /// Moves a ready entry of `bundle` to `destination` (which must not exist), or returns false
    /// when there is none. The caller owns the directory from then on.
    func claim(bundle: String, into destination: String) -> Bool {
        while let entry = state.claim(bundle: bundle) {
            let path = directory(bundle: bundle) + "/" + entry
            if rename(path, destination) == 0 {
                Counter(label: "pgfleet_pool_claims_total", dimensions: [("result", "claimed")]).increment()
                recordMetrics()
                poke()
                return true
            }
            logger.warning("could not claim a pool entry; discarding it", metadata: [
                "entry": "\(path)", "error": "\(String(cString: strerror(errno)))",
            ])
            try? Files.removeTree(path)
        }
        if state.size > 0 {
            Counter(label: "pgfleet_pool_claims_total", dimensions: [("result", "empty")]).increment()
        }
        return false
    }

    /// While any tenant is being created the pool builds nothing: the create has the machine.
    func createStarted() { createsInProgress += 1 }

    func createFinished() {
        createsInProgress -= 1
        lastCreateFinished = clock.now
        poke()
    }

    /// After a create the pool waits this long before it builds: the new tenant's first
    /// connections (a backend start each) should not wait behind an initdb's file writes.
    static let settleAfterCreate: Duration = .seconds(1)

    /// Something changed that may call for a build: a bundle was imported, say.
    public nonisolated func wake() {
        Task { await self.poke() }
    }

    private func poke() {
        if let sleeper {
            self.sleeper = nil
            sleeper.resume()
        } else {
            nudged = true
        }
    }

    /// Returns at the next `poke`, after `timeout`, or when the task is cancelled.
    private func sleep(upTo timeout: Duration) async {
        if nudged {
            nudged = false
            return
        }
        let timer = Task { [weak self] in
            try? await Task.sleep(for: timeout)
            await self?.poke()
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                if Task.isCancelled { continuation.resume() } else { sleeper = continuation }
            }
        } onCancel: {
            Task { await self.poke() }
        }
        timer.cancel()
        nudged = false
    }

    public func status() -> [PoolStatus] {
        state.status(bundles: ((try? catalog.bundles()) ?? []).map(\.id))
    }

    // MARK: Refill

    /// Removes what a crash left half-made and the entries of bundles that are gone, then keeps
    /// every bundle's pool topped up until cancelled (the daemon's graceful shutdown). An initdb
    /// under way when cancelled gets SIGTERM; its directory is removed at the next start.
    public func run() async {
        await prepare()
        guard state.size > 0 else { return }
        while !Task.isCancelled {
            let known = ((try? catalog.bundles()) ?? []).map(\.id)
            removeGone(keeping: Set(known))
            // Not for a bundle whose verification refuses it (its ready clusters stay until it is removed).
            let bundleIDs = known.filter { id in (try? bundles.load(id: id)).map { BundleVerification.refusal($0.manifest) == nil } ?? true }
            if let last = lastCreateFinished, clock.now - last < Self.settleAfterCreate {
                await sleep(upTo: Self.settleAfterCreate - (clock.now - last))
                continue
            }
            if let bundle = state.nextBuild(bundles: bundleIDs, createsInProgress: createsInProgress, now: now) {
                await build(bundle: bundle)
                continue
            }
            // Until a claim, a finished create or a new bundle; at least every few seconds, for
            // retries after a failure.
            await sleep(upTo: .seconds(5))
        }
    }

    private func build(bundle bundleID: String) async {
        state.buildStarted(bundle: bundleID)
        recordMetrics()
        let directory = directory(bundle: bundleID)
        let token = PoolEntryName.token()
        let building = directory + "/" + PoolEntryName.building(token)
        let started = clock.now
        var entry: String?
        do {
            let bundle = try bundles.load(id: bundleID)
            let owner = try await ownerOfEntries()
            try Files.makeDirectory(self.directory, mode: 0o711)
            try Files.makeDirectory(directory, mode: 0o700, owner: owner)
            if withDisks {
                try await buildInDisk(bundle: bundle, entry: building, owner: owner)
            } else {
                try await NewCluster.make(bundle: bundle, dataDirectory: building, owner: owner, daemonUser: daemonUser, background: true)
            }
            let ready = PoolEntryName.ready(token)
            guard rename(building, directory + "/" + ready) == 0 else {
                throw FleetError.failed("rename \(building): \(String(cString: strerror(errno)))")
            }
            entry = ready
            logger.info("ready pool: cluster initialised", metadata: [
                "bundle": "\(bundleID)", "entry": "\(ready)", "took": "\(clock.now - started)",
            ])
        } catch {
            // Not cancelled with the build: the entry's filesystems must be unmounted before its
            // files go, and a shutdown is what cancels a build. What is still mounted stays for
            // the next start's `prepare`.
            if withDisks, !(await Task.detached { await Self.removeDiskEntry(building) }.value) {
                logger.warning("ready pool: a half-made disk entry is still mounted; it is removed at the next start", metadata: ["entry": "\(building)"])
            } else {
                try? Files.removeTree(building)
            }
            if !Task.isCancelled {
                logger.warning("ready pool: could not initialise a cluster; trying again later", metadata: [
                    "bundle": "\(bundleID)", "error": "\(error)", "retry in": "\(ReadyPoolState.retryDelay)",
                ])
            }
        }
        state.buildFinished(bundle: bundleID, entry: entry, now: now)
        recordMetrics()
    }

    /// The name of the tenant a disk entry's layout knows (its paths are relative to the entry).
    static let diskEntryTenant = try! TenantName(validating: "ready")
    /// The quota an entry is made with; the claim sets the tenant's own (the images are sized to grow).
    static let diskEntryBytes: UInt64 = 1 << 30

    /// A cluster inside a disk's images, laid out as a tenant's (`entry/disks/ready/*.img`, made
    /// under `entry/tenants/ready`), left unmounted.
    private func buildInDisk(bundle: FleetBundles.Bundle, entry: String, owner: UserIdentity?) async throws {
        guard let owner else { throw FleetError.failed("a disk entry of the ready pool needs root") }
        let entryLayout = FleetLayout(root: entry)
        let disk = LoopImageDisk(layout: entryLayout)
        let name = Self.diskEntryTenant
        try Files.makeDirectory(entry, mode: 0o711)
        try Files.makeDirectory(entryLayout.tenantsDirectory, mode: 0o711)
        try await disk.create(name, areas: try Fleet.diskPlan(Self.diskEntryBytes).areas, owner: owner)
        let staging = disk.paths.stagingDirectory(name)
        try await NewCluster.make(bundle: bundle, dataDirectory: staging, owner: owner, daemonUser: daemonUser, background: true)
        try await disk.adopt(name, cluster: staging)
        try await disk.unmount(name)
    }

    /// Unmounts what a disk entry's build left mounted (its loop devices detach with it); false
    /// when something under it is still mounted.
    static func removeDiskEntry(_ entry: String) async -> Bool {
        try? await LoopImageDisk(layout: FleetLayout(root: entry)).unmount(diskEntryTenant)
        return !(MountTable.read()?.mounts ?? []).contains { $0.mountPoint.hasPrefix(entry + "/") }
    }

    /// The images of a claimed disk entry, to be moved to the tenant's disk directory.
    static func diskImages(ofClaimed entry: String) -> String {
        DiskPaths(layout: FleetLayout(root: entry)).directory(diskEntryTenant)
    }

    private func directory(bundle: String) -> String { directory + "/" + bundle }

    /// The pool's OS user (root), made on first use, once even when several builds (of this pool
    /// and of the pool that shares its user) ask at the same time; nil (the daemon's user) otherwise.
    func ownerOfEntries() async throws -> UserIdentity? {
        guard isolated else { return nil }
        if let userSource { return try await userSource.ownerOfEntries() }
        let making = poolUser ?? Task { [userPrefix, layout] in
            try await OSUsers.ensurePoolUser(OSUsers.poolUserName(prefix: userPrefix), root: layout.root)
        }
        poolUser = making
        do {
            return try await making.value
        } catch {
            poolUser = nil
            throw error
        }
    }

    // MARK: Start-up and removed bundles

    /// Finds the ready entries an earlier daemon left, and removes everything else under the pool.
    private func prepare() async {
        let known = Set(((try? catalog.bundles()) ?? []).map(\.id))
        let fm = FileManager.default
        guard let bundleDirs = try? fm.contentsOfDirectory(atPath: self.directory) else { return }
        for bundleID in bundleDirs.sorted() {
            let directory = directory(bundle: bundleID)
            guard known.contains(bundleID), state.size > 0 else {
                logger.info("ready pool: removing the entries of a removed bundle (or of a disabled pool)", metadata: ["path": "\(directory)"])
                try? Files.removeTree(directory)
                continue
            }
            var ready: [String] = []
            for name in ((try? fm.contentsOfDirectory(atPath: directory)) ?? []).sorted() {
                if PoolEntryName.isReady(name) {
                    ready.append(name)
                } else {
                    logger.info("ready pool: removing a half-made entry", metadata: ["path": "\(directory)/\(name)"])
                    if withDisks, !(await Self.removeDiskEntry(directory + "/" + name)) {
                        logger.error("ready pool: cannot unmount a half-made disk entry; unmount it by hand", metadata: ["path": "\(directory)/\(name)"])
                        continue
                    }
                    try? Files.removeTree(directory + "/" + name)
                }
            }
            // Beyond the size (it was lowered): the extra entries go.
            for extra in ready.dropFirst(state.size) { try? Files.removeTree(directory + "/" + extra) }
            state.found(bundle: bundleID, entries: Array(ready.prefix(state.size)))
        }
        recordMetrics()
    }

    private func removeGone(keeping bundleIDs: Set<String>) {
        for (bundleID, _) in state.keepOnly(bundles: bundleIDs) {
            logger.info("ready pool: removing the entries of a removed bundle", metadata: ["bundle": "\(bundleID)"])
            try? Files.removeTree(directory(bundle: bundleID))
        }
    }

    private func recordMetrics() {
        let prefix = withDisks ? "pgfleet_pool_disks" : "pgfleet_pool"
        Gauge(label: prefix + "_size").record(state.size)
        for status in status() {
            Gauge(label: prefix + "_ready", dimensions: [("bundle", status.bundle)]).record(status.ready)
        }
    }
}
