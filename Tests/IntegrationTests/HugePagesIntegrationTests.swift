import FleetCore
import FleetHost
import FleetSystem
import Foundation
import Testing

/// Seed 002 on this host: huge pages under a cgroup hugetlb limit. The mmap succeeds, the first
/// touch beyond the limit is a SIGBUS. First without pgfleet, then what pgfleet makes of it.
/// These tests change `vm.nr_hugepages`, a host-wide setting: scripts/test.sh runs them alone,
/// and each puts it back as it found it.
@Suite(.serialized, integrationTrait)
struct HugePagesIntegrationTests {
    static let serve = ["--no-system-bundles", "--listen", "none"]
    static let pageBytes: UInt64 = 2 << 20

    /// Runs `body` with the host's 2 MB pool at `pages`, and puts the pool back afterwards.
    static func withPool(_ pages: Int, _ body: (HugePageHost) async throws -> Void) async throws {
        let host = HugePageHost()
        let original = try #require(host.pool(pageBytes: pageBytes), "this kernel has no 2 MB huge pages").total
        defer { _ = try? host.setPoolSize(original, pageBytes: pageBytes) }
        let got = try host.setPoolSize(pages, pageBytes: pageBytes)
        try #require(got == pages, "the kernel gave \(got) of \(pages) huge pages (memory too fragmented?)")
        try await body(host)
    }

    @Test(.timeLimit(.minutes(3))) func aBarePostmasterUnderAHugetlbLimitDiesOfSIGBUS() async throws {
        try await Self.withPool(64) { _ in
            let fixture = try await SandboxFixture()
            let unified = "/sys/fs/cgroup/unified"
            let group = unified + "/pgfleet-seed002-" + String(UInt32.random(in: 0..<UInt32.max), radix: 36)
            let rootControl = (try? String(contentsOfFile: unified + "/cgroup.subtree_control", encoding: .utf8)) ?? ""
            defer {
                for pid in ProcFS.processes(ofUID: fixture.user.uid) { kill(pid, SIGKILL) }
                for _ in 0..<500 where !ProcFS.processes(ofUID: fixture.user.uid).isEmpty { usleep(10_000) }
                rmdir(group)
                if !rootControl.contains("hugetlb") { try? Files.write("-hugetlb", to: unified + "/cgroup.subtree_control", mode: 0o644, sync: false) }
                fixture.tearDown()
            }
            try #require(FileManager.default.fileExists(atPath: unified + "/cgroup.controllers"), "no cgroup v2 tree with hugetlb here")
            try "+hugetlb".write(toFile: unified + "/cgroup.subtree_control", atomically: false, encoding: .utf8)
            try FileManager.default.createDirectory(atPath: group, withIntermediateDirectories: false)
            // The seed's numbers: 100MB of shared buffers (57 pages) under a 64 MB limit, with no
            // reservation limit, and 64 pages in the host's pool.
            try String(64 << 20).write(toFile: group + "/hugetlb.2MB.max", atomically: false, encoding: .utf8)
            let handle = try #require(FileHandle(forWritingAtPath: fixture.data + "/postgresql.conf"))
            handle.seekToEndOfFile()
            handle.write(Data("shared_buffers = 100MB\nhuge_pages = on\n".utf8))
            try handle.close()
            let log = try Files.openLog(fixture.base + "/seed002.log", mode: 0o644, owner: nil)
            defer { close(log) }
            var spec = SpawnSpec(executable: SandboxRecipeTests.bin + "/postgres", arguments: ["-D", fixture.data], user: fixture.user, newSession: true)
            spec.cgroupProcsFiles = [group + "/cgroup.procs"]
            let started = Date()
            let pid = try Spawner.spawn(spec, stdout: log, stderr: log)
            defer { kill(pid, SIGKILL) }
            // It starts: the mmap is within the pool. Pages are touched as buffers fill: writing
            // 100 MB through shared buffers goes past the limit.
            try await fixture.waitUntilReady(watching: pid, since: started)
            let write = try await Command.run(
                SandboxRecipeTests.bin + "/psql", ["-h", fixture.socketDirectory, "-U", "postgres", "-d", "postgres", "-XAtq", "-c",
                "create table fill (t text); insert into fill select repeat('x', 1000) from generate_series(1, 100000)"])
            #expect(!write.succeeded, "the write went through: \(write.stdout)")
            let logFile = fixture.base + "/seed002.log"
            let busError = try await Harness.eventually(timeout: .seconds(60)) {
                ((try? String(contentsOfFile: logFile, encoding: .utf8)) ?? "").contains("terminated by signal 7: Bus error")
            }
            #expect(busError, "no SIGBUS; log:\n\(Files.tail(logFile, lines: 20).joined(separator: "\n"))")
        }
    }

    @Test(.timeLimit(.minutes(10))) func pgfleetGivesExactlyThePagesThatFitRefusesOrStartsWithoutAndStopsASIGBUSLoop() async throws {
        try await withHarness(extraServeArguments: Self.serve) { harness in
            try await harness.startDaemon()
            try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
            let (created, password) = try await harness.createTenant("huge", extra: ["--huge-pages", "off"])
            _ = try await harness.mustRun(["tenant", "set", "huge", "shared_buffers=100MB", "--restart"])
            var needed = 0

            try await Self.withPool(4) { _ in
                // A create with `on` the pool cannot serve is refused before anything is made.
                let refused = try await harness.cli(["tenant", "create", "tight", "--huge-pages", "on"])
                #expect(!refused.succeeded)
                #expect(refused.stderr.contains("× 2MB pages, 4 free"), "\(refused.stderr)")
                #expect(try await harness.list().map(\.name) == ["huge"])
            }

            try await Self.withPool(20) { _ in
                // `on` with too few pages: refused with the numbers, and nothing changes. The
                // seed's 57 pages are for PostgreSQL's defaults; a tenant's own settings need a few fewer.
                let refused = try await harness.cli(["tenant", "set", "huge", "--huge-pages", "on", "--restart"])
                #expect(!refused.succeeded)
                let numbers = refused.stderr.firstMatch(of: /needs (\d+) × 2MB pages, 20 free/)
                needed = Int(numbers?.1 ?? "") ?? 0
                #expect((50...64).contains(needed), "\(refused.stderr)")
                #expect(try await harness.info("huge").limits?.hugePages == .off)

                // `try`: starts on normal pages and says so.
                _ = try await harness.mustRun(["tenant", "set", "huge", "--huge-pages", "try", "--restart"])
                let without = try await harness.waitFor("huge", state: .running)
                #expect(without.usage?.hugePagesNote?.contains("needs \(needed) × 2MB pages, 20 free") == true, "\(String(describing: without.usage))")
                #expect(try await harness.mustQuery(without, password: password, "show huge_pages") == "off")
                #expect(try await harness.mustQuery(without, password: password, "show min_dynamic_shared_memory") == "0")
                let details = try await harness.mustRun(["tenant", "info", "huge"])
                #expect(details.contains("huge pages:") && details.contains("started without huge pages"), "\(details)")
            }

            try await Self.withPool(64) { host in
                _ = try await harness.mustRun(["tenant", "set", "huge", "--huge-pages", "on", "--restart"])
                var tenant = try await harness.waitFor("huge", state: .running)
                #expect(try await harness.mustQuery(tenant, password: password, "show huge_pages") == "on")
                // Its first dynamic shared memory comes out of those pages, not /dev/shm.
                #expect(try await harness.mustQuery(tenant, password: password, "show min_dynamic_shared_memory") == "8MB")
                // Its hugetlb cgroup allows exactly its pages, reservations included, and its shared memory is on them.
                #expect(tenant.usage?.hugePagesLimitBytes == UInt64(needed) * Self.pageBytes, "\(String(describing: tenant.usage))")
                let pool = try #require(host.pool(pageBytes: Self.pageBytes))
                #expect(pool.total - pool.free + pool.reserved >= needed, "\(pool)")

                let conninfo = "host=\(tenant.socketDirectory) port=\(tenant.port) user=postgres dbname=postgres"
                let initialise = try await pgbench(["-i", "-s", "10", "-q"], conninfo: conninfo, password: password)
                #expect(initialise.succeeded, "\(initialise.stderr)")
                let run = try await pgbench(["-c", "4", "-T", "5", "-n"], conninfo: conninfo, password: password)
                #expect(run.succeeded && run.stdout.contains("number of failed transactions: 0"), "\(run.stderr)\n\(run.stdout)")
                tenant = try await harness.info("huge")
                #expect((tenant.usage?.hugePagesBytes ?? 0) > 16 << 20, "\(String(describing: tenant.usage))")

                // SIGBUS twice in a row: restarted once, then failed with the huge-page reason.
                let first = try #require(tenant.pid)
                kill(first, SIGBUS)
                let restarted = try await harness.waitForRestart("huge", replacing: first)
                #expect(restarted.failureReason == nil || restarted.state == .running)
                kill(try #require(restarted.pid), SIGBUS)
                let failed = try await harness.waitFor("huge", state: .failed)
                let reason = failed.failureReason ?? ""
                #expect(reason.contains("SIGBUS") && reason.contains("huge pages") && reason.contains("bus error twice in a row"), "\(reason)")
                _ = created
            }
        }
    }

    @Test(.timeLimit(.minutes(5))) func theManagedPoolGrowsForAStartShrinksWhenTheTenantStopsAndIsRestoredAtShutdown() async throws {
        try await Self.withPool(0) { host in
            try await withHarness(extraServeArguments: Self.serve + ["--huge-pages-pool"]) { harness in
                try await harness.startDaemon()
                try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
                // No pool at all, and `on`: the daemon grows vm.nr_hugepages to exactly the tenant's need.
                let (tenant, password) = try await harness.createTenant("pooled", extra: ["--huge-pages", "on"])
                #expect(try await harness.mustQuery(tenant, password: password, "show huge_pages") == "on")
                let limit = try #require(tenant.usage?.hugePagesLimitBytes, "\(String(describing: tenant.usage))")
                let needed = Int(limit / Self.pageBytes)
                #expect(needed > 0)
                // At least its need: the create's own check grows it by an estimate first.
                #expect((host.pool(pageBytes: Self.pageBytes)?.total ?? 0) >= needed)

                // Stopped, its pages go back to the host.
                _ = try await harness.mustRun(["tenant", "stop", "pooled"])
                let shrunk = try await Harness.eventually(timeout: .seconds(30)) { host.pool(pageBytes: Self.pageBytes)?.total == 0 }
                #expect(shrunk, "\(String(describing: host.pool(pageBytes: Self.pageBytes)))")

                // Started again it gets them again; at the daemon's shutdown the pool is the host's again.
                _ = try await harness.mustRun(["tenant", "start", "pooled"])
                let again = try await harness.waitFor("pooled", state: .running)
                #expect(try await harness.mustQuery(again, password: password, "show huge_pages") == "on")
                #expect(host.pool(pageBytes: Self.pageBytes)?.total == needed)
                _ = try await harness.stopDaemon()
                #expect(host.pool(pageBytes: Self.pageBytes)?.total == 0)
            }
        }
    }
}
