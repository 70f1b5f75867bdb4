import FleetBundles
import FleetCatalog
import FleetCore
import FleetHost
import FleetSystem
import Foundation
import Logging
import Synchronization

extension Fleet {
    public func createTenant(_ request: CreateTenantRequest, progress: @escaping ProgressReporter) async throws -> (TenantInfo, String?) {
        let spec = try request.validated(spelling: .json)
        let bundleRecord = try chooseBundle(spec.bundle)
        let bundle = try loadBundle(id: bundleRecord.id)
        if let refusal = BundleVerification.refusal(bundle.manifest) { throw FleetError.conflict(refusal) }

        await pool.createStarted()
        await diskPool.createStarted()
        do {
            var resolved = spec
            resolved.bundle = .id(bundleRecord.id)
            // In its turn: a create queued behind another of the same name finds it exists.
            let result = try await operations.run(spec.name, .create) {
                try await provision(spec: resolved, password: request.password, bundleRecord: bundleRecord, bundle: bundle, progress: progress)
            }
            await pool.createFinished()
            await diskPool.createFinished()
            return result
        } catch {
            await pool.createFinished()
            await diskPool.createFinished()
            throw error
        }
    }

    private func provision(
        spec: TenantSpec, password requested: String?, bundleRecord: BundleRecord, bundle: FleetBundles.Bundle,
        progress: @escaping ProgressReporter
    ) async throws -> (TenantInfo, String?) {
        let name = spec.name
        if try catalog.tenant(named: name.rawValue) != nil { throw FleetError.tenantExists(name.rawValue) }
        // Limits a new cluster's settings cannot live with are refused before anything is made.
        let limits = spec.limits.filled(from: options.defaultLimits)
        let settings = ClusterConfig.newTenantMemorySettings(major: bundleRecord.major)
        var notes = try checkFit(limits, settings: settings)
        // `--huge-pages on` the host cannot give is refused before anything is made, with an
        // estimate of the pages (the start computes them exactly and refuses again if need be).
        if limits.hugePages == .on {
            _ = try await Self.decideHugePages(
                mode: .on, name: name, host: HugePageHost(), cgroups: cgroupsReady ? options.cgroups : nil, ledger: hugePages,
                managesPool: options.managesHugePagePool, board: board
            ) {
                let pageBytes = HugePageHost().defaultPageBytes ?? (2 << 20)
                let bytes = LimitFit.sharedMemory(settings) + (ByteSize.parse(Self.hugePageDynamicSharedMemory) ?? 0)
                return Int((bytes + pageBytes - 1) / pageBytes)
            }
        }
        // A disk quota that cannot hold a cluster is refused here too, with the arithmetic.
        var diskPlan: DiskPlan? = nil
        if let bytes = limits.diskBytes {
            if options.disk != nil && options.isolated {
                let plan = try Self.diskPlan(bytes)
                diskPlan = plan
                notes += plan.adjustments
            } else {
                notes.append("--disk is stored but not enforced: the daemon is not root, so it makes no disk quotas")
            }
        }
        for note in notes { await progress(.progress("note: \(note)")) }
        let generated = requested == nil ? Self.generatePassword() : nil
        let password = requested ?? generated!
        let layout = options.layout
        let osUserName = options.isolated ? OSUsers.userName(prefix: options.userPrefix, tenant: name) : daemonUser.name

        var claimed = false
        var configurationFiles: [String] = []
        var phases = PhaseClock()
        // A marker first, then the catalog row: the row reserves the name, and a create that
        // dies half-way (the daemon killed) leaves a row that `tenant drop` can clean up, which
        // the marker tells the next daemon not to start (`resumeTenants`).
        let marker = layout.creationMarker(name)
        try Files.makeDirectory(layout.tenantsDirectory, mode: 0o711)
        try Files.write("", to: marker, mode: 0o600, owner: nil, sync: false)
        var markerStays = false
        defer { if !markerStays { try? FileManager.default.removeItem(atPath: marker) } }
        // What was made, each with its undo: a failed create undoes exactly that, newest first.
        var steps = UndoableSteps<CreationLeftovers>()
        let initial = try TenantRecord(
            spec: spec, osUser: osUserName, uid: Int(daemonUser.uid), gid: Int(daemonUser.gid), directory: layout.tenantDirectory(name),
            dataDirectory: layout.dataDirectory(name), socketDirectory: layout.socketDirectory(name),
            logFile: layout.tenantLogFile(name), port: FleetLayout.tenantPort, desiredState: .stopped, createdAt: Date()
        )
        var record = try await steps.run("catalog row") { [catalog] in try catalog.insertTenant(initial) } undo: { [catalog] _, _ in
            try? catalog.deleteTenant(named: name.rawValue)
        }
        phases.mark("catalog row")
        // The password's SCRAM verifier (4,096 PBKDF2 rounds) is computed while the cluster is claimed and started.
        let verifierTask = Task.detached { try ScramVerifierMaker.make(password: password) }
        // The tenant's OS user, when isolated: its id is chosen here, so that a claimed cluster
        // can be given to it and started while useradd runs (about 30 ms, mostly fsyncs of
        // /etc/passwd and friends). A fresh initdb waits for the user: initdb looks itself up.
        // useradd is never cancelled (an interrupted one could leave /etc/passwd locked), and a
        // failure waits for it before cleaning up.
        var userCreation: Task<UserIdentity, any Error>? = nil
        var plannedOwner: UserIdentity? = nil
        var promisedID: Int? = nil
        defer { if let promisedID { promisedUserIDs.remove(promisedID) } }
        // Whether useradd failed: then the id went to someone else's user, whose processes are not ours to kill.
        var userFailed = false
        // The OS user, directories, cluster and configuration: one tree and one user, removed
        // together with the uid the tenant had by then.
        steps.record("tenant files and OS user") { leftovers in
            var record = leftovers.record
            if leftovers.userFailed { record.uid = Int(self.daemonUser.uid) }
            try? await self.removeTenantFiles(record: record, name: name)
        }
        do {
            if options.isolated {
                if let leftover = try OSUsers.leftoverTenantUser(osUserName, tenant: name, root: layout.root) {
                    plannedOwner = leftover
                } else {
                    guard let id = OSUsers.freeTenantID(excluding: promisedUserIDs) else {
                        throw FleetError.failed(
                            "no free OS user id found in pgfleet's range \(OSUsers.tenantIDs) after 1,000 tries; remove the OS users left there by tenants that no longer exist"
                        )
                    }
                    promisedID = id
                    promisedUserIDs.insert(id)
                    plannedOwner = UserIdentity(name: osUserName, uid: uid_t(id), gid: gid_t(id))
                    await progress(.progress("creating OS user \(osUserName)"))
                    let (home, root) = (record.directory, layout.root)
                    userCreation = Task { try await OSUsers.createTenantUser(osUserName, tenant: name, root: root, home: home, id: id) }
                }
            } else {
                await progress(.progress("not running as root: the tenant runs as \(daemonUser.name) and is not isolated from other tenants"))
            }
            do {
                // The daemon's own, private (0700) until they are all given to the tenant's user.
                try Files.makeDirectory(record.directory, mode: 0o700)
                // With a quota the cluster is made (or claimed) beside the tenant's directory and
                // then moved into its areas: the tenant's directory is the system area's mount point.
                var cluster = record.dataDirectory
                // A cluster claimed already inside its disk's images: nothing to make or move.
                var inDisk = false
                if let diskPlan, let disk = options.disk, let owner = plannedOwner {
                    let staging = layout.tenantsDirectory + "/." + name.rawValue + ".cluster"
                    cluster = staging
                    steps.record("disk") { _ in
                        try? await disk.remove(name)
                        try? Files.removeTree(staging)
                    }
                    if diskPlan.areas.dataBytes <= Self.largestPooledDataArea, await diskPool.claim(bundle: bundleRecord.id, into: staging) {
                        await progress(.progress("claimed a ready PostgreSQL \(bundleRecord.version) cluster in its own disk images from the pool"))
                        try Files.makeDirectory(diskPaths.disksDirectory, mode: 0o700)
                        let images = ReadyPool.diskImages(ofClaimed: staging)
                        guard rename(images, diskPaths.directory(name)) == 0 else {
                            throw FleetError.failed("rename \(images) to \(diskPaths.directory(name)): \(String(cString: strerror(errno)))")
                        }
                        try Files.removeTree(staging)
                        try await disk.ensureMounted(name)
                        try await disk.resize(name, areas: diskPlan.areas)
                        inDisk = true
                        claimed = true
                    } else {
                        await progress(.progress("making its disk quota of \(ByteSize.format(diskPlan.diskBytes)) (system, data, WAL and log areas)"))
                        try await disk.create(name, areas: diskPlan.areas, owner: owner)
                    }
                    phases.mark("disk")
                }
                try Files.makeDirectory(record.socketDirectory, mode: 0o700)
                try Files.makeDirectory(layout.tenantLogDirectory(name), mode: 0o700)

                if !inDisk { claimed = await pool.claim(bundle: bundleRecord.id, into: cluster) }
                phases.mark("claim")
                if claimed {
                    if !inDisk {
                        await progress(.progress("claimed a ready PostgreSQL \(bundleRecord.version) cluster from the pool"))
                        try Files.setMode(cluster, 0o700)
                        try await moveIntoDisk(cluster, name: name, plan: diskPlan, progress: progress)
                    }
                    await progress(.progress("configuring"))
                    configurationFiles = try writeConfiguration(name: name, record: record, owner: nil)
                    if let diskPlan { try writeDiskSettings(diskPlan, dataDirectory: record.dataDirectory, owner: nil) }
                    phases.mark("configuration")
                    // The pool's user made the cluster; from now on all of it is the tenant's alone
                    // (but for each disk area's root-owned reserve: the cluster's files, not the tree).
                    if let plannedOwner {
                        if diskPlan != nil {
                            for area in DiskArea.allCases { try Files.setOwner(diskPaths.mountPoint(name, area), plannedOwner) }
                            for tree in [record.dataDirectory, diskPaths.walDirectory(name)] { try Files.setOwnerRecursively(tree, plannedOwner) }
                            try Files.setOwner(record.socketDirectory, plannedOwner)
                        } else {
                            try Files.setOwnerRecursively(record.directory, plannedOwner)
                        }
                    }
                    phases.mark("chown")
                } else {
                    let owner = try await userCreation?.value ?? plannedOwner
                    if let owner {
                        for directory in [record.directory, record.socketDirectory, layout.tenantLogDirectory(name)] {
                            try Files.setOwner(directory, owner)
                        }
                    }
                    await progress(.progress(
                        await pool.size > 0
                            ? "initialising a new PostgreSQL \(bundleRecord.version) cluster (the ready pool is empty)"
                            : "initialising a new PostgreSQL \(bundleRecord.version) cluster (initdb)"
                    ))
                    if cluster != record.dataDirectory { try Files.makeDirectory(cluster, mode: 0o700, owner: owner) }
                    try await NewCluster.make(
                        bundle: bundle, dataDirectory: cluster, owner: plannedOwner, daemonUser: daemonUser.name, background: false
                    )
                    try Files.setMode(cluster, 0o700)
                    try await moveIntoDisk(cluster, name: name, plan: diskPlan, progress: progress)
                    await progress(.progress("configuring"))
                    configurationFiles = try writeConfiguration(name: name, record: record, owner: plannedOwner)
                    if let diskPlan { try writeDiskSettings(diskPlan, dataDirectory: record.dataDirectory, owner: plannedOwner) }
                }
            } catch {
                _ = try? await userCreation?.value
                throw error
            }
            if let plannedOwner {
                record.uid = Int(plannedOwner.uid)
                record.gid = Int(plannedOwner.gid)
                try catalog.updateTenant(record)
            }
            phases.mark("catalog update")
        } catch {
            logger.error("tenant creation failed; cleaning up", metadata: ["tenant": "\(name)", "error": "\(error)"])
            await progress(.progress("creation failed; removing what was created"))
            await steps.undoAll(CreationLeftovers(record: record, userFailed: userFailed))
            throw error
        }

        await progress(.progress("starting"))
        try catalog.setDesiredState(.running, forTenant: name.rawValue)
        let supervisor = try supervisor(for: record, name: name)
        steps.record("supervisor") { _ in
            await supervisor.stop()
            self.supervisors[name] = nil
            self.board.remove(name)
        }
        phases.mark("catalog desired state")
        let clock = ContinuousClock()
        let startedAt = clock.now
        // The configuration (and the creation marker) reaches the disk while the postmaster
        // starts (it only reads it).
        let files = configurationFiles + [marker]
        let configurationSync = Task.detached { try Files.sync(files) }
        // The supervisor starts the postmaster and probes it until it answers; meanwhile useradd
        // and the sync finish, and the superuser is set as soon as the server answers (see
        // `personaliseWhenReady`), beside the probe rather than after it.
        let starting = Task { await supervisor.start() }
        let startFinished = DoneFlag()
        Task.detached { _ = await starting.value; startFinished.set() }
        // Before anyone can log in: the user exists (it owns the files already) and the
        // configuration is on disk.
        var setupError: (any Error)? = nil
        do { _ = try await userCreation?.value } catch {
            setupError = error
            userFailed = true
        }
        do { try await configurationSync.value } catch { setupError = setupError ?? error }
        phases.mark("useradd and sync")
        var personaliseError: (any Error)? = nil
        if setupError == nil {
            personaliseError = await personaliseWhenReady(record: record, verifier: verifierTask, startFinished: startFinished)
        }
        let snapshot = await starting.value
        let runningAt = clock.now
        if snapshot.state != .running, setupError == nil {
            // Its superuser was never set up: it stays marked, so that it is not started as if it were usable.
            markerStays = true
            throw FleetError.failed(
                "tenant \(name) was created but did not start: \(snapshot.failureReason ?? "state \(snapshot.state.rawValue)")\n"
                    + "Its superuser was never set up, so nobody can log in to it. See `pgfleet tenant logs \(name)`; drop it with `pgfleet tenant drop \(name) --yes` and create it again."
            )
        }
        do {
            if let setupError { throw setupError }
            if let personaliseError { throw personaliseError }
        } catch {
            // Nobody can log in to it: remove it, as any other failed create.
            logger.error("tenant creation failed; cleaning up", metadata: ["tenant": "\(name)", "error": "\(error)"])
            await progress(.progress("creation failed; removing what was created"))
            await steps.undoAll(CreationLeftovers(record: record, userFailed: userFailed))
            await updateMetrics()
            throw error
        }
        if let socketPath = running.socketPath(of: name) { proxyPrepare?(name, socketPath) }
        logger.info("tenant created", metadata: [
            "tenant": "\(name)", "bundle": "\(bundleRecord.id)", "cluster": "\(claimed ? "claimed from the pool" : "initialised")",
            "running and personalised": "\(Self.milliseconds(runningAt - startedAt))",
            "phases": "\(phases.summary)",
        ])
        return (await info(forName: name), generated)
    }

    public func dropTenant(_ name: TenantName, progress: @escaping ProgressReporter) async throws {
        await cutShortStart(name)
        try await operations.run(name, .drop) { try await dropInTurn(name, progress: progress) }
    }

    private func dropInTurn(_ name: TenantName, progress: @escaping ProgressReporter) async throws {
        let record = try existing(name)
        if let supervisor = supervisors[name] {
            await progress(.progress("stopping"))
            await supervisor.stop()
        } else if let running = runningPostmaster(of: record, name: name) {
            // Not supervised (its bundle is gone): stop the postmaster ourselves.
            await progress(.progress("stopping unsupervised postmaster \(running.pid)"))
            kill(running.pid, SIGINT)
            _ = await ProcessWatcher.shared.waitForExit(pid: running.pid, isChild: false)
        }
        supervisors[name] = nil
        board.remove(name)
        removeCgroups(of: name)
        removeSandboxDirectory(name)
        if hasDisk(name) {
            await progress(.progress("removing its disk areas"))
            try await removeDisk(of: name)
        }
        await progress(.progress("removing \(record.directory)"))
        try await removeTenantFiles(record: record, name: name)
        try catalog.deleteTenant(named: name.rawValue)
        await updateMetrics()
        logger.info("tenant dropped", metadata: ["tenant": "\(name)"])
    }

    private func info(forName name: TenantName) async -> TenantInfo {
        (try? await tenantInfo(name)) ?? TenantInfo(
            name: name.rawValue, version: "?", major: 0, bundle: "?", state: .stopped, desiredState: .stopped, pid: nil,
            superuser: "?", osUser: "?", socketDirectory: "", port: 0, dataDirectory: "", logFile: "", createdAt: Date(),
            runningSince: nil, restarts: 0, failureReason: nil
        )
    }

    private func chooseBundle(_ choice: TenantSpec.BundleChoice) throws -> BundleRecord {
        if case .id(let id) = choice {
            guard let found = try catalog.bundle(id: id) else { throw FleetError.bundleNotFound(id) }
            return found
        }
        let all = try catalog.bundles()
        if case .major(let major) = choice {
            guard (14...18).contains(major) || all.contains(where: { $0.major == major }) else {
                throw FleetError.invalidRequest("PostgreSQL \(major) is not supported; pgfleet supports majors 14 to 18")
            }
            // That major's default (`bundle default`), else its newest build.
            let candidates = all.filter { $0.major == major }
            guard let best = candidates.first(where: \.isMajorDefault) ?? candidates.max(by: { Self.versionLess($0.version, $1.version) }) else {
                throw FleetError.noBundle(major: major)
            }
            return best
        }
        guard let fallback = try catalog.defaultBundle() ?? all.last else { throw FleetError.noBundle(major: nil) }
        return fallback
    }

    static func versionLess(_ a: String, _ b: String) -> Bool {
        let left = a.split(separator: ".").compactMap { Int($0) }
        let right = b.split(separator: ".").compactMap { Int($0) }
        return left.lexicographicallyPrecedes(right)
    }

    /// Gives a new cluster its tenant's superuser: renamed from the one initdb made, with the
    /// password as a SCRAM verifier computed here; then the daemon's role is no longer a
    /// superuser. Until this ran nobody could log in with a password, so the proxy routing to
    /// the tenant a moment early lets nobody in. Tried as soon as the server answers, while its
    /// supervisor still probes it: attempts that fail before the statement reached the server
    /// (no socket yet, "the database system is starting up") are repeated every 5 ms until the
    /// start is over; one that reached it is never repeated.
    private func personaliseWhenReady(
        record: TenantRecord, verifier: Task<String, any Error>, startFinished: DoneFlag
    ) async -> (any Error)? {
        let sql: String
        do { sql = ClusterConfig.personaliseSQL(superuser: record.superuser, verifier: try await verifier.value) } catch { return error }
        while true {
            let finished = startFinished.value
            let (problem, sent) = await probe.executeTracked(sql, socketDirectory: record.socketDirectory)
            guard let problem else { return nil }
            if sent || finished { return FleetError.failed("setting up the superuser \(record.superuser) failed: \(problem)") }
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Writes a new cluster's configuration without waiting for the disk; returns the files
    /// written, which the caller syncs together (`Files.sync`) while the postmaster starts.
    private func writeConfiguration(name: TenantName, record: TenantRecord, owner: UserIdentity?) throws -> [String] {
        let sync = false
        let data = record.dataDirectory
        let files = [ClusterConfig.includeFile, "pg_hba.conf", "pg_ident.conf", "postgresql.conf", ClusterConfig.settingsFile].map { data + "/" + $0 }
        try Files.write(ClusterConfig.settings(name: name, socketDirectory: record.socketDirectory), to: files[0], mode: 0o600, owner: owner, sync: sync)
        // Written again although the new cluster has them: a pooled one may predate a change of the daemon's user.
        try Files.write(ClusterConfig.hba(), to: files[1], mode: 0o600, owner: owner, sync: sync)
        try Files.write(ClusterConfig.ident(daemonUser: daemonUser.name), to: files[2], mode: 0o600, owner: owner, sync: sync)
        try appendToPostgresqlConf(
            "include '\(ClusterConfig.includeFile)'", comment: "Added by pgfleet; keep it last so pgfleet's settings apply.",
            dataDirectory: data, owner: owner, sync: sync
        )
        try ensureSettingsInclude(dataDirectory: data, owner: owner, sync: sync)
        return files
    }

    /// Appends `directive` to postgresql.conf unless it is there already.
    func appendToPostgresqlConf(_ directive: String, comment: String, dataDirectory: String, owner: UserIdentity?, sync: Bool = true) throws {
        let confPath = dataDirectory + "/postgresql.conf"
        var conf = (try? String(contentsOfFile: confPath, encoding: .utf8)) ?? ""
        guard !conf.contains(directive) else { return }
        conf += "\n# \(comment)\n\(directive)\n"
        try Files.write(conf, to: confPath, mode: 0o600, owner: owner, sync: sync)
    }

    /// The ready pool's disk images hold a data area of up to this without growing their
    /// filesystem (which needs CAP_SYS_RESOURCE); larger quotas make their own.
    static let largestPooledDataArea: UInt64 = 4 << 30

    /// With a quota: the cluster made beside the tenant's directory moves into its areas.
    private func moveIntoDisk(_ cluster: String, name: TenantName, plan: DiskPlan?, progress: ProgressReporter) async throws {
        guard plan != nil, let disk = options.disk else { return }
        await progress(.progress("moving the cluster into its disk areas"))
        try await disk.adopt(name, cluster: cluster)
    }

    private func removeTenantFiles(record: TenantRecord, name: TenantName) async throws {
        try Files.removeTree(record.directory)
        try? FileManager.default.removeItem(atPath: options.layout.creationMarker(name))
        if options.isolated {
            let leftovers = ProcFS.processes(ofUID: uid_t(record.uid))
            if record.uid != 0, !leftovers.isEmpty {
                for pid in leftovers { kill(pid, SIGKILL) }
                try? await Task.sleep(for: .milliseconds(200))
            }
            try await OSUsers.removeTenantUser(record.osUser, tenant: name, root: options.layout.root)
        }
    }

    static func milliseconds(_ duration: Duration) -> String {
        String(format: "%.1f ms", Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15)
    }

    static func generatePassword() -> String {
        let alphabet = Array("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789")
        var generator = SystemRandomNumberGenerator()
        return String((0..<24).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &generator)] })
    }
}

/// What a failed create's undos need to know beyond what each step knew when it ran.
struct CreationLeftovers: Sendable {
    /// The row as it is now (its uid is the tenant user's once that was chosen).
    var record: TenantRecord
    /// Whether useradd failed.
    var userFailed: Bool
}

/// Wall-clock marks of a long operation, for its log line: "claim 1.2 ms, chown 3.4 ms, ...".
struct PhaseClock {
    private let clock = ContinuousClock()
    private var last: ContinuousClock.Instant
    private var marks: [(String, Duration)] = []

    init() { last = clock.now }

    mutating func mark(_ phase: String) {
        let now = clock.now
        marks.append((phase, now - last))
        last = now
    }

    var summary: String {
        marks.map { "\($0.0) \(Fleet.milliseconds($0.1))" }.joined(separator: ", ")
    }
}

/// Set once, read from anywhere (a start that finished, a query that went out).
final class DoneFlag: Sendable {
    private let done = Mutex(false)
    func set() { done.withLock { $0 = true } }
    var value: Bool { done.withLock { $0 } }
}
