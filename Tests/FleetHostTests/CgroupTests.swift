import FleetCore
import FleetHost
import Foundation
import Testing

/// A fake host: `proc/self/{cgroup,mountinfo}` and control files as plain files under a temp dir.
struct FakeHost {
    let root: String

    init(cgroup: String, mountinfo: String) throws {
        root = NSTemporaryDirectory() + "fake-host-\(UUID().uuidString)"
        try write(cgroup, "proc/self/cgroup")
        try write(mountinfo, "proc/self/mountinfo")
    }

    var host: HostRoot { HostRoot(root) }

    func write(_ text: String, _ relative: String) throws {
        let path = root + "/" + relative
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: path, atomically: false, encoding: .utf8)
    }

    func read(_ relative: String) -> String? { try? String(contentsOfFile: root + "/" + relative, encoding: .utf8) }

    /// Control files a kernel would create in a new cgroup directory.
    func controlFiles(_ directory: String, _ files: [String: String]) throws {
        for (name, value) in files { try write(value, directory + "/" + name) }
    }

    func remove() { try? FileManager.default.removeItem(atPath: root) }
}

@Suite struct CgroupLayoutTests {
    static let hybridCgroup = """
        9:name=systemd:/
        8:pids:/
        7:blkio:/
        4:memory:/process_api/de06
        2:cpuacct:/
        1:cpu:/
        0::/
        """
    static let hybridMountinfo = """
        31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
        32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
        33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
        35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
        38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
        39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
        40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
        """

    @Test func hybridAsOnThisHost() throws {
        let fake = try FakeHost(cgroup: Self.hybridCgroup, mountinfo: Self.hybridMountinfo)
        defer { fake.remove() }
        try fake.write("hugetlb\n", "sys/fs/cgroup/unified/cgroup.controllers")
        let layout = try CgroupLayout.discover(root: fake.host)
        #expect(layout.hierarchy(for: .memory) == CgroupHierarchy(version: .v1, mountPoint: "/sys/fs/cgroup/memory", ownPath: "/process_api/de06", controllers: ["memory"]))
        #expect(layout.hierarchy(for: .cpu)?.mountPoint == "/sys/fs/cgroup/cpu")
        #expect(layout.hierarchy(for: .cpuAccounting)?.mountPoint == "/sys/fs/cgroup/cpuacct")
        #expect(layout.hierarchy(for: .io)?.mountPoint == "/sys/fs/cgroup/blkio")
        #expect(layout.hierarchy(for: .hugetlb) == CgroupHierarchy(version: .v2, mountPoint: "/sys/fs/cgroup/unified", ownPath: "/", controllers: ["hugetlb"]))
    }

    @Test func pureV1WithCpuAndCpuacctTogetherAndAnEscapedMountPoint() throws {
        let fake = try FakeHost(
            cgroup: "5:cpu,cpuacct:/svc\n4:memory:/svc\n3:pids:/svc\n",
            mountinfo: """
                32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
                33 31 0:30 / /sys/fs/my\\040cgroups/memory rw - cgroup cgroup rw,memory
                34 31 0:31 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
                35 31 0:31 /nested /other/pids rw - cgroup cgroup rw,pids
                """
        )
        defer { fake.remove() }
        let layout = try CgroupLayout.discover(root: fake.host)
        #expect(layout.hierarchy(for: .cpu) == layout.hierarchy(for: .cpuAccounting))
        #expect(layout.hierarchy(for: .cpu)?.controllers == ["cpu", "cpuacct"])
        #expect(layout.hierarchy(for: .memory)?.mountPoint == "/sys/fs/my cgroups/memory")
        #expect(layout.hierarchy(for: .pids)?.mountPoint == "/sys/fs/cgroup/pids")
        #expect(layout.hierarchy(for: .io) == nil)
        #expect(layout.distinctHierarchies.count == 3)
    }

    @Test func noCgroupsIsAClearError() throws {
        let fake = try FakeHost(cgroup: "", mountinfo: "")
        defer { fake.remove() }
        try FileManager.default.removeItem(atPath: fake.root + "/proc/self/cgroup")
        #expect(throws: FleetError.self) { try CgroupLayout.discover(root: fake.host) }
    }
}

@Suite struct TenantCgroupsTests {
    static let v2Mountinfo = "30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"

    /// A pure v2 host where the daemon runs in /pgfleet.service, alone.
    static func v2Host() throws -> FakeHost {
        let fake = try FakeHost(cgroup: "0::/pgfleet.service\n", mountinfo: v2Mountinfo)
        try fake.write("cpuset cpu io memory hugetlb pids\n", "sys/fs/cgroup/pgfleet.service/cgroup.controllers")
        try fake.write("", "sys/fs/cgroup/pgfleet.service/cgroup.subtree_control")
        try fake.write("", "sys/fs/cgroup/pgfleet.service/cgroup.procs")
        return fake
    }

    @Test func v2MovesTheDaemonIntoALeafThenHandsTheControllersDown() throws {
        let fake = try Self.v2Host()
        defer { fake.remove() }
        let cgroups = TenantCgroups(layout: try CgroupLayout.discover(root: fake.host), root: fake.host, groupName: "pgfleet-x")
        let service = "sys/fs/cgroup/pgfleet.service"
        for directory in ["\(service)/pgfleet-x", "\(service)/pgfleet-x/tenants"] { try fake.write("", directory + "/cgroup.subtree_control") }
        try fake.write("", "\(service)/pgfleet-x/daemon/cgroup.procs")
        #expect(try cgroups.prepare().isEmpty)
        #expect(fake.read("\(service)/pgfleet-x/daemon/cgroup.procs") == String(getpid()))
        for directory in [service, "\(service)/pgfleet-x", "\(service)/pgfleet-x/tenants"] {
            #expect(fake.read(directory + "/cgroup.subtree_control") == "+cpu +memory +pids +io +hugetlb", "\(directory)")
        }
    }

    @Test func v2RefusesACgroupSharedWithOtherProcesses() throws {
        let fake = try Self.v2Host()
        defer { fake.remove() }
        try fake.write("4242\n", "sys/fs/cgroup/pgfleet.service/cgroup.procs")
        try fake.write("", "sys/fs/cgroup/pgfleet.service/pgfleet-x/daemon/cgroup.procs")
        let cgroups = TenantCgroups(layout: try CgroupLayout.discover(root: fake.host), root: fake.host, groupName: "pgfleet-x")
        #expect {
            _ = try cgroups.prepare()
        } throws: { error in "\(error)".contains("also holds processes that are not pgfleet's (4242)") && "\(error)".contains("Delegate=yes") }
    }

    @Test func v2WritesEachLimitAndClearsIt() throws {
        let fake = try Self.v2Host()
        defer { fake.remove() }
        let cgroups = TenantCgroups(layout: try CgroupLayout.discover(root: fake.host), root: fake.host, groupName: "pgfleet-x")
        let tenant = "sys/fs/cgroup/pgfleet.service/pgfleet-x/tenants/acme"
        try fake.controlFiles(tenant, ["cpu.max": "max 100000", "memory.max": "max", "memory.swap.max": "max", "pids.max": "max", "io.weight": "default 100", "cgroup.procs": ""])
        let limits = TenantLimits(cpuMillicores: 500, memoryBytes: 256 << 20, pids: 200, ioWeight: 50)
        #expect(try cgroups.apply(limits, to: "acme").isEmpty)
        #expect(fake.read(tenant + "/cpu.max") == "50000 100000")
        #expect(fake.read(tenant + "/memory.max") == String(256 << 20))
        #expect(fake.read(tenant + "/memory.swap.max") == "0")
        #expect(fake.read(tenant + "/pids.max") == "200")
        #expect(fake.read(tenant + "/io.weight") == "default 50")
        _ = try cgroups.apply(.none, to: "acme")
        #expect(fake.read(tenant + "/cpu.max") == "max 100000")
        #expect(fake.read(tenant + "/memory.max") == "max")
        #expect(fake.read(tenant + "/memory.swap.max") == "max")
        #expect(fake.read(tenant + "/pids.max") == "max")
        #expect(cgroups.procsFiles(of: "acme") == [fake.root + "/" + tenant + "/cgroup.procs"])
    }

    @Test func v2UsageAndOOMKills() throws {
        let fake = try Self.v2Host()
        defer { fake.remove() }
        let cgroups = TenantCgroups(layout: try CgroupLayout.discover(root: fake.host), root: fake.host, groupName: "pgfleet-x")
        let tenant = "sys/fs/cgroup/pgfleet.service/pgfleet-x/tenants/acme"
        try fake.controlFiles(tenant, [
            "memory.current": "41943040\n", "memory.events": "low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\n",
            "cpu.stat": "usage_usec 1234567\nuser_usec 1000000\n", "pids.current": "9\n", "cgroup.procs": "10\n11\n",
        ])
        #expect(cgroups.usage(of: "acme") == TenantUsage(memoryBytes: 40 << 20, cpuMicroseconds: 1_234_567, pids: 9, oomKills: 2))
        #expect(cgroups.processes(of: "acme") == [10, 11])
    }

    /// The hybrid host of this machine: v1 for every limit.
    static func v1Host() throws -> FakeHost {
        try FakeHost(cgroup: CgroupLayoutTests.hybridCgroup, mountinfo: CgroupLayoutTests.hybridMountinfo)
    }

    @Test func v1WritesQuotaMemoryAndMemswInTheOrderTheKernelAccepts() throws {
        let fake = try Self.v1Host()
        defer { fake.remove() }
        let cgroups = TenantCgroups(layout: try CgroupLayout.discover(root: fake.host), root: fake.host, groupName: "pgfleet-x")
        #expect(try cgroups.prepare().isEmpty)
        let memory = "sys/fs/cgroup/memory/process_api/de06/pgfleet-x/tenants/acme"
        let cpu = "sys/fs/cgroup/cpu/pgfleet-x/tenants/acme"
        try fake.controlFiles(memory, ["memory.limit_in_bytes": "9223372036854771712", "memory.memsw.limit_in_bytes": "9223372036854771712"])
        try fake.controlFiles(cpu, ["cpu.cfs_quota_us": "-1", "cpu.cfs_period_us": "100000"])
        try fake.controlFiles("sys/fs/cgroup/pids/pgfleet-x/tenants/acme", ["pids.max": "max"])
        try fake.controlFiles("sys/fs/cgroup/blkio/pgfleet-x/tenants/acme", [:])
        let notes = try cgroups.apply(TenantLimits(cpuMillicores: 1500, memoryBytes: 512 << 20, pids: 64, ioWeight: 100), to: "acme")
        #expect(fake.read(cpu + "/cpu.cfs_quota_us") == "150000")
        #expect(fake.read(memory + "/memory.limit_in_bytes") == String(512 << 20))
        #expect(fake.read(memory + "/memory.memsw.limit_in_bytes") == String(512 << 20))
        #expect(fake.read("sys/fs/cgroup/pids/pgfleet-x/tenants/acme/pids.max") == "64")
        // No blkio.weight file: no BFQ or CFQ scheduler, said so.
        #expect(notes.count == 1 && notes[0].contains("--io-weight is not enforced"), "\(notes)")
        try fake.write("1", "sys/fs/cgroup/blkio/pgfleet-x/tenants/acme/blkio.weight")
        #expect(try cgroups.apply(TenantLimits(ioWeight: 100), to: "acme").isEmpty)
        #expect(fake.read("sys/fs/cgroup/blkio/pgfleet-x/tenants/acme/blkio.weight") == "500")
        #expect(fake.read(cpu + "/cpu.cfs_quota_us") == "-1")
        #expect(fake.read(memory + "/memory.limit_in_bytes") == "-1")
        #expect(cgroups.procsFiles(of: "acme").count == 5)
    }

    @Test func v1UsageReadsCpuacctInNanoseconds() throws {
        let fake = try Self.v1Host()
        defer { fake.remove() }
        let cgroups = TenantCgroups(layout: try CgroupLayout.discover(root: fake.host), root: fake.host, groupName: "pgfleet-x")
        try fake.controlFiles("sys/fs/cgroup/memory/process_api/de06/pgfleet-x/tenants/acme", [
            "memory.usage_in_bytes": "1048576\n", "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        ])
        try fake.controlFiles("sys/fs/cgroup/cpuacct/pgfleet-x/tenants/acme", ["cpuacct.usage": "2500000000\n"])
        try fake.controlFiles("sys/fs/cgroup/pids/pgfleet-x/tenants/acme", ["pids.current": "12\n"])
        #expect(cgroups.usage(of: "acme") == TenantUsage(memoryBytes: 1 << 20, cpuMicroseconds: 2_500_000, pids: 12, oomKills: 3))
    }

    @Test func aWriteTheKernelRefusesNamesTheFileAndTheValue() throws {
        let fake = try Self.v1Host()
        defer { fake.remove() }
        let cgroups = TenantCgroups(layout: try CgroupLayout.discover(root: fake.host), root: fake.host, groupName: "pgfleet-x")
        // The tenant's directory does not exist: every write fails, none crashes.
        #expect {
            _ = try cgroups.apply(TenantLimits(pids: 64), to: "gone")
        } throws: { error in "\(error)".contains("/pgfleet-x/tenants/gone/") && "\(error)".contains("(writing \"") && "\(error)".contains("No such file") }
    }

    @Test func staleGroupsOfUnknownTenantsAreRemovedOnlyWhenEmpty() throws {
        let fake = try Self.v1Host()
        defer { fake.remove() }
        let cgroups = TenantCgroups(layout: try CgroupLayout.discover(root: fake.host), root: fake.host, groupName: "pgfleet-x")
        _ = try cgroups.prepare()
        for tenant in ["kept", "dropped"] { try cgroups.create(tenant) }
        // A real cgroup with processes refuses rmdir; here a file in it plays that part.
        try fake.write("1\n", "sys/fs/cgroup/pids/pgfleet-x/tenants/busy/cgroup.procs")
        #expect(cgroups.removeStale(keeping: ["kept"]) == ["dropped"])
        #expect(cgroups.exists("kept") && !cgroups.exists("dropped"))
        #expect(FileManager.default.fileExists(atPath: fake.root + "/sys/fs/cgroup/pids/pgfleet-x/tenants/busy"))
    }

    @Test func theGroupNameIsStablePerRoot() {
        #expect(TenantCgroups.groupName(forRoot: "/var/lib/pgfleet") == TenantCgroups.groupName(forRoot: "/var/lib/pgfleet"))
        #expect(TenantCgroups.groupName(forRoot: "/var/lib/pgfleet") != TenantCgroups.groupName(forRoot: "/tmp/other"))
        #expect(TenantCgroups.groupName(forRoot: "/x").hasPrefix("pgfleet-"))
    }
}
