import FleetCore
import FleetSystem
import Foundation
import Testing

@Suite(.serialized, .enabled(if: geteuid() == 0, "integration tests create OS users and need root"))
struct SettingsIntegrationTests {
    @Test func settingsAreValidatedByTheBundleReloadedOrRestarted() async throws {
        try await withHarness(extraServeArguments: ["--no-system-bundles", "--listen", "none"]) { harness in
            try await harness.startDaemon()
            try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
            let (tenant, password) = try await harness.createTenant("tuned")

            // A reloadable setting: in effect at once, no restart.
            let reload = try await harness.mustRun(["tenant", "set", "tuned", "work_mem=12MB", "statement_timeout=5s"])
            #expect(reload.contains("reloaded"), "\(reload)")
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await harness.mustQuery(tenant, password: password, "show work_mem") == "12MB")
            #expect(try await harness.mustQuery(tenant, password: password, "show statement_timeout") == "5s")

            // A postmaster setting: stored, reported, applied by --restart.
            let pending = try await harness.mustRun(["tenant", "set", "tuned", "shared_buffers=48MB"])
            #expect(pending.contains("restart needed for shared_buffers"), "\(pending)")
            #expect(try await harness.mustQuery(tenant, password: password, "show shared_buffers") == "32MB")
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
}
