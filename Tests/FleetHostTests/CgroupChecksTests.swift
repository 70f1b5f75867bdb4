import FleetCore
import Foundation
import Testing

@testable import FleetHost

/// The doctor's cgroup checks on fixture trees: this host's hybrid layout, pure v2, v1 only, none,
/// and a v2 cgroup that cannot hand its controllers down.
@Suite struct CgroupChecksTests {
    static let v2Mountinfo = """
        30 23 0:27 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
        """
    static let v1Cgroup = """
        6:hugetlb:/
        5:pids:/
        4:memory:/
        3:blkio:/
        2:cpu,cpuacct:/
        1:name=systemd:/
        """
    static let v1Mountinfo = """
        31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
        32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
        35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
        38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
        39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
        40 31 0:37 / /sys/fs/cgroup/hugetlb rw,relatime - cgroup cgroup rw,hugetlb
        41 31 0:38 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
        """

    /// This host: v1 cpu, cpuacct, memory, pids, blkio; v2 at /sys/fs/cgroup/unified with hugetlb only.
    static func hybrid() throws -> FakeHost {
        let fake = try FakeHost(cgroup: CgroupLayoutTests.hybridCgroup, mountinfo: CgroupLayoutTests.hybridMountinfo)
        try fake.write("hugetlb\n", "sys/fs/cgroup/unified/cgroup.controllers")
        try fake.write("", "sys/fs/cgroup/unified/cgroup.subtree_control")
        for directory in ["cpu", "cpuacct", "memory/process_api/de06", "blkio", "pids"] {
            try fake.write("", "sys/fs/cgroup/\(directory)/cgroup.procs")
        }
        return fake
    }

    /// A systemd service's cgroup on pure v2, holding `processes`.
    static func v2(own: String = "/system.slice/pgfleet.service", processes: [pid_t], subtree: String = "") throws -> FakeHost {
        let fake = try FakeHost(cgroup: "0::\(own)\n", mountinfo: v2Mountinfo)
        try fake.write("cpuset cpu io memory hugetlb pids rdma misc\n", "sys/fs/cgroup/cgroup.controllers")
        try fake.write("cpu io memory hugetlb pids\n", "sys/fs/cgroup\(own)/cgroup.controllers")
        try fake.write(processes.map { "\($0)\n" }.joined(), "sys/fs/cgroup\(own)/cgroup.procs")
        try fake.write(subtree, "sys/fs/cgroup\(own)/cgroup.subtree_control")
        return fake
    }

    @Test func modesFromMountinfo() {
        #expect(CgroupChecks.mode(mountinfo: CgroupLayoutTests.hybridMountinfo) == .hybrid)
        #expect(CgroupChecks.mode(mountinfo: Self.v2Mountinfo) == .v2)
        #expect(CgroupChecks.mode(mountinfo: Self.v1Mountinfo) == .v1)
        // A named v1 hierarchy alone (systemd's) has no controller.
        #expect(CgroupChecks.mode(mountinfo: "40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n") == .none)
    }

    @Test func thisHostsHybridLayoutReachesEveryControllerButWarnsAboutV1Writeback() throws {
        let fake = try Self.hybrid()
        defer { fake.remove() }
        let check = CgroupChecks.version(root: fake.host)
        #expect(check.status == .warn, "\(check)")
        #expect(check.detail.hasPrefix("hybrid: "))
        #expect(check.detail.contains("hugetlb on v2 (/sys/fs/cgroup/unified)"), "\(check.detail)")
        #expect(check.detail.contains("memory on v1 (/sys/fs/cgroup/memory)"))
        #expect(check.detail.contains("blkio on v1"))
        #expect(!check.detail.contains("missing"))
        #expect(check.fix?.contains("systemd.unified_cgroup_hierarchy=1") == true)

        let delegation = CgroupChecks.delegation(root: fake.host, ownPID: 77)
        #expect(delegation.status == .ok, "\(delegation)")
        #expect(delegation.detail.contains("/sys/fs/cgroup/memory/process_api/de06"))
    }

    @Test func pureV2WithAllControllersIsOk() throws {
        let fake = try Self.v2(processes: [77], subtree: "cpu memory pids\n")
        defer { fake.remove() }
        let check = CgroupChecks.version(root: fake.host)
        #expect(check.status == .ok, "\(check)")
        #expect(check.detail == "pure v2: cpu, memory, pids, io, hugetlb on v2 (/sys/fs/cgroup)", "\(check.detail)")
        // Only the daemon itself in its cgroup: it moves into a leaf; io and hugetlb still to enable.
        let delegation = CgroupChecks.delegation(root: fake.host, ownPID: 77)
        #expect(delegation.detail.contains("pgfleet enables io hugetlb in its cgroup.subtree_control at start"), "\(delegation.detail)")
        // A fixture directory carries no systemd xattr: the Delegate=yes hint.
        #expect(delegation.status == .warn)
        #expect(delegation.fix?.contains("Delegate=yes") == true)
        #expect(delegation.fix?.contains("systemctl edit pgfleet.service") == true)
    }

    @Test func aV2CgroupSharedWithOtherProcessesIsNotDelegated() throws {
        let fake = try Self.v2(own: "/user.slice/user-0.slice/session-3.scope", processes: [77, 1201, 1202])
        defer { fake.remove() }
        let check = CgroupChecks.delegation(root: fake.host, ownPID: 77)
        #expect(check.status == .fail, "\(check)")
        #expect(check.detail.contains("also holds 2 other processes (1201, 1202)"), "\(check.detail)")
        #expect(check.fix?.contains("Delegate=yes") == true)
        #expect(check.fix?.contains("mkdir /sys/fs/cgroup/pgfleet && echo $$ > /sys/fs/cgroup/pgfleet/cgroup.procs") == true)
        // The root cgroup is exempt from the no-internal-processes rule.
        let atRoot = try Self.v2(own: "/", processes: [1, 77, 1201])
        defer { atRoot.remove() }
        #expect(CgroupChecks.delegation(root: atRoot.host, ownPID: 77).status == .ok)
    }

    @Test func v2WithControllersMissingFromTheDaemonsCgroupWarns() throws {
        let fake = try Self.v2(processes: [77])
        defer { fake.remove() }
        try fake.write("memory pids\n", "sys/fs/cgroup/system.slice/pgfleet.service/cgroup.controllers")
        let check = CgroupChecks.version(root: fake.host)
        #expect(check.status == .warn)
        #expect(check.detail.contains("missing: cpu (--cpu is not enforced)"), "\(check.detail)")
        #expect(check.detail.contains("hugetlb (tenants are never given huge pages)"))
        #expect(check.fix?.contains("cgroup.subtree_control") == true)
    }

    @Test func v1OnlyReachesItsControllersAndWarnsAboutWriteback() throws {
        let fake = try FakeHost(cgroup: Self.v1Cgroup, mountinfo: Self.v1Mountinfo)
        defer { fake.remove() }
        for directory in ["cpu,cpuacct", "memory", "blkio", "pids", "hugetlb"] { try fake.write("", "sys/fs/cgroup/\(directory)/cgroup.procs") }
        let check = CgroupChecks.version(root: fake.host)
        #expect(check.status == .warn)
        #expect(check.detail.hasPrefix("v1 only: cpu, cpuacct on v1 (/sys/fs/cgroup/cpu,cpuacct)"), "\(check.detail)")
        #expect(check.detail.contains("hugetlb on v1"))
        #expect(check.detail.contains("seed 004"))
        #expect(CgroupChecks.delegation(root: fake.host).status == .ok)
    }

    @Test func noCgroupsFail() throws {
        let fake = try FakeHost(cgroup: "", mountinfo: "22 1 0:21 / /proc rw - proc proc rw\n")
        defer { fake.remove() }
        let check = CgroupChecks.version(root: fake.host)
        #expect(check.status == .fail && check.detail.contains("no tenant limit is enforced"))
        #expect(CgroupChecks.delegation(root: fake.host).status == .fail)
    }

    @Test func aReadOnlyCgroupTreeFails() throws {
        let mountinfo = Self.v2Mountinfo.replacingOccurrences(of: "cgroup2 cgroup2 rw,", with: "cgroup2 cgroup2 ro,")
        let fake = try FakeHost(cgroup: "0::/\n", mountinfo: mountinfo)
        defer { fake.remove() }
        try fake.write("cpu memory pids\n", "sys/fs/cgroup/cgroup.controllers")
        let check = CgroupChecks.delegation(root: fake.host)
        #expect(check.status == .fail)
        #expect(check.detail.contains("mounted read-only"), "\(check.detail)")
    }
}

/// The daemon weighs the cgroup it was started in, not the leaf it moved itself into.
@Suite struct CgroupChecksLayoutTests {
    @Test func aGivenLayoutIsJudgedInsteadOfThisProcesssOwn() throws {
        let fake = try CgroupChecksTests.v2(own: "/pgfleet.scope/pgfleet-1/daemon", processes: [77], subtree: "")
        defer { fake.remove() }
        try fake.write("1201\n", "sys/fs/cgroup/started.scope/cgroup.procs")
        try fake.write("cpu memory pids\n", "sys/fs/cgroup/started.scope/cgroup.controllers")
        let started = CgroupLayout(hierarchies: Dictionary(uniqueKeysWithValues: [CgroupResource.cpu, .cpuAccounting, .memory, .pids].map {
            ($0, CgroupHierarchy(version: .v2, mountPoint: "/sys/fs/cgroup", ownPath: "/started.scope", controllers: ["cpu", "memory", "pids"]))
        }))
        #expect(CgroupChecks.delegation(root: fake.host, ownPID: 77).status == .ok)
        let check = CgroupChecks.delegation(root: fake.host, layout: started, ownPID: 77)
        #expect(check.status == .fail && check.detail.contains("/sys/fs/cgroup/started.scope also holds 1 other process (1201)"), "\(check.detail)")
        #expect(CgroupChecks.version(root: fake.host, layout: started).detail.contains("missing: io (--io-weight is not enforced), hugetlb"))
    }
}
