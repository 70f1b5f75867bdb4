import FleetBundles
import FleetCatalog
import FleetCore
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
public actor ReadyPool {
    private let layout: FleetLayout
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
    private var poolUser: UserIdentity?
    private let clock = ContinuousClock()
    private let epoch = ContinuousClock.now
    /// The refill loop, asleep until something calls for a build.
    private var sleeper: CheckedContinuation<Void, Never>?
    private var nudged = false

    public init(
        size: Int, layout: FleetLayout, catalog: Catalog, bundles: BundleStore, isolated: Bool, userPrefix: String,
        daemonUser: String, logger: Logger
    ) {
        self.state = ReadyPoolState(size: size)
        self.layout = layout
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
            let path = layout.poolDirectory(bundle: bundle) + "/" + entry
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
        prepare()
        guard state.size > 0 else { return }
        while !Task.isCancelled {
            let bundleIDs = ((try? catalog.bundles()) ?? []).map(\.id)
            removeGone(keeping: Set(bundleIDs))
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
        let directory = layout.poolDirectory(bundle: bundleID)
        let token = PoolEntryName.token()
        let building = directory + "/" + PoolEntryName.building(token)
        let started = clock.now
        var entry: String?
        do {
            let bundle = try bundles.load(id: bundleID)
            let owner = try await ownerOfEntries()
            try Files.makeDirectory(layout.poolDirectory, mode: 0o711)
            try Files.makeDirectory(directory, mode: 0o700, owner: owner)
            try await NewCluster.make(bundle: bundle, dataDirectory: building, owner: owner, daemonUser: daemonUser, background: true)
            let ready = PoolEntryName.ready(token)
            guard rename(building, directory + "/" + ready) == 0 else {
                throw FleetError.failed("rename \(building): \(String(cString: strerror(errno)))")
            }
            entry = ready
            logger.info("ready pool: cluster initialised", metadata: [
                "bundle": "\(bundleID)", "entry": "\(ready)", "took": "\(clock.now - started)",
            ])
        } catch {
            try? Files.removeTree(building)
            if !Task.isCancelled {
                logger.warning("ready pool: could not initialise a cluster; trying again later", metadata: [
                    "bundle": "\(bundleID)", "error": "\(error)", "retry in": "\(ReadyPoolState.retryDelay)",
                ])
            }
        }
        state.buildFinished(bundle: bundleID, entry: entry, now: now)
        recordMetrics()
    }

    /// The pool's OS user (root), made on first use; nil (the daemon's user) otherwise.
    private func ownerOfEntries() async throws -> UserIdentity? {
        guard isolated else { return nil }
        if let poolUser { return poolUser }
        let user = try await OSUsers.ensurePoolUser(OSUsers.poolUserName(prefix: userPrefix), root: layout.root)
        poolUser = user
        return user
    }

    // MARK: Start-up and removed bundles

    /// Finds the ready entries an earlier daemon left, and removes everything else under the pool.
    private func prepare() {
        let known = Set(((try? catalog.bundles()) ?? []).map(\.id))
        let fm = FileManager.default
        guard let bundleDirs = try? fm.contentsOfDirectory(atPath: layout.poolDirectory) else { return }
        for bundleID in bundleDirs.sorted() {
            let directory = layout.poolDirectory(bundle: bundleID)
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
            try? Files.removeTree(layout.poolDirectory(bundle: bundleID))
        }
    }

    private func recordMetrics() {
        Gauge(label: "pgfleet_pool_size").record(state.size)
        for status in status() {
            Gauge(label: "pgfleet_pool_ready", dimensions: [("bundle", status.bundle)]).record(status.ready)
        }
    }
}
