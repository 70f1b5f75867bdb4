import FleetCore
import FleetSystem
import Foundation
import Testing

/// The limits of issue 13, on this host's real cgroups: a tenant that forks, eats memory or spins
/// the CPU stays inside its own limits, and its neighbour does not notice.
@Suite(.serialized, integrationTrait)
struct LimitsIntegrationTests {
    static let serve = ["--no-system-bundles", "--listen", "none"]

    /// The cgroup paths of a process, one line per hierarchy (`4:memory:/x/y`).
    static func cgroups(of pid: Int32) -> [String] {
        ((try? String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    /// Whether every one of the tenant's postgres processes is in its cgroup in every hierarchy pgfleet uses.
    static func allInTenantGroup(_ tenant: TenantInfo) -> Bool {
        guard let user = OSUsers.lookup(tenant.osUser) else { return false }
        let pids = ProcFS.processes(ofUID: user.uid)
        return !pids.isEmpty && pids.allSatisfy { pid in
            let lines = cgroups(of: pid).filter { $0.contains(":memory:") || $0.contains(":pids:") || $0.contains(":cpu:") || $0.contains(":cpu,") }
            return !lines.isEmpty && lines.allSatisfy { $0.hasSuffix("/tenants/\(tenant.name)") }
        }
    }

    @Test func limitsAreShownRefusedWhenTheyCannotFitAndChangedWhileRunning() async throws {
        try await withHarness(extraServeArguments: Self.serve + ["--default-pids", "300"]) { harness in
            try await harness.startDaemon()
            try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])

            // Refused before anything is made, with the arithmetic.
            let tooSmall = try await harness.cli(["tenant", "create", "small", "--pids", "20"])
            #expect(!tooSmall.succeeded)
            #expect(tooSmall.stderr.contains("the process limit 20 is too small: PostgreSQL may run 54 processes"), "\(tooSmall.stderr)")
            #expect(try await harness.list().isEmpty)
            let badValue = try await harness.cli(["tenant", "create", "small", "--memory", "lots"])
            #expect(badValue.stderr.contains("--memory takes a size such as 256MB"), "\(badValue.stderr)")

            let (tenant, password) = try await harness.createTenant("limited", extra: ["--cpu", "0.5", "--memory", "256MB"])
            #expect(tenant.limits == TenantLimits(cpuMillicores: 500, memoryBytes: 256 << 20, pids: 300, hugePages: .try))
            #expect(Self.allInTenantGroup(tenant), "\(Self.cgroups(of: tenant.pid ?? 0))")
            let usage = try #require(tenant.usage)
            #expect((usage.memoryBytes ?? 0) > 1 << 20)
            #expect((usage.pids ?? 0) >= 5)
            #expect(usage.oomKills == 0)
            let details = try await harness.mustRun(["tenant", "info", "limited"])
            #expect(details.contains("of 256MB") && details.contains("limit 0.5 cores") && details.contains("of 300"), "\(details)")

            // pgfleet's own arithmetic of a new tenant's settings is the tenant's real one.
            for (setting, value) in [("shared_buffers", "16MB"), ("max_connections", "40"), ("max_worker_processes", "2"), ("max_wal_senders", "2"), ("wal_buffers", "128kB")] {
                #expect(try await harness.mustQuery(tenant, password: password, "show \(setting)") == value)
            }

            // A setting that cannot fit the memory limit is refused, and nothing changes.
            let refused = try await harness.cli(["tenant", "set", "limited", "shared_buffers=512MB"])
            #expect(!refused.succeeded)
            #expect(refused.stderr.contains("the memory limit 256MB is too small for these settings"), "\(refused.stderr)")
            #expect(refused.stderr.contains("shared_buffers 512MB"), "\(refused.stderr)")
            // A new limit is checked with the settings given beside it, and applied while running.
            let both = try await harness.mustRun(["tenant", "set", "limited", "--memory", "1GB", "shared_buffers=512MB"])
            #expect(both.contains("limits now: cpu 0.5, memory 1GB, pids 300"), "\(both)")
            let memoryLimit = Self.cgroups(of: tenant.pid ?? 0).first { $0.contains(":memory:") }.map { line -> String in
                let path = String(line.split(separator: ":", maxSplits: 2)[2])
                return (try? String(contentsOfFile: "/sys/fs/cgroup/memory\(path)/memory.limit_in_bytes", encoding: .utf8)) ?? ""
            }
            #expect(memoryLimit?.trimmingCharacters(in: .whitespacesAndNewlines) == String(1 << 30))
            let cleared = try await harness.mustRun(["tenant", "set", "limited", "--cpu", "none", "shared_buffers=16MB"])
            #expect(cleared.contains("limits now: memory 1GB, pids 300"), "\(cleared)")
            #expect(try await harness.info("limited").limits?.cpuMillicores == nil)

            // A restart keeps the tenant in its groups; a drop removes them.
            let pid = try #require(try await harness.info("limited").pid)
            try await harness.mustRun(["tenant", "restart", "limited"])
            let restarted = try await harness.waitForRestart("limited", replacing: pid)
            #expect(Self.allInTenantGroup(restarted))
            let groups = Self.cgroups(of: restarted.pid ?? 0).compactMap { line -> String? in
                let parts = line.split(separator: ":", maxSplits: 2).map(String.init)
                guard parts.count == 3, ["memory", "pids"].contains(parts[1]) else { return nil }
                return "/sys/fs/cgroup/\(parts[1])\(parts[2])"
            }
            #expect(groups.count == 2 && groups.allSatisfy { FileManager.default.fileExists(atPath: $0) }, "\(groups)")
            try await harness.mustRun(["tenant", "drop", "limited", "--yes"])
            #expect(groups.allSatisfy { !FileManager.default.fileExists(atPath: $0) }, "\(groups)")
        }
    }

    @Test func aForkLoopStopsAtItsPidsLimitAndTheNeighbourAnswers() async throws {
        try await withHarness(extraServeArguments: Self.serve) { harness in
            try await harness.startDaemon()
            try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
            let (a, passwordA) = try await harness.createTenant("forker", extra: ["--pids", "100"])
            let (b, passwordB) = try await harness.createTenant("neighbour")
            // 400 sleeps from the tenant superuser's shell: the kernel refuses the forks beyond 100.
            _ = try await harness.psql(a, password: passwordA,
                "COPY (SELECT 1) TO PROGRAM 'for i in $(seq 400); do sleep 20 & done 2>/dev/null; exit 0'")
            let peak = try await harness.info("forker").usage?.pids ?? 0
            #expect(peak <= 100 && peak >= 90, "the tenant runs \(peak) processes")
            #expect(try await harness.mustQuery(b, password: passwordB, "SELECT 42") == "42")
            // Once the sleeps end, the tenant itself answers again.
            #expect(try await Harness.eventually { try await harness.psql(a, password: passwordA, "SELECT 7").stdout.contains("7") })
            #expect(try await harness.info("neighbour").restarts == 0)
        }
    }

    @Test func aMemoryHogIsKilledInsideItsTenantAndThePostmasterRecovers() async throws {
        try await withHarness(extraServeArguments: Self.serve) { harness in
            try await harness.startDaemon()
            try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
            let (a, passwordA) = try await harness.createTenant("hog", extra: ["--memory", "256MB"])
            let (b, passwordB) = try await harness.createTenant("calm")
            let postmaster = try #require(a.pid)
            // An in-memory sort of about 600 MB under a 256 MB limit.
            let hog = try await harness.psql(a, password: passwordA,
                "SET work_mem = '2GB'; SELECT count(*) FROM (SELECT g, md5(g::text) || md5((g+1)::text) AS t FROM generate_series(1, 4000000) g ORDER BY t) s")
            #expect(!hog.succeeded, "the sort finished within 256MB: \(hog.stdout)")
            let after = try await harness.info("hog")
            #expect(after.pid == postmaster, "the postmaster itself was replaced")
            #expect((after.usage?.oomKills ?? 0) >= 1, "\(String(describing: after.usage))")
            // Crash recovery first (the postmaster resets its shared memory after a backend was killed).
            #expect(try await Harness.eventually { try await harness.psql(a, password: passwordA, "SELECT 1").stdout.contains("1") })
            #expect(try await harness.info("hog").restarts == 0)
            #expect(try await harness.mustQuery(b, password: passwordB, "SELECT 2") == "2")
            #expect(try await harness.info("calm").restarts == 0)
            let details = try await harness.mustRun(["tenant", "info", "hog"])
            #expect(details.contains("oom kills"), "\(details)")
        }
    }

    @Test func aCPUHogGetsHalfACoreAtMost() async throws {
        try await withHarness(extraServeArguments: Self.serve) { harness in
            try await harness.startDaemon()
            try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
            let (a, password) = try await harness.createTenant("spinner", extra: ["--cpu", "0.5"])
            // Two spinning backends (this host has two cores) for 14 s each.
            let spin = "SET statement_timeout = '14s'; SELECT sum(i) FROM generate_series(1, 100000000000) i"
            let spinners = (0..<2).map { _ in Task { try await harness.psql(a, password: password, spin) } }
            #expect(try await Harness.eventually(timeout: .seconds(20)) { Harness.busyBackends(of: a) == 2 })
            let before = try #require(try await harness.info("spinner").usage?.cpuMicroseconds)
            let started = ContinuousClock.now
            try await Task.sleep(for: .seconds(10))
            let used = try #require(try await harness.info("spinner").usage?.cpuMicroseconds) - before
            let elapsed = ContinuousClock.now - started
            let cores = Double(used) / 1_000_000 / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
            for spinner in spinners { _ = try? await spinner.value }
            #expect(cores <= 0.6, "the tenant used \(cores) cores")
            #expect(cores >= 0.3, "the tenant used only \(cores) cores: was it spinning?")
        }
    }

    @Test func readoptionAfterKill9KeepsEveryTenantInItsCgroup() async throws {
        try await withHarness(extraServeArguments: Self.serve) { harness in
            try await harness.startDaemon()
            try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
            let (a, password) = try await harness.createTenant("kept", extra: ["--memory", "512MB", "--pids", "200"])
            #expect(Self.allInTenantGroup(a))
            await harness.killDaemon()
            try await harness.startDaemon()
            let again = try await harness.waitFor("kept", state: .running)
            #expect(again.pid == a.pid, "re-adopted, not restarted")
            #expect(Harness.postmasters(of: a.dataDirectory).count == 1)
            #expect(Self.allInTenantGroup(again))
            #expect(again.usage?.pids != nil)
            #expect(try await harness.mustQuery(again, password: password, "SELECT 3") == "3")
        }
    }
}
