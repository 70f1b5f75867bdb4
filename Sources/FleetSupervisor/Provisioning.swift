import FleetBundles
import FleetCatalog
import FleetCore
import CFleetSys
import FleetSystem
import Foundation
import Logging

extension Fleet {
    public func createTenant(_ request: CreateTenantRequest, progress: @escaping ProgressReporter) async throws -> (TenantInfo, String?) {
        let name = try TenantName(validating: request.name)
        let superuser = request.superuser ?? "postgres"
        if let problem = RoleName.problem(with: superuser) {
            throw FleetError.invalidRequest("invalid superuser name \"\(superuser.debugClipped)\": \(problem)")
        }
        if let password = request.password {
            if password.isEmpty { throw FleetError.invalidRequest("the password is empty; omit --password to have one generated") }
            if password.utf8.contains(0) || password.contains("\n") || password.contains("\r") {
                throw FleetError.invalidRequest("the password contains a NUL or line break, which PostgreSQL cannot store")
            }
            if password.utf8.count > 1000 { throw FleetError.invalidRequest("the password is longer than 1000 bytes") }
        }
        if let after = request.suspendAfter, after < 0 {
            throw FleetError.invalidRequest("suspend-after must be 0 (never) or a positive number of seconds")
        }
        let bundleRecord = try chooseBundle(id: request.bundle, major: request.pg)
        let bundle = try bundles.load(id: bundleRecord.id)
        try notBusy(name)
        if try catalog.tenant(named: name.rawValue) != nil { throw FleetError.tenantExists(name.rawValue) }

        busy.insert(name)
        var created = false
        defer { if !created { busy.remove(name) } }
        let generated = request.password == nil ? Self.generatePassword() : nil
        let password = request.password ?? generated!
        let layout = options.layout
        let osUserName = options.isolated ? OSUsers.userName(prefix: options.userPrefix, tenant: name) : daemonUser.name

        // The catalog row first: it reserves the name, and a create that dies half-way leaves a
        // row that `tenant drop` can clean up.
        var record = try catalog.insertTenant(TenantRecord(
            name: name.rawValue, bundleID: bundleRecord.id, superuser: superuser, osUser: osUserName,
            uid: Int(daemonUser.uid), gid: Int(daemonUser.gid), directory: layout.tenantDirectory(name),
            dataDirectory: layout.dataDirectory(name), socketDirectory: layout.socketDirectory(name),
            logFile: layout.tenantLogFile(name), port: FleetLayout.tenantPort, desiredState: .stopped, createdAt: Date(), failureReason: nil,
            suspendAfter: request.suspendAfter
        ))
        do {
            var owner: UserIdentity? = nil
            if options.isolated {
                await progress(.progress("creating OS user \(osUserName)"))
                let user = try await OSUsers.ensureTenantUser(osUserName, tenant: name, root: layout.root, home: record.directory)
                record.uid = Int(user.uid)
                record.gid = Int(user.gid)
                try catalog.updateTenant(record)
                owner = user
            } else {
                await progress(.progress("not running as root: the tenant runs as \(daemonUser.name) and is not isolated from other tenants"))
            }
            try Files.makeDirectory(layout.tenantsDirectory, mode: 0o711)
            try Files.makeDirectory(record.directory, mode: 0o700, owner: owner)
            try Files.makeDirectory(record.dataDirectory, mode: 0o700, owner: owner)
            try Files.makeDirectory(record.socketDirectory, mode: 0o700, owner: owner)
            try Files.makeDirectory(layout.tenantLogDirectory(name), mode: 0o700, owner: owner)

            await progress(.progress("initialising a PostgreSQL \(bundleRecord.version) cluster (initdb)"))
            try await initdb(bundle: bundle, record: record, password: password, owner: owner)

            await progress(.progress("configuring"))
            try writeConfiguration(name: name, record: record, owner: owner)
            try await bootstrapRoles(bundle: bundle, record: record, owner: owner)
        } catch {
            logger.error("tenant creation failed; cleaning up", metadata: ["tenant": "\(name)", "error": "\(error)"])
            await progress(.progress("creation failed; removing what was created"))
            try? await removeTenantFiles(record: record, name: name)
            try? catalog.deleteTenant(named: name.rawValue)
            throw error
        }

        await progress(.progress("starting"))
        created = true
        busy.remove(name)
        try catalog.setDesiredState(.running, forTenant: name.rawValue)
        let snapshot = await (try supervisor(for: record, name: name)).start()
        if snapshot.state != .running {
            throw FleetError.failed(
                "tenant \(name) was created but did not start: \(snapshot.failureReason ?? "state \(snapshot.state.rawValue)")\n"
                    + "See `pgfleet tenant logs \(name)`; drop it with `pgfleet tenant drop \(name) --yes`."
            )
        }
        logger.info("tenant created", metadata: ["tenant": "\(name)", "bundle": "\(bundleRecord.id)"])
        return (await info(forName: name), generated)
    }

    public func dropTenant(_ name: TenantName, progress: @escaping ProgressReporter) async throws {
        let record = try existing(name)
        try notBusy(name)
        busy.insert(name)
        defer { busy.remove(name) }
        if let supervisor = supervisors[name] {
            await progress(.progress("stopping"))
            await supervisor.stop()
        } else if let running = PostmasterPID.read(dataDirectory: record.dataDirectory),
                  running.isLivePostmaster(expectedDataDirectory: record.dataDirectory) {
            // Not supervised (its bundle is gone): stop the postmaster ourselves.
            await progress(.progress("stopping unsupervised postmaster \(running.pid)"))
            kill(running.pid, SIGINT)
            _ = await ProcessWatcher.shared.waitForExit(pid: running.pid, isChild: false)
        }
        supervisors[name] = nil
        board.remove(name)
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

    private func chooseBundle(id: String?, major: Int?) throws -> BundleRecord {
        if let id {
            guard let found = try catalog.bundle(id: id) else { throw FleetError.bundleNotFound(id) }
            return found
        }
        let all = try catalog.bundles()
        if let major {
            guard (14...18).contains(major) || all.contains(where: { $0.major == major }) else {
                throw FleetError.invalidRequest("PostgreSQL \(major) is not supported; pgfleet supports majors 14 to 18")
            }
            // The newest build of that major; the default one if it is of that major.
            let candidates = all.filter { $0.major == major }
            guard let best = candidates.first(where: \.isDefault) ?? candidates.max(by: { Self.versionLess($0.version, $1.version) }) else {
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

    private func initdb(bundle: FleetBundles.Bundle, record: TenantRecord, password: String, owner: UserIdentity?) async throws {
        // initdb reads the password from a file: one only the tenant's user can read, removed at once.
        let passwordFile = record.directory + "/.initdb-password"
        try Files.write(password + "\n", to: passwordFile, mode: 0o600, owner: owner)
        defer { unlink(passwordFile) }
        try await Command.run(
            bundle.initdb,
            [
                "--pgdata=\(record.dataDirectory)", "--username=\(record.superuser)", "--pwfile=\(passwordFile)",
                "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "--encoding=UTF8",
                // C.UTF-8 sorts by code point: no glibc or ICU upgrade can change an index's order.
                "--locale=C.UTF-8", "--no-instructions", "--no-sync",
                // 1 MB WAL segments: a new cluster's pg_wal holds about 5 MB instead of one 16 MB
                // segment (see min_wal_size in ClusterConfig.settings).
                "--wal-segsize=1",
            ],
            environment: Self.environment(for: bundle), user: owner, workingDirectory: record.directory
        ).check("initdb")
        // --no-sync skips thousands of fsyncs; one syncfs makes the new cluster durable all the same.
        let fd = open(record.dataDirectory, O_RDONLY | O_DIRECTORY)
        if fd >= 0 {
            pgf_syncfs(fd)
            close(fd)
        }
    }

    private func writeConfiguration(name: TenantName, record: TenantRecord, owner: UserIdentity?) throws {
        let data = record.dataDirectory
        try Files.write(ClusterConfig.settings(name: name, socketDirectory: record.socketDirectory), to: data + "/" + ClusterConfig.includeFile, mode: 0o600, owner: owner)
        try Files.write(ClusterConfig.hba(), to: data + "/pg_hba.conf", mode: 0o600, owner: owner)
        try Files.write(ClusterConfig.ident(daemonUser: daemonUser.name), to: data + "/pg_ident.conf", mode: 0o600, owner: owner)
        try appendToPostgresqlConf(
            "include '\(ClusterConfig.includeFile)'", comment: "Added by pgfleet; keep it last so pgfleet's settings apply.",
            dataDirectory: data, owner: owner
        )
        try ensureSettingsInclude(dataDirectory: data, owner: owner)
    }

    /// Appends `directive` to postgresql.conf unless it is there already.
    func appendToPostgresqlConf(_ directive: String, comment: String, dataDirectory: String, owner: UserIdentity?) throws {
        let confPath = dataDirectory + "/postgresql.conf"
        var conf = (try? String(contentsOfFile: confPath, encoding: .utf8)) ?? ""
        guard !conf.contains(directive) else { return }
        conf += "\n# \(comment)\n\(directive)\n"
        try Files.write(conf, to: confPath, mode: 0o600, owner: owner)
    }

    /// Creates the health-check role in single-user mode, before the postmaster ever listens.
    private func bootstrapRoles(bundle: FleetBundles.Bundle, record: TenantRecord, owner: UserIdentity?) async throws {
        let result = try await Command.run(
            bundle.postgres, ["--single", "-D", record.dataDirectory, "-c", "log_min_messages=warning", "postgres"],
            environment: Self.environment(for: bundle), user: owner, stdin: Array(ClusterConfig.bootstrapSQL.utf8), workingDirectory: record.dataDirectory
        )
        try result.check("postgres --single (creating the pgfleet health-check role)")
        // Single-user mode exits 0 even when a statement failed.
        if result.stderr.contains("ERROR:") || result.stdout.contains("ERROR:") {
            throw FleetError.failed("creating the pgfleet health-check role failed:\n\(result.stderr)\(result.stdout)")
        }
    }

    private func removeTenantFiles(record: TenantRecord, name: TenantName) async throws {
        try Files.removeTree(record.directory)
        if options.isolated {
            let leftovers = ProcFS.processes(ofUID: uid_t(record.uid))
            if record.uid != 0, !leftovers.isEmpty {
                for pid in leftovers { kill(pid, SIGKILL) }
                try? await Task.sleep(for: .milliseconds(200))
            }
            try await OSUsers.removeTenantUser(record.osUser, tenant: name, root: options.layout.root)
        }
    }

    static func generatePassword() -> String {
        let alphabet = Array("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789")
        var generator = SystemRandomNumberGenerator()
        return String((0..<24).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &generator)] })
    }
}
