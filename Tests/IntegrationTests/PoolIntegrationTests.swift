import FleetCore
import FleetSystem
import Foundation
import Testing

/// The ready pool: `tenant create` claims a pre-initialised cluster, personalises it, and the
/// pool refills; without a pool, create still works the slow way and ends in the same state.
@Suite(.serialized, integrationTrait)
struct PoolIntegrationTests {
    @Test func createsClaimFromThePoolAndThePoolRefills() async throws {
        try await withHarness(extraServeArguments: ["--no-system-bundles", "--listen", "none", "--pool-size", "2"]) { harness in
            try await harness.startDaemon()
            try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
            let bundle = try #require(try await harness.status().pool?.first?.bundle)
            try await harness.waitForPool(ready: 2)

            // Tenants cannot even look into the pool: its directory belongs to the pool's own user.
            let poolDirectory = harness.layout.poolDirectory(bundle: bundle)
            var info = stat()
            #expect(stat(poolDirectory, &info) == 0)
            #expect(info.st_mode & 0o777 == 0o700)
            #expect(OSUsers.name(of: info.st_uid) == harness.userPrefix + "_pool")
            let entries = try FileManager.default.contentsOfDirectory(atPath: poolDirectory)
            #expect(entries.count == 2 && entries.allSatisfy { $0.hasPrefix("ready-") }, "\(entries)")

            // Three creates at once on a pool of two: two claim an entry each, the third finds the
            // pool empty and initialises a new cluster, and says so calmly.
            let passwords = [
                "alpha": "alpha-\(UUID().uuidString.prefix(8))", "beta": "beta-\(UUID().uuidString.prefix(8))",
                "epsilon": "epsilon-\(UUID().uuidString.prefix(8))",
            ]
            async let alphaCreate = harness.cli(["tenant", "create", "alpha", "--password", passwords["alpha"]!])
            async let betaCreate = harness.cli(["tenant", "create", "beta", "--password", passwords["beta"]!, "--superuser", "owner"])
            async let epsilonCreate = harness.cli(["tenant", "create", "epsilon", "--password", passwords["epsilon"]!])
            let created = try await [alphaCreate, betaCreate, epsilonCreate]
            for result in created {
                #expect(result.succeeded, "\(result.stderr)\n\(harness.serveLog())")
                #expect(!result.stderr.lowercased().contains("warning") && !result.stderr.lowercased().contains("error"), "\(result.stderr)")
            }
            #expect(created.filter { $0.stderr.contains("claimed a ready PostgreSQL") }.count == 2, "\(created.map(\.stderr))")
            #expect(created.filter { $0.stderr.contains("initialising a new PostgreSQL 15") && $0.stderr.contains("(the ready pool is empty)") }.count == 1)

            // The pool refills to its size; the next create claims again.
            try await harness.waitForPool(ready: 2)
            // Not ASCII: the daemon's SASLprep must agree with libpq's for this password to work.
            let gammaPassword = "g\u{E4}mma-\u{FF50}\u{FF57}\u{3000}\(UUID().uuidString.prefix(6))"
            let gammaCreate = try await harness.cli(["tenant", "create", "gamma", "--password", gammaPassword, "--superuser", "gamma_owner"])
            #expect(gammaCreate.succeeded, "\(gammaCreate.stderr)")
            #expect(gammaCreate.stderr.contains("claimed a ready PostgreSQL"), "\(gammaCreate.stderr)")

            var identifiers: Set<String> = []
            for (name, password) in [("alpha", passwords["alpha"]!), ("beta", passwords["beta"]!), ("epsilon", passwords["epsilon"]!), ("gamma", gammaPassword)] {
                let tenant = try await harness.info(name)
                #expect(tenant.state == .running)
                // The superuser logs in with its password (SCRAM), and a wrong one is refused.
                #expect(try await harness.mustQuery(tenant, password: password, "select current_user") == tenant.superuser)
                let wrong = try await harness.psql(tenant, password: password + "x", "select 1")
                #expect(!wrong.succeeded && wrong.stderr.contains("password authentication failed"), "\(wrong.stderr)")
                let method = try await harness.mustQuery(tenant, password: password, "select rolpassword like 'SCRAM-SHA-256$4096:%' from pg_authid where rolname = current_user")
                #expect(method == "t")
                // The same end state as a cluster initialised for this tenant: its superuser is the
                // bootstrap superuser, the daemon's role is no superuser and can still do its job.
                #expect(try await harness.mustQuery(tenant, password: password, "select rolname from pg_roles where oid = 10") == tenant.superuser)
                #expect(try await harness.mustQuery(tenant, password: password, "select rolsuper from pg_roles where rolname = 'pgfleet'") == "f")
                #expect(try await harness.mustQuery(tenant, password: password, "select count(*) from pg_roles where rolname = 'postgres'") == (tenant.superuser == "postgres" ? "1" : "0"))
                let secret = try await harness.psql(tenant, password: "", "select pgfleet.auth_secret('\(tenant.superuser)') like 'SCRAM-SHA-256$%'", user: "pgfleet")
                #expect(secret.succeeded && secret.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "t", "\(secret.stderr)")
                #expect(try await harness.mustQuery(tenant, password: password, "show cluster_name") == name)
                identifiers.insert(try await harness.mustQuery(tenant, password: password, "select system_identifier from pg_control_system()"))

                // Every file is the tenant's, the data directory private to it. Its user and
                // group share one id from pgfleet's range (chosen before useradd ran).
                let owner = try #require(OSUsers.lookup(tenant.osUser))
                #expect(owner.uid == owner.gid && OSUsers.tenantIDs.contains(Int(owner.uid)), "\(owner)")
                #expect(stat(tenant.dataDirectory, &info) == 0)
                #expect(info.st_mode & 0o777 == 0o700)
                let notOwned = try Harness.filesNotOwned(by: owner.uid, under: tenant.dataDirectory)
                #expect(notOwned.isEmpty, "\(notOwned.prefix(5))")
            }
            #expect(identifiers.count == 4, "every tenant has its own system identifier")
            try await harness.waitForPool(ready: 2)

            // A restart keeps the ready entries and removes what a crash would have left.
            let before = Set(try FileManager.default.contentsOfDirectory(atPath: poolDirectory))
            #expect(try await harness.stopDaemon() == .exited(0))
            try Files.makeDirectory(poolDirectory + "/building-halfmade", mode: 0o700)
            try Files.makeDirectory(harness.layout.poolDirectory(bundle: "14.0-gone") + "/ready-old", mode: 0o700)
            try await harness.startDaemon()
            _ = try await Harness.eventually { !FileManager.default.fileExists(atPath: poolDirectory + "/building-halfmade") }
            #expect(Set(try FileManager.default.contentsOfDirectory(atPath: poolDirectory)) == before)
            #expect(!FileManager.default.fileExists(atPath: harness.layout.poolDirectory(bundle: "14.0-gone")))
            #expect(try await harness.status().pool == [PoolStatus(bundle: bundle, ready: 2, size: 2, building: false)])
            #expect(try await harness.mustRun(["status"]).contains("ready pool: 2 per bundle: \(bundle) 2 ready"))
        }
    }

    @Test func withoutAPoolCreateInitialisesANewClusterAndEndsTheSame() async throws {
        try await withHarness(extraServeArguments: ["--no-system-bundles", "--listen", "none", "--pool-size", "0"]) { harness in
            try await harness.startDaemon()
            try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
            let password = "delta-\(UUID().uuidString.prefix(8))"
            // The OS user an interrupted create of this tenant left behind (its marker in the
            // comment): the create takes it over and gives it the new cluster.
            let leftover = harness.userPrefix + "delta"
            try await Command.run("/usr/sbin/useradd", [
                "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", "--comment",
                "pgfleet tenant delta (\(harness.root))", leftover,
            ]).check("useradd \(leftover)")
            let create = try await harness.cli(["tenant", "create", "delta", "--password", password, "--superuser", "owner"])
            #expect(create.succeeded, "\(create.stderr)")
            #expect(create.stderr.contains("initialising a new PostgreSQL"), "\(create.stderr)")
            #expect(!create.stderr.contains("claimed"))
            let tenant = try await harness.info("delta")
            #expect(try await harness.mustQuery(tenant, password: password, "select rolname from pg_roles where oid = 10") == "owner")
            #expect(try await harness.mustQuery(tenant, password: password, "select rolsuper from pg_roles where rolname = 'pgfleet'") == "f")
            var info = stat()
            #expect(stat(tenant.dataDirectory, &info) == 0)
            #expect(info.st_mode & 0o777 == 0o700)
            #expect(OSUsers.lookup(tenant.osUser)?.uid == info.st_uid)
            #expect(tenant.osUser == leftover)
            #expect(!FileManager.default.fileExists(atPath: harness.layout.poolDirectory))
            #expect(OSUsers.lookup(harness.userPrefix + "_pool") == nil)
            #expect(try await harness.mustRun(["status"]).contains("ready pool: off"))
        }
    }
}

extension Harness {
    func status() async throws -> DaemonStatus {
        try Harness.decoder.decode(DaemonStatus.self, from: Data(try await mustRun(["status", "--json"]).utf8))
    }

    /// Waits until every bundle's pool holds `ready` clusters and none is being made.
    func waitForPool(ready: Int, timeout: Duration = .seconds(90), sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let deadline = ContinuousClock.now + timeout
        var last: [PoolStatus] = []
        while ContinuousClock.now < deadline {
            last = try await status().pool ?? []
            if !last.isEmpty && last.allSatisfy({ $0.ready == ready && !$0.building }) { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        Issue.record("the ready pool did not reach \(ready): \(last)\n\(serveLog())", sourceLocation: sourceLocation)
        throw HarnessError("pool not ready")
    }

    static func filesNotOwned(by uid: uid_t, under path: String) throws -> [String] {
        guard let entries = FileManager.default.enumerator(atPath: path) else { throw HarnessError("cannot list \(path)") }
        var wrong: [String] = []
        while let relative = entries.nextObject() as? String {
            var info = stat()
            if lstat(path + "/" + relative, &info) == 0, info.st_uid != uid { wrong.append(relative) }
        }
        return wrong
    }
}
