import FleetCore
import FleetSystem
import Foundation
import Testing

/// End to end: the real daemon, real PostgreSQL clusters, real psql. Needs root (tenants get
/// their own OS users) and the PostgreSQL 16 wheel that scripts/setup.sh downloads.
@Suite(.serialized, integrationTrait)
struct FleetIntegrationTests {
    @Test func twoMajorVersionsThreeTenantsCrashRecoveryAndDrop() async throws {
        try await withHarness { harness in
            try await harness.startDaemon()

            // Debian's PostgreSQL 15 is registered by `serve` itself; a 16 comes from the release wheel.
            let bundles = try await harness.mustRun(["bundle", "list", "--json"])
            #expect(bundles.contains("\"major\" : 15"), "\(bundles)")
            let wheel = try #require(TestBundles.pg16, "no PostgreSQL 16 wheel: run scripts/setup.sh (it downloads one into .cache/bundles)")
            try await harness.mustRun(["bundle", "import", wheel])
            let listed = try Harness.decoder.decode([BundleInfo].self, from: Data(try await harness.mustRun(["bundle", "list", "--json"]).utf8))
            #expect(Set(listed.map(\.major)) == [15, 16])
            #expect(listed.allSatisfy { $0.glibcVersion != nil })
            #expect(listed.filter(\.isDefault).count == 1)

            let (alpha, alphaPassword) = try await harness.createTenant("alpha", extra: ["--pg", "15"])
            let (beta, betaPassword) = try await harness.createTenant("beta", extra: ["--pg", "16", "--superuser", "owner"])
            let (gamma, gammaPassword) = try await harness.createTenant("gamma")
            #expect(alpha.state == .running && beta.state == .running && gamma.state == .running)
            #expect(alpha.major == 15 && beta.major == 16)
            #expect(try await harness.mustQuery(alpha, password: alphaPassword, "show server_version_num").hasPrefix("15"))
            #expect(try await harness.mustQuery(beta, password: betaPassword, "show server_version_num").hasPrefix("16"))
            #expect(beta.superuser == "owner")

            // Each tenant its own data; a wrong password is refused (SCRAM, not trust).
            for (tenant, password) in [(alpha, alphaPassword), (beta, betaPassword), (gamma, gammaPassword)] {
                try await harness.mustQuery(tenant, password: password, "create table t(v text); insert into t values ('\(tenant.name)')")
                #expect(try await harness.mustQuery(tenant, password: password, "select string_agg(v, ',') from t") == tenant.name)
                let wrong = try await harness.psql(tenant, password: password + "x", "select 1")
                #expect(!wrong.succeeded)
                #expect(wrong.stderr.contains("password authentication failed"))
            }
            // Separate clusters: separate system identifiers, own OS users, private directories.
            var identifiers: [String] = []
            for (tenant, password) in [(alpha, alphaPassword), (beta, betaPassword), (gamma, gammaPassword)] {
                identifiers.append(try await harness.mustQuery(tenant, password: password, "select system_identifier from pg_control_system()"))
            }
            #expect(Set(identifiers).count == 3)
            #expect(Set([alpha.osUser, beta.osUser, gamma.osUser]).count == 3)
            for tenant in [alpha, beta, gamma] {
                var info = stat()
                #expect(stat(tenant.dataDirectory, &info) == 0)
                #expect(info.st_mode & 0o777 == 0o700)
                #expect(OSUsers.lookup(tenant.osUser)?.uid == info.st_uid)
            }
            // The table shows every tenant.
            let table = try await harness.mustRun(["tenant", "list"])
            for name in ["alpha", "beta", "gamma"] { #expect(table.contains(name)) }

            // kill -9 of a postmaster: the supervisor restarts it and the data is intact.
            let oldPID = try #require(alpha.pid)
            kill(oldPID, SIGKILL)
            let restarted = try await harness.waitForRestart("alpha", replacing: oldPID)
            #expect(restarted.state == .running)
            #expect(restarted.pid != oldPID)
            #expect(restarted.restarts >= 1)
            #expect(try await harness.mustQuery(restarted, password: alphaPassword, "select v from t") == "alpha")
            #expect(Harness.postmasters(of: alpha.dataDirectory).count == 1)

            // Duplicate and invalid names are refused with clear messages, and change nothing.
            let duplicate = try await harness.cli(["tenant", "create", "alpha", "--password", "x"])
            #expect(!duplicate.succeeded)
            #expect(duplicate.stderr.contains("already exists"), "\(duplicate.stderr)")
            for bad in ["Alpha", "1abc", "a_b", "a.b", "../etc", String(repeating: "a", count: 64), ""] {
                let refused = try await harness.cli(["tenant", "create", bad, "--password", "x"])
                #expect(!refused.succeeded)
                #expect(refused.stderr.contains("invalid tenant name"), "\(bad): \(refused.stderr)")
            }
            let missing = try await harness.cli(["tenant", "info", "nosuch"])
            #expect(!missing.succeeded && missing.stderr.contains("no tenant named"))
            #expect(try await harness.list().count == 3)

            // Drop removes the cluster's files, its OS user and its catalog row.
            try await harness.mustRun(["tenant", "drop", "gamma", "--yes"])
            #expect(!FileManager.default.fileExists(atPath: FleetLayout(root: harness.root).tenantDirectory(try TenantName(validating: "gamma"))))
            #expect(OSUsers.lookup(gamma.osUser) == nil)
            #expect(Harness.postmasters(of: gamma.dataDirectory).isEmpty)
            #expect(try await harness.list().map(\.name) == ["alpha", "beta"])
            let refused = try await harness.cli(["tenant", "drop", "beta"], stdin: "")
            #expect(!refused.succeeded && refused.stderr.contains("--yes"))
            #expect(try await harness.list().count == 2)
        }
    }

    @Test func aTenantSuperuserCannotReadAnotherTenantsFiles() async throws {
        try await withHarness(extraServeArguments: ["--no-system-bundles"]) { harness in
            try await harness.startDaemon()
            try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
            let (attacker, password) = try await harness.createTenant("attacker")
            let (victim, victimPassword) = try await harness.createTenant("victim")
            try await harness.mustQuery(victim, password: victimPassword, "create table secret as select 'crown jewels' as v")

            try await harness.mustQuery(attacker, password: password, "create table loot(line text)")
            // Control: the same trick works on the attacker's own files, so a failure below is the isolation.
            try await harness.mustQuery(attacker, password: password, "copy loot from program 'cat \(attacker.dataDirectory)/PG_VERSION'")
            #expect(try await harness.mustQuery(attacker, password: password, "select count(*) from loot") == "1")

            for target in [
                "\(victim.dataDirectory)/PG_VERSION", "\(victim.dataDirectory)/postgresql.conf", victim.logFile,
                harness.layout.catalogPath, "\(harness.root)/run/serve.pid",
            ] {
                let attempt = try await harness.psql(attacker, password: password, "copy loot from program 'cat \(target)'")
                #expect(!attempt.succeeded, "read \(target)")
                #expect(attempt.stderr.contains("failed") || attempt.stderr.contains("denied"), "\(attempt.stderr)")
            }
            let listing = try await harness.psql(attacker, password: password, "copy loot from program 'ls \(victim.socketDirectory)'")
            #expect(!listing.succeeded)
            let write = try await harness.psql(attacker, password: password, "copy (select 1) to program 'cat > \(victim.dataDirectory)/pwned'")
            #expect(!write.succeeded)
            #expect(!FileManager.default.fileExists(atPath: victim.dataDirectory + "/pwned"))
            // Nor connect to the victim's socket with the attacker's credentials.
            let cross = try await harness.psql(victim, password: password, "select 1", user: attacker.superuser)
            #expect(!cross.succeeded)
            #expect(try await harness.mustQuery(attacker, password: password, "select count(*) from loot") == "1")
        }
    }

    @Test func aCreateCutShortByTheDaemonsDeathIsNotStartedAndCanBeDropped() async throws {
        // No ready pool: the create runs initdb (about a second), time enough to kill the daemon in it.
        try await withHarness(extraServeArguments: ["--no-system-bundles", "--pool-size", "0"]) { harness in
            try await harness.startDaemon()
            try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
            let marker = harness.layout.creationMarker(try TenantName(validating: "half"))
            let create = Task { try await harness.cli(["tenant", "create", "half", "--password", "never-told"]) }
            let registered = try await Harness.eventually { try await harness.list().contains { $0.name == "half" } }
            #expect(registered, "the create never showed up in the list")
            #expect(FileManager.default.fileExists(atPath: marker))
            try await Task.sleep(for: .milliseconds(150))
            await harness.killDaemon()
            let cut = try await create.value
            #expect(!cut.succeeded, "the create finished before the daemon was killed: \(cut.stdout)")

            // A stray marker (a create that died before its catalog row) is swept at start.
            let stray = harness.layout.tenantsDirectory + "/.ghost.creating"
            try Data().write(to: URL(fileURLWithPath: stray))

            try await harness.startDaemon()
            #expect(!FileManager.default.fileExists(atPath: stray))
            let half = try await harness.info("half")
            #expect(half.state == .stopped && half.desiredState == .stopped, "\(half.state) / \(half.desiredState)")
            #expect(half.failureReason?.contains("creation did not finish") == true, "\(half.failureReason ?? "no reason")")
            // The killed daemon's initdb may still be running on its own, as the tenant's OS user:
            // it runs one postgres after another (bootstrap, then single-user steps), so "no
            // postgres now" can be a gap between two. Once no process of that user is left, none
            // is started.
            // (The user may not exist: the daemon can die before its useradd has finished.)
            let settled = try await Harness.eventually {
                let user = getpwnam(half.osUser).map { $0.pointee.pw_uid }
                return Harness.postmasters(of: half.dataDirectory).isEmpty && (user.map { ProcFS.processes(ofUID: $0).isEmpty } ?? true)
            }
            #expect(settled, "the interrupted initdb of the tenant's user never ended")
            try await Task.sleep(for: .milliseconds(500))  // none started in the meantime: absence takes a while to show
            #expect(Harness.postmasters(of: half.dataDirectory).isEmpty)
            #expect(try await harness.info("half").state == .stopped)
            let start = try await harness.cli(["tenant", "start", "half"])
            #expect(!start.succeeded)
            #expect(start.stderr.contains("cannot be started") && start.stderr.contains("tenant drop half"), "\(start.stderr)")
            let newPassword = try await harness.cli(["tenant", "password", "half"])
            #expect(!newPassword.succeeded && newPassword.stderr.contains("cannot be given a new password"), "\(newPassword.stderr)")
            // Still so after another restart of the daemon.
            _ = try await harness.stopDaemon()
            try await harness.startDaemon()
            #expect(try await harness.info("half").failureReason?.contains("creation did not finish") == true)

            try await harness.mustRun(["tenant", "drop", "half", "--yes"])
            #expect(!FileManager.default.fileExists(atPath: marker))
            #expect(!FileManager.default.fileExists(atPath: half.dataDirectory))
            #expect(getpwnam(half.osUser) == nil, "the OS user \(half.osUser) is still there")
            // The name is free again, and a create that finishes leaves no marker.
            let (again, password) = try await harness.createTenant("half")
            #expect(!FileManager.default.fileExists(atPath: marker))
            #expect(try await harness.mustQuery(again, password: password, "select 1") == "1")
        }
    }

    @Test func killingServeLeavesTenantsRunningAndTheNextServeReadoptsThem() async throws {
        try await withHarness(extraServeArguments: ["--no-system-bundles"]) { harness in
            try await harness.startDaemon()
            try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
            let (tenant, password) = try await harness.createTenant("survivor")
            try await harness.mustQuery(tenant, password: password, "create table t as select 42 as v")
            let pid = try #require(tenant.pid)

            await harness.killDaemon()
            try await Task.sleep(for: .milliseconds(300))
            #expect(ProcFS.isAlive(pid), "the postmaster died with the daemon")
            #expect(try await harness.mustQuery(tenant, password: password, "select v from t") == "42")

            try await harness.startDaemon()
            let adopted = try await harness.waitFor("survivor", state: .running)
            #expect(adopted.pid == pid)
            #expect(Harness.postmasters(of: tenant.dataDirectory) == [pid])
            #expect(harness.serveLog().contains("re-adopting"))

            // A re-adopted postmaster is still supervised: kill it and it comes back.
            kill(pid, SIGKILL)
            let back = try await harness.waitForRestart("survivor", replacing: pid)
            #expect(back.state == .running && back.pid != pid)
            #expect(try await harness.mustQuery(back, password: password, "select v from t") == "42")

            // A graceful stop of serve shuts tenants down cleanly; the next serve starts them again.
            let status = try await harness.stopDaemon()
            #expect(status == .exited(0))
            #expect(Harness.postmasters(of: tenant.dataDirectory).isEmpty)
            let log = try String(contentsOfFile: tenant.logFile, encoding: .utf8)
            #expect(log.contains("received fast shutdown request"))
            #expect(log.contains("database system is shut down"))
            let logBeforeRestart = log.utf8.count
            try await harness.startDaemon()
            let again = try await harness.waitFor("survivor", state: .running)
            #expect(again.state == .running)
            #expect(try await harness.mustQuery(again, password: password, "select v from t") == "42")
            // No recovery was needed: the shutdown was clean.
            let sinceRestart = String(decoding: Data(try String(contentsOfFile: tenant.logFile, encoding: .utf8).utf8).dropFirst(logBeforeRestart), as: UTF8.self)
            #expect(sinceRestart.contains("database system was shut down at"), "\(sinceRestart)")
            #expect(!sinceRestart.contains("was interrupted"), "\(sinceRestart)")
        }
    }

    @Test func aCrashLoopEndsInFailedWithItsReason() async throws {
        try await withHarness(extraServeArguments: ["--no-system-bundles", "--restart-backoff", "0.1", "--max-crashes", "3"]) { harness in
            try await harness.startDaemon()
            try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
            let (tenant, password) = try await harness.createTenant("looper")

            // A setting the server refuses at start-up, then a crash: every restart fails the same way.
            // (ALTER SYSTEM would refuse it, so it goes straight into the file, as a careless edit would.)
            let autoConf = try FileHandle(forWritingTo: URL(fileURLWithPath: tenant.dataDirectory + "/postgresql.auto.conf"))
            try autoConf.seekToEnd()
            try autoConf.write(contentsOf: Data("shared_buffers = 'plenty'\n".utf8))
            try autoConf.close()
            _ = password
            kill(try #require(tenant.pid), SIGKILL)
            let failed = try await harness.waitFor("looper", state: .failed, timeout: .seconds(30))
            #expect(failed.state == .failed)
            let reason = try #require(failed.failureReason)
            #expect(reason.contains("exited with code 1"), "\(reason)")
            #expect(reason.contains("shared_buffers"), "\(reason)")
            #expect(reason.contains("3 failed starts or crashes in a row"), "\(reason)")
            #expect(Harness.postmasters(of: tenant.dataDirectory).isEmpty)
            // It stays failed rather than restarting forever.
            try await Task.sleep(for: .seconds(1))
            #expect(try await harness.info("looper").state == .failed)

            let start = try await harness.cli(["tenant", "start", "looper"])
            #expect(!start.succeeded)
            #expect(start.stderr.contains("shared_buffers"), "\(start.stderr)")
        }
    }
}

/// Runs `body` with a fresh root and daemon, and always cleans up: tenants, OS users, files.
func withHarness(extraServeArguments: [String] = [], fileLimit: Int? = nil, _ body: (Harness) async throws -> Void) async throws {
    let harness = try Harness(extraServeArguments: extraServeArguments, fileLimit: fileLimit)
    do {
        try await body(harness)
    } catch {
        await harness.tearDown()
        throw error
    }
    await harness.tearDown()
}
