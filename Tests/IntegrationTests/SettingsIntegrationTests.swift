import FleetCore
import FleetSystem
import Foundation
import Testing

@Suite(.serialized, integrationTrait)
struct SettingsIntegrationTests {
    @Test func settingsAreValidatedByTheBundleReloadedOrRestarted() async throws {
        try await withHarness(extraServeArguments: ["--no-system-bundles", "--listen", "none"]) { harness in
            try await harness.startDaemon()
            try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
            let (tenant, password) = try await harness.createTenant("tuned")

            // A reloadable setting: in effect at once, no restart.
            let reload = try await harness.mustRun(["tenant", "set", "tuned", "work_mem=12MB", "statement_timeout=5s"])
            #expect(reload.contains("reloaded"), "\(reload)")
            // A reload reaches new sessions once the postmaster has handled its SIGHUP: wait for that.
            #expect(try await harness.waitForQuery(tenant, password: password, "show work_mem", toPrint: "12MB") == "12MB")
            #expect(try await harness.mustQuery(tenant, password: password, "show statement_timeout") == "5s")

            // A postmaster setting: stored, reported, applied by --restart.
            let pending = try await harness.mustRun(["tenant", "set", "tuned", "shared_buffers=48MB"])
            #expect(pending.contains("restart needed for shared_buffers"), "\(pending)")
            #expect(try await harness.mustQuery(tenant, password: password, "show shared_buffers") == "16MB")
            let restarted = try await harness.mustRun(["tenant", "set", "tuned", "shared_buffers=48MB", "--restart"])
            #expect(restarted.contains("restarted"), "\(restarted)")
            let after = try await harness.info("tuned")
            #expect(after.state == .running)
            #expect(try await harness.mustQuery(after, password: password, "show shared_buffers") == "48MB")
            // Earlier settings survive later ones.
            #expect(try await harness.mustQuery(after, password: password, "show work_mem") == "12MB")

            // Refused with the reason, and nothing changes.
            for (setting, reason) in [
                ("shared_buffers=plenty", "invalid value"), ("max_connections=0", "outside the valid range"),
                ("no_such_parameter=1", "unrecognized configuration parameter"), ("port=5433", "managed by pgfleet"),
                ("listen_addresses=*", "managed by pgfleet"), ("work_mem", "is not name=value"),
            ] {
                let refused = try await harness.cli(["tenant", "set", "tuned", setting])
                #expect(!refused.succeeded, "\(setting) was accepted")
                #expect(refused.stderr.contains(reason), "\(setting): \(refused.stderr)")
            }
            #expect(try await harness.mustQuery(after, password: password, "show work_mem") == "12MB")
            let stored = try String(contentsOfFile: tenant.dataDirectory + "/pgfleet.settings.conf", encoding: .utf8)
            #expect(stored.contains("work_mem = '12MB'") && stored.contains("shared_buffers = '48MB'") && !stored.contains("plenty"))
        }
    }

    /// pgfleet's defaults for many small tenants are in effect on a new tenant, leave it fully
    /// usable (psql, pgbench, autovacuum), and give way to `tenant set`.
    @Test func smallFootprintDefaultsAreInEffectAndOverridable() async throws {
        try await withHarness(extraServeArguments: ["--no-system-bundles", "--listen", "none"]) { harness in
            try await harness.startDaemon()
            try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
            let (tenant, password) = try await harness.createTenant("small")
            func show(_ setting: String) async throws -> String {
                try await harness.mustQuery(tenant, password: password, "show \(setting)")
            }
            let expected = [
                "shared_buffers": "16MB", "wal_buffers": "128kB", "max_connections": "40", "max_worker_processes": "2",
                "max_logical_replication_workers": "0", "max_wal_senders": "2", "max_replication_slots": "2",
                "wal_segment_size": "1MB", "min_wal_size": "32MB", "max_wal_size": "256MB", "huge_pages": "off", "autovacuum": "on",
            ]
            for (setting, value) in expected.sorted(by: { $0.key < $1.key }) {
                #expect(try await show(setting) == value, "\(setting)")
            }
            // No logical replication launcher: one process fewer; the autovacuum launcher runs.
            let processes = "SELECT string_agg(backend_type, ',' ORDER BY backend_type) FROM pg_stat_activity WHERE backend_type <> 'client backend'"
            #expect(try await harness.mustQuery(tenant, password: password, processes) == "autovacuum launcher,background writer,checkpointer,walwriter")

            // Fully usable: pgbench initialises and runs with 8 clients.
            var environment = SpawnSpec.baseEnvironment
            environment["PGPASSWORD"] = password
            let connection = ["-h", tenant.socketDirectory, "-p", String(tenant.port), "-U", tenant.superuser, "postgres"]
            let pgbench = "/usr/lib/postgresql/15/bin/pgbench"
            let initialised = try await Command.run(pgbench, ["-i", "-q", "-s", "1"] + connection, environment: environment)
            #expect(initialised.succeeded, "\(initialised.stderr)")
            let run = try await Command.run(pgbench, ["-c", "8", "-j", "2", "-t", "50", "-n"] + connection, environment: environment)
            #expect(run.succeeded && run.stdout.contains("number of failed transactions: 0"), "\(run.stdout)\n\(run.stderr)")

            // Every default gives way to `tenant set`.
            let restarted = try await harness.mustRun([
                "tenant", "set", "small", "shared_buffers=64MB", "max_connections=60", "max_worker_processes=4",
                "max_logical_replication_workers=2", "wal_buffers=1MB", "max_wal_size=512MB", "--restart",
            ])
            #expect(restarted.contains("restarted"), "\(restarted)")
            let after = try await harness.info("small")
            #expect(after.state == .running)
            for (setting, value) in [
                ("shared_buffers", "64MB"), ("max_connections", "60"), ("max_worker_processes", "4"),
                ("max_logical_replication_workers", "2"), ("wal_buffers", "1MB"), ("max_wal_size", "512MB"),
            ] {
                #expect(try await harness.mustQuery(after, password: password, "show \(setting)") == value, "\(setting)")
            }
            // The launcher starts a moment after the server accepts connections.
            let launched = try await Harness.eventually {
                try await harness.mustQuery(after, password: password, processes).contains("logical replication launcher")
            }
            #expect(launched, "no logical replication launcher")
        }
    }
}
