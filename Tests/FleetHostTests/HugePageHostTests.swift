import FleetCore
import FleetHost
import Foundation
import Testing

@Suite struct HugePageHostTests {
    /// /proc/meminfo and /sys/kernel/mm/hugepages as a kernel with 2 MB and 1 GB pages shows them.
    static func host(total: Int, free: Int, reserved: Int, release: String = "6.1.0-18-amd64") throws -> FakeHost {
        let fake = try FakeHost(cgroup: "0::/pgfleet.service\n", mountinfo: TenantCgroupsTests.v2Mountinfo)
        try fake.write("MemTotal:       24000000 kB\nHugePages_Total:    \(total)\nHugepagesize:       2048 kB\n", "proc/meminfo")
        try fake.write(release + "\n", "proc/sys/kernel/osrelease")
        let two = "sys/kernel/mm/hugepages/hugepages-2048kB"
        try fake.controlFiles(two, ["nr_hugepages": "\(total)\n", "free_hugepages": "\(free)\n", "resv_hugepages": "\(reserved)\n"])
        try fake.controlFiles("sys/kernel/mm/hugepages/hugepages-1048576kB", ["nr_hugepages": "0\n", "free_hugepages": "0\n", "resv_hugepages": "0\n"])
        try fake.write("cpuset cpu io memory hugetlb pids\n", "sys/fs/cgroup/pgfleet.service/cgroup.controllers")
        return fake
    }

    @Test func readsThePoolOfTheDefaultSize() throws {
        let fake = try Self.host(total: 64, free: 30, reserved: 6)
        defer { fake.remove() }
        let host = HugePageHost(root: fake.host)
        #expect(host.defaultPageBytes == 2 << 20)
        #expect(host.pool() == HugePagePool(pageBytes: 2 << 20, total: 64, free: 30, reserved: 6))
        #expect(host.pool()?.available == 24)
        #expect(host.pageSizes() == [2 << 20, 1 << 30])
        #expect(try host.setPoolSize(80, pageBytes: 2 << 20) == 80)
        #expect(fake.read("sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages") == "80")
    }

    @Test func aTenantIsLimitedToExactlyItsPagesReservationsIncludedAndNoneOfOtherSizes() throws {
        let fake = try Self.host(total: 64, free: 64, reserved: 0)
        defer { fake.remove() }
        let cgroups = TenantCgroups(layout: try CgroupLayout.discover(root: fake.host), root: fake.host, groupName: "pgfleet-x")
        let tenant = "sys/fs/cgroup/pgfleet.service/pgfleet-x/tenants/acme"
        try fake.controlFiles(tenant, [
            "hugetlb.2MB.max": "max", "hugetlb.2MB.rsvd.max": "max", "hugetlb.1GB.max": "max", "hugetlb.1GB.rsvd.max": "max",
            "hugetlb.2MB.current": "0\n",
        ])
        try fake.controlFiles("sys/fs/cgroup/pgfleet.service/pgfleet-x/tenants", ["hugetlb.2MB.rsvd.max": "max"])
        #expect(HugePageHost(root: fake.host).reservationLimitProblem(cgroups: cgroups) == nil)
        #expect(try cgroups.applyHugePages(57, pageBytes: 2 << 20, to: "acme"))
        #expect(fake.read(tenant + "/hugetlb.2MB.max") == String(57 << 21))
        #expect(fake.read(tenant + "/hugetlb.2MB.rsvd.max") == String(57 << 21))
        #expect(fake.read(tenant + "/hugetlb.1GB.max") == "0")
        #expect(fake.read(tenant + "/hugetlb.1GB.rsvd.max") == "0")
        let usage = cgroups.hugePagesUsage(of: "acme", pageBytes: 2 << 20)
        #expect(usage.used == 0)
        #expect(usage.limit == 57 << 21)
        try cgroups.applyHugePages(0, pageBytes: 2 << 20, to: "acme")
        #expect(fake.read(tenant + "/hugetlb.2MB.rsvd.max") == "0")
    }

    @Test func withoutAReservationLimitTheReasonIsGiven() throws {
        let old = try Self.host(total: 64, free: 64, reserved: 0, release: "5.4.0-150-generic")
        defer { old.remove() }
        let cgroups = TenantCgroups(layout: try CgroupLayout.discover(root: old.host), root: old.host, groupName: "pgfleet-x")
        #expect(HugePageHost(root: old.host).reservationLimitProblem(cgroups: cgroups)?.contains("5.7") == true)

        // A kernel whose hugetlb controller has no rsvd files.
        let fake = try Self.host(total: 64, free: 64, reserved: 0)
        defer { fake.remove() }
        try fake.controlFiles("sys/fs/cgroup/pgfleet.service/pgfleet-x/tenants", ["hugetlb.2MB.max": "max"])
        let plain = TenantCgroups(layout: try CgroupLayout.discover(root: fake.host), root: fake.host, groupName: "pgfleet-x")
        #expect(HugePageHost(root: fake.host).reservationLimitProblem(cgroups: plain)?.contains("rsvd") == true)
        #expect(HugePageHost(root: fake.host).reservationLimitProblem(cgroups: nil)?.contains("no cgroups") == true)
    }
}

@Suite struct HugePageCheckTests {
    let pool = HugePagePool(pageBytes: 2 << 20, total: 64, free: 40, reserved: 4)

    func demand(_ tenants: [TenantDemand]) -> FleetDemand { FleetDemand(tenants: tenants, sandboxed: true, root: "/var/lib/pgfleet") }

    func tenant(_ name: String, _ mode: HugePagesMode?, needed: Int?, granted: Int? = nil) -> TenantDemand {
        var tenant = TenantDemand(name: name)
        tenant.hugePages = mode
        tenant.hugePagesNeeded = needed
        tenant.hugePagesGranted = granted
        return tenant
    }

    @Test func withoutAReservationLimitDoctorSaysWhyAndFailsForOnTenants() {
        let problem = "Linux 5.4.0 has no hugetlb reservation limits (5.7 or later has)"
        let quiet = HugePageCheck.judge(pool: pool, problem: problem, demand: demand([tenant("a", .try, needed: nil)]))
        #expect(quiet.status == .warn)
        #expect(quiet.detail.contains("no tenant is ever given huge pages here: Linux 5.4.0"))
        let on = HugePageCheck.judge(pool: pool, problem: problem, demand: demand([tenant("a", .on, needed: nil)]))
        #expect(on.status == .fail)
    }

    @Test func thePoolAgainstWhatTheTenantsNeed() {
        let fits = HugePageCheck.judge(pool: pool, problem: nil, demand: demand([tenant("a", .on, needed: 30, granted: 30), tenant("b", .try, needed: 20, granted: 20)]))
        #expect(fits.status == .ok, "\(fits)")
        #expect(fits.detail.contains("50 pages needed where known, 50 given"))
        let short = HugePageCheck.judge(pool: pool, problem: nil, demand: demand([tenant("a", .try, needed: 60), tenant("b", .try, needed: 20)]))
        #expect(short.status == .warn)
        #expect(short.fix?.contains("vm.nr_hugepages=88") == true)
        let onShort = HugePageCheck.judge(pool: pool, problem: nil, demand: demand([tenant("a", .on, needed: 70)]))
        #expect(onShort.status == .fail)
        let offOnly = HugePageCheck.judge(pool: pool, problem: nil, demand: demand([tenant("a", nil, needed: nil)]))
        #expect(offOnly.status == .ok && offOnly.detail.contains("0 tenants ask"))
    }

    @Test func noKernelSupportOrNoDaemonAreOk() {
        #expect(HugePageCheck.judge(pool: nil, problem: nil, demand: nil).status == .ok)
        let alone = HugePageCheck.judge(pool: pool, problem: nil, demand: nil)
        #expect(alone.status == .ok && alone.detail.contains("not weighed against the tenants"))
    }
}
