import FleetCore
import Foundation

/// Each tenant's cgroups, beneath the cgroup the daemon was started in, in every hierarchy a limit
/// needs: `<own>/<groupName>/tenants/<tenant>`. Nothing is ever moved out of the daemon's own
/// subtree (what a systemd service with `Delegate=yes` is given). On cgroup v2 the daemon first
/// moves itself into `<own>/<groupName>/daemon`: a cgroup with processes in it cannot hand its
/// controllers to children (the no-internal-processes rule).
public struct TenantCgroups: Sendable {
    public let layout: CgroupLayout
    public let root: HostRoot
    /// The daemon's subtree, one per pgfleet root (several daemons can share a cgroup in tests).
    public let groupName: String

    public init(layout: CgroupLayout, root: HostRoot = .real, groupName: String) {
        self.layout = layout
        self.root = root
        self.groupName = groupName
    }

    /// `pgfleet-` and a hash of the root directory: the same root finds its tenants' groups again.
    public static func groupName(forRoot root: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in root.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return "pgfleet-" + String(hash & 0xffff_ffff, radix: 16)
    }

    /// The resources limits are written to.
    static let limited: [CgroupResource] = [.cpu, .cpuAccounting, .memory, .pids, .io, .hugetlb]

    var hierarchies: [CgroupHierarchy] {
        var seen: Set<String> = []
        return Self.limited.compactMap { layout.hierarchy(for: $0) }.filter { seen.insert($0.mountPoint).inserted }
    }

    func tenantDirectory(_ hierarchy: CgroupHierarchy, _ tenant: String) -> String {
        hierarchy.directory("\(groupName)/tenants/\(tenant)", root: root)
    }

    func directory(_ resource: CgroupResource, _ tenant: String) -> String? {
        layout.hierarchy(for: resource).map { tenantDirectory($0, tenant) }
    }

    // MARK: The daemon's subtree

    /// Makes `<own>/<groupName>/tenants` everywhere; on v2 moves the daemon into a leaf and hands
    /// the controllers down. Returns what the host cannot do.
    public func prepare() throws -> [String] {
        var notes: [String] = []
        for resource in [CgroupResource.cpu, .memory, .pids] where layout.hierarchy(for: resource) == nil {
            notes.append("no \(resource.rawValue) controller is available to pgfleet here: --\(resource.rawValue) limits are not enforced")
        }
        for hierarchy in hierarchies {
            let group = hierarchy.directory(groupName, root: root)
            try CgroupFiles.makeDirectory(group + "/tenants")
            guard hierarchy.version == .v2 else { continue }
            var wanted: [String] = []
            for name in Self.limited.map(\.v2Name) where hierarchy.controllers.contains(name) && !wanted.contains(name) { wanted.append(name) }
            let own = hierarchy.directory("", root: root)
            // With hugetlb, also out of a root cgroup: the leaf's zero huge page limits then hold
            // for everything the daemon runs besides postmasters (initdb, `postgres --single`),
            // which PostgreSQL would otherwise let map huge pages (`huge_pages = try`).
            let leaf = hierarchy.ownPath != "/" || hierarchy.controllers.contains(CgroupResource.hugetlb.v2Name)
            if leaf {
                // Into a leaf of its own first, so that its own cgroup holds no process.
                try CgroupFiles.makeDirectory(group + "/daemon")
                try CgroupFiles.write(String(getpid()), to: group + "/daemon/cgroup.procs")
                // A root cgroup may hold processes besides its children's controllers.
                let others = hierarchy.ownPath == "/" ? [] : CgroupFiles.processes(in: own)
                if !others.isEmpty {
                    throw FleetError.failed(
                        "the daemon's cgroup \(hierarchy.ownPath) also holds processes that are not pgfleet's (\(others.prefix(5).map(String.init).joined(separator: ", "))), "
                            + "so it cannot hand its controllers to the tenants' cgroups; give pgfleet a cgroup of its own (systemd: Delegate=yes)"
                    )
                }
            }
            let enable = wanted.map { "+" + $0 }.joined(separator: " ")
            for directory in [own, group, group + "/tenants"] where !enable.isEmpty {
                try CgroupFiles.write(enable, to: directory + "/cgroup.subtree_control")
            }
            if leaf, hierarchy.controllers.contains(CgroupResource.hugetlb.v2Name) {
                for size in HugePageHost(root: root).pageSizes() {
                    try? CgroupWriter.hugetlb(0, sizeName: HugePagePool.sizeName(size), version: .v2, directory: group + "/daemon")
                }
            }
        }
        return notes
    }

    // MARK: Huge pages

    /// Limits the tenant to `pages` huge pages of `pageBytes` (usage and reservation) and to none
    /// of any other size. Returns false when there is no hugetlb controller to write to.
    @discardableResult
    public func applyHugePages(_ pages: Int, pageBytes: UInt64, to tenant: String) throws -> Bool {
        guard let hierarchy = layout.hierarchy(for: .hugetlb), let directory = directory(.hugetlb, tenant) else { return false }
        for size in HugePageHost(root: root).pageSizes() {
            let bytes = size == pageBytes ? UInt64(max(0, pages)) * size : 0
            try CgroupWriter.hugetlb(bytes, sizeName: HugePagePool.sizeName(size), version: hierarchy.version, directory: directory)
        }
        return true
    }

    /// Bytes of huge pages of `pageBytes` the tenant uses, and the limit it has.
    public func hugePagesUsage(of tenant: String, pageBytes: UInt64) -> (used: UInt64?, limit: UInt64?) {
        guard let hierarchy = layout.hierarchy(for: .hugetlb), let directory = directory(.hugetlb, tenant) else { return (nil, nil) }
        return CgroupWriter.hugetlbUsage(sizeName: HugePagePool.sizeName(pageBytes), version: hierarchy.version, directory: directory)
    }

    // MARK: One tenant

    public func exists(_ tenant: String) -> Bool {
        hierarchies.allSatisfy { FileManager.default.fileExists(atPath: tenantDirectory($0, tenant)) }
    }

    public func create(_ tenant: String) throws {
        for hierarchy in hierarchies { try CgroupFiles.makeDirectory(tenantDirectory(hierarchy, tenant)) }
    }

    /// Every `cgroup.procs` the postmaster joins between fork and exec.
    public func procsFiles(of tenant: String) -> [String] {
        hierarchies.map { tenantDirectory($0, tenant) + "/cgroup.procs" }
    }

    /// Writes each limit (nil: none); returns what the kernel cannot do here.
    public func apply(_ limits: TenantLimits, to tenant: String) throws -> [String] {
        var notes: [String] = []
        if let directory = directory(.cpu, tenant), let hierarchy = layout.hierarchy(for: .cpu) {
            try CgroupWriter.cpu(limits.cpuMillicores, version: hierarchy.version, directory: directory)
        } else if limits.cpuMillicores != nil {
            notes.append("--cpu is not enforced: no cpu controller is available to pgfleet here")
        }
        if let directory = directory(.memory, tenant), let hierarchy = layout.hierarchy(for: .memory) {
            try CgroupWriter.memory(limits.memoryBytes, version: hierarchy.version, directory: directory)
        } else if limits.memoryBytes != nil {
            notes.append("--memory is not enforced: no memory controller is available to pgfleet here")
        }
        if let directory = directory(.pids, tenant) {
            try CgroupWriter.pids(limits.pids, directory: directory)
        } else if limits.pids != nil {
            notes.append("--pids is not enforced: no pids controller is available to pgfleet here")
        }
        if let weight = limits.ioWeight {
            if let directory = directory(.io, tenant), let hierarchy = layout.hierarchy(for: .io) {
                if let note = try CgroupWriter.ioWeight(weight, version: hierarchy.version, directory: directory) {
                    notes.append(note)
                } else if let note = schedulerNote() {
                    notes.append(note)
                }
            } else {
                notes.append("--io-weight is not enforced: no io (blkio) controller is available to pgfleet here")
            }
        }
        return notes
    }

    /// A weight is written, but only BFQ (or CFQ) heeds it: say so when no disk of the host uses one.
    func schedulerNote() -> String? {
        let block = root.resolve("sys/block")
        guard let devices = try? FileManager.default.contentsOfDirectory(atPath: block), !devices.isEmpty else { return nil }
        let schedulers = devices.compactMap { root.read("sys/block/\($0)/queue/scheduler") }
        guard !schedulers.contains(where: { $0.contains("[bfq]") || $0.contains("[cfq]") }) else { return nil }
        return "--io-weight is stored and written, but no disk here uses the BFQ I/O scheduler, so it has no effect "
            + "(e.g. `echo bfq > /sys/block/DEVICE/queue/scheduler` for the disk that holds the tenants)"
    }

    public func usage(of tenant: String) -> TenantUsage {
        var usage = TenantUsage()
        if let directory = directory(.memory, tenant), let hierarchy = layout.hierarchy(for: .memory) {
            switch hierarchy.version {
            case .v2:
                usage.memoryBytes = CgroupFiles.number(directory + "/memory.current")
                usage.oomKills = CgroupFiles.keyed(directory + "/memory.events", "oom_kill").map { Int($0) }
            case .v1:
                usage.memoryBytes = CgroupFiles.number(directory + "/memory.usage_in_bytes")
                usage.oomKills = CgroupFiles.keyed(directory + "/memory.oom_control", "oom_kill").map { Int($0) }
            }
        }
        if let directory = directory(.cpuAccounting, tenant), let hierarchy = layout.hierarchy(for: .cpuAccounting) {
            switch hierarchy.version {
            case .v2: usage.cpuMicroseconds = CgroupFiles.keyed(directory + "/cpu.stat", "usage_usec")
            case .v1: usage.cpuMicroseconds = CgroupFiles.number(directory + "/cpuacct.usage").map { $0 / 1000 }
            }
        }
        if let directory = directory(.pids, tenant) {
            usage.pids = CgroupFiles.number(directory + "/pids.current").map { Int($0) }
        }
        return usage
    }

    public func processes(of tenant: String) -> [pid_t] {
        Array(Set(hierarchies.flatMap { CgroupFiles.processes(in: tenantDirectory($0, tenant)) })).sorted()
    }

    public func move(_ pid: pid_t, into tenant: String) throws {
        for file in procsFiles(of: tenant) { try CgroupFiles.write(String(pid), to: file) }
    }

    /// Removes the tenant's cgroups; refuses while processes are left in them.
    public func remove(_ tenant: String) throws {
        for hierarchy in hierarchies {
            let directory = tenantDirectory(hierarchy, tenant)
            if rmdir(directory) != 0 && errno != ENOENT {
                let reason = String(cString: strerror(errno))
                let left = CgroupFiles.processes(in: directory)
                throw FleetError.failed(
                    "cannot remove the cgroup \(directory): \(reason)" + (left.isEmpty ? "" : " (processes still in it: \(left.prefix(10).map(String.init).joined(separator: ", ")))")
                )
            }
        }
    }

    /// Removes the empty cgroups of tenants that are not in `keeping`; returns their names.
    public func removeStale(keeping: Set<String>) -> [String] {
        var removed: Set<String> = []
        for hierarchy in hierarchies {
            let tenants = hierarchy.directory("\(groupName)/tenants", root: root)
            for entry in (try? FileManager.default.contentsOfDirectory(atPath: tenants)) ?? [] where !keeping.contains(entry) {
                guard (try? TenantName(validating: entry)) != nil, rmdir(tenants + "/" + entry) == 0 else { continue }
                removed.insert(entry)
            }
        }
        return removed.sorted()
    }

    /// Removes the whole subtree once no process is left in it (tests, and an uninstall):
    /// returns the directories that could not be removed.
    @discardableResult
    public func removeSubtree() -> [String] {
        _ = removeStale(keeping: [])
        var left: [String] = []
        for hierarchy in hierarchies {
            let group = hierarchy.directory(groupName, root: root)
            // A daemon that left a root cgroup for its leaf (for hugetlb) goes back: the root has
            // no rule against processes, and the leaf can then go too.
            if hierarchy.version == .v2, hierarchy.ownPath == "/", CgroupFiles.processes(in: group + "/daemon").contains(getpid()) {
                try? CgroupFiles.write(String(getpid()), to: hierarchy.directory("", root: root) + "/cgroup.procs")
            }
            for directory in [group + "/tenants", group + "/daemon", group] where rmdir(directory) != 0 && errno != ENOENT {
                left.append(directory)
            }
        }
        return left
    }
}
