import FleetCore
import FleetHost
import FleetSystem
import Foundation
import Testing

/// `--disk` through pgfleet, on real loop devices: a tenant that fills its quota gets
/// PostgreSQL's own error, never a PANIC, and its neighbour does not notice.
@Suite(.serialized, integrationTrait)
struct DiskQuotaIntegrationTests {
    static let serve = ["--no-system-bundles", "--listen", "none"]

    @Test func aTenantThatFillsItsDiskGetsAnErrorAndItsNeighbourKeepsWriting() async throws {
        try await withHarness(extraServeArguments: Self.serve) { harness in
            try await harness.startDaemon()
            try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
            let tooSmall = try await harness.cli(["tenant", "create", "tiny", "--disk", "32MB"])
            #expect(!tooSmall.succeeded && tooSmall.stderr.contains("32MB"), "\(tooSmall.stderr)")
            #expect(try await harness.list().isEmpty)

            let (full, password) = try await harness.createTenant("full", extra: ["--disk", "128MB"])
            let (calm, calmPassword) = try await harness.createTenant("calm")
            #expect(full.limits?.diskBytes == 128 << 20)
            #expect((full.usage?.diskUsedBytes ?? 0) > 1 << 20)
            let mounts = (MountTable.read()?.mounts ?? []).map(\.mountPoint).filter { $0.hasPrefix(full.dataDirectory.replacingOccurrences(of: "/data", with: "")) }
            #expect(mounts.count == 5, "system, WAL, log and data areas and base/'s bind: \(mounts)")
            let postmaster = try #require(full.pid)

            try await harness.mustQuery(full, password: password, "CREATE TABLE fill(payload text)")
            try await harness.mustQuery(calm, password: calmPassword, "CREATE TABLE steady(payload text)")
            let filling = try await harness.psql(full, password: password, "INSERT INTO fill SELECT repeat('x', 1000) FROM generate_series(1, 300000)")
            #expect(!filling.succeeded)
            #expect(filling.stderr.contains("could not extend file") && filling.stderr.contains("No space left on device"), "\(filling.stderr)")
            // The neighbour writes meanwhile; the full tenant checkpoints, reads and takes new connections, with no crash.
            try await harness.mustQuery(calm, password: calmPassword, "INSERT INTO steady SELECT repeat('y', 1000) FROM generate_series(1, 20000)")
            for _ in 0..<3 {
                try await harness.mustQuery(full, password: password, "CHECKPOINT")
                _ = try await harness.psql(full, password: password, "INSERT INTO fill SELECT repeat('x', 1000) FROM generate_series(1, 50000)")
            }
            #expect(try await harness.mustQuery(full, password: password, "SELECT count(*) >= 0 FROM fill") == "t")
            let after = try await harness.info("full")
            #expect(after.pid == postmaster && after.restarts == 0, "the full tenant's postmaster restarted")
            let log = (try? String(contentsOfFile: full.logFile, encoding: .utf8)) ?? ""
            #expect(!log.contains("PANIC"), "\(log.suffix(2000))")
            #expect(try await harness.mustQuery(calm, password: calmPassword, "SELECT count(*) FROM steady") == "20000")
            // Said where an operator looks: tenant info, and a note under its row in tenant list.
            #expect(after.usage?.diskWarning?.hasPrefix("data area") == true, "\(String(describing: after.usage))")
            let listed = try await harness.mustRun(["tenant", "list"])
            #expect(listed.contains("disk nearly full: data area"), "\(listed)")
            #expect(try await harness.info("calm").restarts == 0)

            // Room again once its data is gone; a larger quota, online.
            try await harness.mustQuery(full, password: password, "DROP TABLE fill")
            try await harness.mustQuery(full, password: password, "CREATE TABLE again AS SELECT repeat('z', 1000) AS payload FROM generate_series(1, 10000)")
            let grown = try await harness.mustRun(["tenant", "set", "full", "--disk", "256MB"])
            #expect(grown.contains("disk quota now 256MB"), "\(grown)")
            try await harness.mustQuery(full, password: password, "INSERT INTO again SELECT repeat('z', 1000) FROM generate_series(1, 100000)")
            #expect(try await harness.mustQuery(full, password: password, "SELECT count(*) FROM again") == "110000")

            // A "reboot": the daemon stopped and every area unmounted; the next daemon mounts them and starts it.
            let tenantDirectory = (full.dataDirectory as NSString).deletingLastPathComponent
            _ = try await harness.stopDaemon()
            try await Command.run("/bin/umount", ["-R", tenantDirectory]).check("umount -R")
            #expect((MountTable.read()?.mounts ?? []).allSatisfy { !$0.mountPoint.hasPrefix(tenantDirectory) })
            try await harness.startDaemon()
            let rebooted = try await harness.waitFor("full", state: .running)
            #expect(try await harness.mustQuery(rebooted, password: password, "SELECT count(*) FROM again") == "110000")

            // Drop leaves no mount and no loop device.
            try await harness.mustRun(["tenant", "drop", "full", "--yes"])
            #expect((MountTable.read()?.mounts ?? []).allSatisfy { !$0.mountPoint.hasPrefix(harness.root + "/") })
            #expect(!FileManager.default.fileExists(atPath: harness.root + "/disks/full"))
        }
    }

    @Test func theReadyPoolKeepsClustersInTheirOwnDiskImages() async throws {
        try await withHarness(extraServeArguments: Self.serve + ["--pool-size", "1", "--pool-disks", "1"]) { harness in
            try await harness.startDaemon()
            try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
            let poolDisks = harness.root + "/pool-disks"
            #expect(try await Harness.eventually(timeout: .seconds(120)) {
                let bundles = (try? FileManager.default.contentsOfDirectory(atPath: poolDisks)) ?? []
                return bundles.contains { bundle in
                    ((try? FileManager.default.contentsOfDirectory(atPath: poolDisks + "/" + bundle)) ?? []).contains { $0.hasPrefix("ready-") }
                }
            }, "no disk entry was made:\n\(harness.serveLog())")
            // A ready entry is images only: nothing of it is mounted.
            #expect((MountTable.read()?.mounts ?? []).allSatisfy { !$0.mountPoint.hasPrefix(poolDisks + "/") })

            let created = try await harness.cli(["tenant", "create", "pooled", "--password", "pooled-secret", "--disk", "256MB"])
            #expect(created.succeeded, "\(created.stderr)")
            #expect(created.stderr.contains("in its own disk images from the pool"), "the progress shown: \(created.stderr)")
            let tenant = try await harness.waitFor("pooled", state: .running)
            #expect(tenant.state == .running && tenant.limits?.diskBytes == 256 << 20)
            let user = try #require(OSUsers.lookup(tenant.osUser))
            var info = stat()
            #expect(stat(tenant.dataDirectory + "/base", &info) == 0 && info.st_uid == user.uid, "the cluster is the tenant's")
            try await harness.mustQuery(tenant, password: "pooled-secret", "CREATE TABLE t AS SELECT repeat('x', 1000) AS payload FROM generate_series(1, 5000)")
            #expect(try await harness.mustQuery(tenant, password: "pooled-secret", "SELECT count(*) FROM t") == "5000")
            // Its quota is its own, not the entry's.
            let filling = try await harness.psql(tenant, password: "pooled-secret", "INSERT INTO t SELECT repeat('x', 1000) FROM generate_series(1, 400000)")
            #expect(filling.stderr.contains("could not extend file"), "\(filling.stderr)")

            try await harness.mustRun(["tenant", "drop", "pooled", "--yes"])
            _ = try await harness.stopDaemon()
            #expect((MountTable.read()?.mounts ?? []).allSatisfy { !$0.mountPoint.hasPrefix(harness.root + "/") }, "mounts left after the daemon stopped")
            #expect(TenantDiskTests.loopDevices(under: harness.root).isEmpty, "loop devices left after the daemon stopped")
        }
    }
}
