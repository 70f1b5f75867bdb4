import FleetCore
import FleetSystem
import Foundation
import Testing

/// `bundle verify`: bundles run in a sandbox holding only themselves and their declared host files.
@Suite(.serialized, integrationTrait)
struct BundleVerifyIntegrationTests {
    static let debian = "15.18-debian"

    func bundles(_ harness: Harness) async throws -> [String: BundleInfo] {
        let listed = try Harness.decoder.decode([BundleInfo].self, from: Data(try await harness.mustRun(["bundle", "list", "--json"]).utf8))
        return Dictionary(uniqueKeysWithValues: listed.map { ($0.id, $0) })
    }

    func check(_ name: String, of bundle: BundleInfo?) -> BundleVerificationInfo.Check? {
        bundle?.verification?.checks.first { $0.name == name }
    }

    @Test func unvendoredBundlesRunButNeedTheHostsTimeZonesAndChangesAreCaught() async throws {
        try await withHarness(extraServeArguments: ["--no-system-bundles", "--listen", "none"]) { harness in
            try await harness.startDaemon()
            let started = ContinuousClock.now
            let imported = try await harness.cli(["bundle", "import", "/usr/lib/postgresql/15"])
            let importTook = ContinuousClock.now - started
            #expect(imported.succeeded, "\(imported.stderr)\n\(harness.serveLog())")
            // Import verifies (as root) and prints each check.
            #expect(imported.stdout.contains("✓ initdb"), "\(imported.stdout)")
            let wheel = try #require(TestBundles.pg16, "no PostgreSQL 16 wheel: run scripts/setup.sh")
            try await harness.mustRun(["bundle", "import", wheel])
            var all = try await bundles(harness)
            let debian = try #require(all[Self.debian], "\(all.keys)")
            let tarball = try #require(all.values.first { $0.major == 16 })
            for bundle in [debian, tarball] {
                let verification = try #require(bundle.verification, "\(bundle.id) was not verified at import")
                let failed = verification.checks.filter { !$0.passed }.map { "\($0.name): \($0.detail ?? "")" }
                print("bundle \(bundle.id) verification (\(verification.checks.count) checks), failed:\n  " + failed.joined(separator: "\n  "))
                // What runs with the declared libraries alone.
                for name in ["checksums", "initdb", "server start", "pg_dump", "pg_upgrade --help", "server stop"] {
                    #expect(check(name, of: bundle)?.passed == true, "\(bundle.id): \(name): \(String(describing: check(name, of: bundle)))")
                }
                // A finding: neither manifest declares psql's libreadline.so.8 (the import's host
                // library scan misses it), so every check through psql fails, named with the file.
                for name in ["timezone Europe/Berlin", "text sort", "CREATE EXTENSION pgcrypto"] {
                    let failed = try #require(check(name, of: bundle), "\(bundle.id): no check \(name)")
                    #expect(!failed.passed)
                    if name != "CREATE EXTENSION pgcrypto" {
                        #expect(failed.detail?.contains("libreadline.so.8 is missing (needed by ") == true && failed.detail?.contains("bin/psql") == true,
                                "\(bundle.id): \(name): \(failed.detail ?? "")")
                    }
                }
                #expect(!verification.passed)
                // Unvendored: its tenants see the host's /usr, so these failures do not refuse it.
                #expect(verification.usable, "\(verification.note ?? "")")
            }
            print("import of \(Self.debian) with its verification took \(importTook)")

            // `bundle verify` again: ✓/✗ per check, exit status 1 on any failure; and its time.
            let verifyStarted = ContinuousClock.now
            let again = try await harness.cli(["bundle", "verify", Self.debian])
            print("bundle verify \(Self.debian) took \(ContinuousClock.now - verifyStarted)")
            #expect(again.status == .exited(1))
            #expect(again.stdout.contains("✓ initdb") && again.stdout.contains("✗ timezone Europe/Berlin"), "\(again.stdout)")

            // A file changed by hand: the checksums check names it, and new tenants refuse the bundle.
            let tarballFile = tarball.path + "/share/extension/pgcrypto.control"
            let original = try String(contentsOfFile: tarballFile, encoding: .utf8)
            try (original + "# edited\n").write(toFile: tarballFile, atomically: false, encoding: .utf8)
            let edited = try await harness.cli(["bundle", "verify", tarball.id])
            #expect(edited.status == .exited(1))
            #expect(edited.stdout.contains("✗ checksums: share/extension/pgcrypto.control"), "\(edited.stdout)")
            all = try await bundles(harness)
            #expect(all[tarball.id]?.verification?.usable == false)
            let refused = try await harness.cli(["tenant", "create", "refused", "--bundle", tarball.id, "--password", "secret-refused"])
            #expect(!refused.succeeded)
            #expect(refused.stderr.contains("checksums") && refused.stderr.contains("pgfleet bundle verify \(tarball.id)"), "\(refused.stderr)")
            try original.write(toFile: tarballFile, atomically: false, encoding: .utf8)
            _ = try await harness.cli(["bundle", "verify", tarball.id])
            #expect(try await bundles(harness)[tarball.id]?.verification?.usable == true)

            // A library taken out of the declared set: named with the file that needs it.
            let manifestPath = debian.path + "/manifest.json"
            let manifestData = try Data(contentsOf: URL(fileURLWithPath: manifestPath))
            var manifest = try #require(try JSONSerialization.jsonObject(with: manifestData) as? [String: Any])
            var host = try #require(manifest["host"] as? [String: Any])
            let libraries = try #require(host["libraries"] as? [[String: Any]])
            #expect(libraries.contains { $0["soname"] as? String == "libzstd.so.1" }, "\(libraries)")
            host["libraries"] = libraries.filter { $0["soname"] as? String != "libzstd.so.1" }
            manifest["host"] = host
            try JSONSerialization.data(withJSONObject: manifest, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: manifestPath))
            let missing = try await harness.cli(["bundle", "verify", Self.debian])
            #expect(missing.status == .exited(1))
            let initdb = try #require(check("initdb", of: try await bundles(harness)[Self.debian]))
            #expect(!initdb.passed)
            #expect(initdb.detail?.contains("libzstd.so.1 is missing (needed by ") == true, "\(initdb.detail ?? "")")
            #expect(initdb.detail?.contains("bin/postgres") == true, "\(initdb.detail ?? "")")
            #expect(initdb.detail?.contains("error while loading shared libraries: libzstd.so.1: cannot open shared object file") == true)

            // Nothing of the verifications is left: no work directory under the root, no process of nobody's from it.
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: harness.root).filter { $0.hasPrefix(".verify-") }
            #expect(leftovers.isEmpty, "\(leftovers)")
        }
    }
}
