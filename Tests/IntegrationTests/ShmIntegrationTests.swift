import FleetCore
import FleetHost
import FleetSystem
import Foundation
import Testing

/// Seed 004 on this host: parallel query's dynamic shared memory in a small /dev/shm.
@Suite(.serialized, integrationTrait)
struct ShmIntegrationTests {
    static let parallelHashJoin = """
        set max_parallel_workers_per_gather = 2; set parallel_setup_cost = 0; set parallel_tuple_cost = 0;
        set min_parallel_table_scan_size = 0; set enable_mergejoin = off; set enable_nestloop = off;
        set enable_parallel_hash = on; set work_mem = '4MB';
        select count(*) from shm_a join shm_b using (id)
        """
    static let tables = """
        create table shm_a as select g as id, md5(g::text) as t from generate_series(1, 300000) g;
        create table shm_b as select g as id, md5(g::text) as t from generate_series(1, 300000) g;
        analyze shm_a; analyze shm_b
        """

    @Test func aParallelHashJoinFailsInABareTwoMegabyteShmAndRunsInATenant() async throws {
        // Without pgfleet: bwrap's --size 2097152 --tmpfs /dev/shm, as in the seed.
        let fixture = try await SandboxFixture()
        defer { fixture.tearDown() }
        var plan = fixture.plan(network: .none)
        plan.shmSize = 2 << 20
        let started = Date()
        let bwrap = try fixture.start(plan)
        try await fixture.waitUntilReady(watching: bwrap, since: started)
        _ = try await fixture.sql(Self.tables)
        let bare = try await Command.run(
            SandboxRecipeTests.bin + "/psql", ["-h", fixture.socketDirectory, "-U", "postgres", "-d", "postgres", "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", Self.parallelHashJoin])
        #expect(!bare.succeeded)
        #expect(bare.stderr.contains("No space left on device"), "\(bare.stderr)")

        try await withHarness(extraServeArguments: ["--no-system-bundles", "--listen", "none"]) { harness in
            try await harness.startDaemon()
            try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
            let (tenant, password) = try await harness.createTenant("shm", extra: ["--huge-pages", "off"])
            _ = try await harness.mustQuery(tenant, password: password, Self.tables)
            #expect(try await harness.mustQuery(tenant, password: password, Self.parallelHashJoin) == "300000")
            let info = try await harness.info("shm")
            #expect(info.usage?.shmSizeBytes == ShmSizing.unlimited, "\(String(describing: info.usage))")
            let details = try await harness.mustRun(["tenant", "info", "shm"])
            #expect(details.contains("/dev/shm:") && details.contains("of 1GB"), "\(details)")

            // A /dev/shm these settings cannot fit is refused, at create and at set, with the reason.
            let create = try await harness.cli(["tenant", "create", "tiny", "--shm", "2MB"])
            #expect(!create.succeeded)
            #expect(create.stderr.contains("--shm 2MB cannot hold the tenant's dynamic shared memory"), "\(create.stderr)")
            let set = try await harness.cli(["tenant", "set", "shm", "--shm", "2MB"])
            #expect(!set.succeeded)
            #expect(set.stderr.contains("max_parallel_workers_per_gather"), "\(set.stderr)")
            // With parallel query off, a small one fits; given at the next start.
            _ = try await harness.mustRun(["tenant", "set", "shm", "max_parallel_workers_per_gather=0", "--shm", "16MB", "--restart"])
            let small = try await harness.waitFor("shm", state: .running)
            #expect(small.usage?.shmSizeBytes == 16 << 20, "\(String(describing: small.usage))")
            #expect(try await harness.mustQuery(small, password: password, "select count(*) from shm_a join shm_b using (id)") == "300000")
        }
    }
}
