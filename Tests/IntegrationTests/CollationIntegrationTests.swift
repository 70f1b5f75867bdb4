import FleetCore
import FleetSystem
import Foundation
import Testing

/// Collations that cannot shift under a tenant: the fingerprint, the guard before a start or an
/// update, `tenant update` between minors (with --reindex), and the builtin provider on 17+.
@Suite(.serialized, integrationTrait)
struct CollationIntegrationTests {
    func bundleID(_ harness: Harness, major: Int, version: String) async throws -> String {
        let listed = try Harness.decoder.decode([BundleInfo].self, from: Data(try await harness.mustRun(["bundle", "list", "--json"]).utf8))
        return try #require(listed.first { $0.major == major && $0.version == version }?.id, "no bundle \(version) in \(listed.map(\.id))")
    }

    /// An ICU database with a text index, on Debian's 15.18 (ICU 72); the fingerprint recorded.
    func icuTenant(_ harness: Harness, name: String) async throws -> (TenantInfo, String) {
        let (tenant, password) = try await harness.createTenant(name, extra: ["--pg", "15"])
        try await harness.mustQuery(tenant, password: password, "CREATE DATABASE icudb LOCALE_PROVIDER icu ICU_LOCALE 'en' LOCALE 'C.UTF-8' TEMPLATE template0")
        let inICU = try await harness.psql(
            tenant, password: password, "CREATE TABLE t (label text); INSERT INTO t SELECT 'row ' || g FROM generate_series(1, 500) g; CREATE INDEX t_label_idx ON t (label)",
            database: "icudb"
        )
        #expect(inICU.succeeded, "\(inICU.stderr)")
        // A start records the fingerprint (the create ran before icudb existed).
        try await harness.mustRun(["tenant", "restart", name])
        let info = try await harness.info(name)
        #expect(info.collation?.providers.contains("icu") == true, "\(String(describing: info.collation))")
        #expect(info.collation?.indexes == 1, "\(String(describing: info.collation))")
        return (info, password)
    }

    @Test func anICUTenantIsNotMovedToABundleWithoutICU() async throws {
        try await withHarness(extraServeArguments: ["--no-system-bundles", "--listen", "none"]) { harness in
            try await harness.startDaemon()
            try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
            let wheel = try #require(TestBundles.wheel("15.19.0"), "no 15.19 wheel: run scripts/setup.sh")
            try await harness.mustRun(["bundle", "import", wheel])
            let tarball = try await bundleID(harness, major: 15, version: "15.19")
            let (tenant, password) = try await icuTenant(harness, name: "icu")

            let refused = try await harness.cli(["tenant", "update", "icu", "--bundle", tarball])
            #expect(!refused.succeeded)
            #expect(refused.stderr.contains("without ICU") && refused.stderr.contains("icudb") && refused.stderr.contains("nothing was changed"), "\(refused.stderr)")
            let after = try await harness.info("icu")
            #expect(after.bundle == tenant.bundle && after.state == .running && after.pid == tenant.pid)
            let rows = try await harness.psql(after, password: password, "SELECT count(*) FROM t", database: "icudb")
            #expect(rows.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "500", "\(rows.stderr)")
            // A different major is another command.
            let other = try await harness.cli(["tenant", "update", "icu", "--bundle", "nonesuch"])
            #expect(!other.succeeded && other.stderr.contains("nonesuch"))
        }
    }

    @Test func aChangedICUIsRefusedWithTheIndexesAndReindexFixesIt() async throws {
        try await withHarness(extraServeArguments: ["--no-system-bundles", "--listen", "none"]) { harness in
            try await harness.startDaemon()
            try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
            let (tenant, password) = try await icuTenant(harness, name: "moved")
            // What an ICU upgrade under the tenant leaves: indexes built with another ICU, and
            // PostgreSQL's own record of the collation's version differing from the library's.
            try await harness.mustQuery(tenant, password: password, "UPDATE pg_database SET datcollversion = '0.1' WHERE datname = 'icudb'")
            _ = try await harness.stopDaemon()
            let edit = try await Command.run(
                "/usr/bin/sqlite3", [harness.layout.catalogPath, "UPDATE tenant_collation SET fingerprint = json_set(fingerprint, '$.icuVersion', '71')"]
            )
            #expect(edit.succeeded, "\(edit.stderr)")
            try await harness.startDaemon()

            // The start is refused, naming the index and the command.
            let failed = try await harness.waitFor("moved", state: .failed)
            let reason = failed.failureReason ?? ""
            #expect(reason.contains("icudb.public.t_label_idx") && reason.contains("--reindex"), "\(reason)")
            let plain = try await harness.cli(["tenant", "update", "moved", "--bundle", tenant.bundle])
            #expect(!plain.succeeded && plain.stderr.contains("--reindex"), "\(plain.stderr)")

            // --reindex: rebuilt, refreshed, verified, recorded.
            let fixed = try await harness.cli(["tenant", "update", "moved", "--bundle", tenant.bundle, "--reindex"])
            #expect(fixed.succeeded, "\(fixed.stdout)\n\(fixed.stderr)")
            let after = try await harness.info("moved")
            #expect(after.state == .running)
            #expect(after.collation?.icuVersion == tenant.collation?.icuVersion && after.collation?.indexes == 1)
            let version = try await harness.mustQuery(after, password: password, "SELECT datcollversion FROM pg_database WHERE datname = 'icudb'")
            #expect(version != "0.1" && !version.isEmpty, "\(version)")
            let amcheck = try await harness.psql(after, password: password, "SELECT extname FROM pg_extension WHERE extname = 'amcheck'", database: "icudb")
            #expect(amcheck.stdout.contains("amcheck"), "\(amcheck.stderr)")
            let rows = try await harness.psql(after, password: password, "SELECT count(*) FROM t WHERE label > 'row 1'", database: "icudb")
            #expect(rows.succeeded && !rows.stdout.isEmpty, "\(rows.stderr)")
        }
    }

    @Test func aMinorUpdateKeepsDataAndPasswordWithOneRestart() async throws {
        let port = try freePort()
        try await withHarness(extraServeArguments: ["--no-system-bundles", "--listen", "127.0.0.1:\(port)"]) { harness in
            try await harness.startDaemon()
            let old = try #require(TestBundles.wheel("16.14.0"), "no 16.14 wheel: run scripts/setup.sh")
            let new = try #require(TestBundles.wheel("16.15.0"), "no 16.15 wheel: run scripts/setup.sh")
            try await harness.mustRun(["bundle", "import", old])
            try await harness.mustRun(["bundle", "import", new])
            let from = try await bundleID(harness, major: 16, version: "16.14")
            let to = try await bundleID(harness, major: 16, version: "16.15")
            let (tenant, password) = try await harness.createTenant("minor", extra: ["--bundle", from])
            let conninfo = "host=127.0.0.1 port=\(port) user=postgres@minor dbname=postgres sslmode=disable"
            let before = try await psql(conninfo, password: password, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('here'); SELECT version()")
            #expect(before.succeeded && before.stdout.contains("16.14"), "\(before.stderr)")
            let readyBefore = try readyLines(tenant.logFile)

            let update = try await harness.cli(["tenant", "update", "minor", "--bundle", to])
            #expect(update.succeeded, "\(update.stdout)\n\(update.stderr)")
            #expect(update.stderr.contains("stopping") || update.stdout.contains("stopping"), "progress: \(update.stdout)\n\(update.stderr)")
            let after = try await harness.info("minor")
            #expect(after.bundle == to && after.state == .running && after.pid != tenant.pid)
            // One restart: the log shows the postmaster ready once more, no more.
            #expect(try readyLines(tenant.logFile) == readyBefore + 1)
            let through = try await psql(conninfo, password: password, "SELECT v FROM kept", "SELECT version()")
            #expect(through.succeeded && through.stdout.contains("here") && through.stdout.contains("16.15"), "\(through.stderr)")

            let major = try await harness.cli(["tenant", "update", "minor", "--bundle", "15.18-debian"])
            #expect(!major.succeeded)
        }
    }

    @Test func newTenantsOn17AndLaterUseTheBuiltinProvider() async throws {
        try await withHarness(extraServeArguments: ["--no-system-bundles", "--listen", "none"]) { harness in
            try await harness.startDaemon()
            let wheel = try #require(TestBundles.wheel("18.6.0") ?? TestBundles.wheel("17.11.0"), "no 17 or 18 wheel: run scripts/setup.sh")
            try await harness.mustRun(["bundle", "import", wheel])
            let (tenant, password) = try await harness.createTenant("builtin")
            #expect(try await harness.mustQuery(tenant, password: password, "SELECT datlocprovider::text || ' ' || datlocale FROM pg_database WHERE datname = 'postgres'") == "b C.UTF-8")
            try await harness.mustRun(["tenant", "restart", "builtin"])
            let info = try await harness.info("builtin")
            #expect(info.collation?.providers == "builtin" && info.collation?.indexes == 0, "\(String(describing: info.collation))")
        }
    }

    func readyLines(_ logFile: String) throws -> Int {
        let text = (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? ""
        return text.components(separatedBy: "database system is ready to accept connections").count - 1
    }
}
