import FleetCore
import Foundation

/// The cgroup checks of `pgfleet doctor`: which cgroup version the host runs, which of the
/// controllers a tenant's limits need pgfleet can reach, and whether the daemon's own cgroup can
/// hand them down to the tenants' (what `TenantCgroups.prepare()` does at start).
public enum CgroupChecks {
    /// How the host mounts its cgroups.
    public enum Mode: String, Sendable, Equatable {
        case v2 = "pure v2", hybrid, v1 = "v1 only", none
    }

    static let v1Controllers: Set<String> = [
        "cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "hugetlb", "devices", "freezer", "net_cls", "net_prio", "perf_event", "rdma", "misc",
    ]

    /// From `/proc/self/mountinfo`: a cgroup2 tree only, v1 hierarchies only, or both.
    public static func mode(mountinfo: String) -> Mode {
        let mounts = MountTable.parse(mountinfo).mounts.filter { $0.root == "/" }
        // A named hierarchy without controllers (`name=systemd`) is not one pgfleet can use.
        let v1 = mounts.contains { $0.fsType == "cgroup" && !Set($0.superOptions).isDisjoint(with: v1Controllers) }
        let v2 = mounts.contains { $0.fsType == "cgroup2" }
        switch (v1, v2) {
        case (true, true): return .hybrid
        case (true, false): return .v1
        case (false, true): return .v2
        case (false, false): return .none
        }
    }

    /// What each resource's absence leaves unenforced.
    static func consequence(_ resource: CgroupResource) -> String {
        switch resource {
        case .cpu: "--cpu is not enforced"
        case .cpuAccounting: "a tenant's CPU time is not reported"
        case .memory: "--memory is not enforced, and an OOM kill may hit any process"
        case .pids: "--pids is not enforced"
        case .io: "--io-weight is not enforced"
        case .hugetlb: "tenants are never given huge pages"
        }
    }

    static func describe(_ resource: CgroupResource, _ hierarchy: CgroupHierarchy) -> String {
        hierarchy.version == .v1 ? resource.v1Name : resource.v2Name
    }

    /// The version and the controllers reachable from the daemon's cgroup. Cgroup v1 cannot
    /// charge a tenant's buffered writeback to it (seed 004), so its io weight and dirty-page
    /// throttling do not hold there: v1 and hybrid warn, with the switch to v2 as the fix.
    /// `layout`: the daemon's as it found it at start (before it moved itself into a leaf); nil:
    /// discovered now, for this process.
    public static func version(root: HostRoot = .real, layout: CgroupLayout? = nil) -> HostCheck {
        let name = "cgroup version"
        guard let mountinfo = root.read("proc/self/mountinfo") else {
            return HostCheck(name: name, status: .fail, detail: "cannot read /proc/self/mountinfo", fix: "mount /proc")
        }
        let mode = mode(mountinfo: mountinfo)
        let layout = layout ?? (try? CgroupLayout.discover(root: root))
        guard mode != .none, let layout, !layout.hierarchies.isEmpty else {
            return HostCheck(
                name: name, status: .fail, detail: "no cgroup hierarchy is mounted: no tenant limit is enforced",
                fix: "mount -t cgroup2 none /sys/fs/cgroup (or boot with systemd, which mounts it)")
        }
        var reached: [String] = []
        for hierarchy in layout.distinctHierarchies {
            let resources = CgroupResource.allCases.filter { layout.hierarchy(for: $0) == hierarchy }
            var names: [String] = []
            for resource in resources where !names.contains(describe(resource, hierarchy)) { names.append(describe(resource, hierarchy)) }
            reached.append("\(names.joined(separator: ", ")) on \(hierarchy.version == .v1 ? "v1" : "v2") (\(hierarchy.mountPoint))")
        }
        let missing = CgroupResource.allCases.filter { layout.hierarchy(for: $0) == nil }
        var detail = "\(mode.rawValue): " + reached.joined(separator: "; ")
        var fixes: [String] = []
        var status = HostCheck.Status.ok
        if !missing.isEmpty {
            status = .warn
            // v2's cpu controller also accounts; only on v1 is cpuacct a controller of its own.
            let label = { (resource: CgroupResource) in mode == .v1 ? resource.v1Name : resource == .cpuAccounting ? "cpu accounting" : resource.v2Name }
            detail += "; missing: " + missing.map { "\(label($0)) (\(consequence($0)))" }.joined(separator: ", ")
            var v2Missing: [String] = []
            for resource in missing where !v2Missing.contains(resource.v2Name) { v2Missing.append(resource.v2Name) }
            fixes.append(mode == .v1
                ? "mount the missing v1 controllers (e.g. mount -t cgroup -o \(missing.map(\.v1Name).joined(separator: ",")) cgroup /sys/fs/cgroup/\(missing[0].v1Name))"
                : "enable \(v2Missing.joined(separator: " ")) in the parent cgroup's cgroup.subtree_control (echo \"\(v2Missing.map { "+" + $0 }.joined(separator: " "))\" > PARENT/cgroup.subtree_control), or under systemd run serve with Delegate=yes")
        }
        let onV1 = [CgroupResource.memory, .io].filter { layout.hierarchy(for: $0)?.version == .v1 }
        if !onV1.isEmpty {
            status = .warn
            detail += "; on v1 a tenant's buffered writeback is not charged to it, so --io-weight and dirty-page throttling do not hold (seed 004)"
            fixes.append("boot with systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all for cgroup v2")
        }
        return HostCheck(name: name, status: status, detail: detail, fix: fixes.isEmpty ? nil : fixes.joined(separator: "; "))
    }

    /// Whether the daemon's own cgroup, in every hierarchy a limit is written to, can hold the
    /// tenants' cgroups: writable, and on v2 free of other processes (the no-internal-processes
    /// rule: pgfleet moves itself into a leaf, which fails while others share its cgroup) with
    /// the controllers offered to it. Under systemd without `Delegate=yes`, systemd may rewrite
    /// the subtree behind pgfleet's back. `ownPID`: the process whose cgroup this is.
    public static func delegation(root: HostRoot = .real, layout: CgroupLayout? = nil, ownPID: pid_t = getpid()) -> HostCheck {
        let name = "cgroup delegation"
        guard let layout = layout ?? (try? CgroupLayout.discover(root: root)), !layout.hierarchies.isEmpty else {
            return HostCheck(name: name, status: .fail, detail: "no cgroup hierarchy to delegate from", fix: "see the cgroup version check")
        }
        var problems: [String] = []
        var fixes: [String] = []
        var notes: [String] = []
        var status = HostCheck.Status.ok
        let mounts = MountTable.parse(root.read("proc/self/mountinfo") ?? "")
        for hierarchy in layout.distinctHierarchies {
            let directory = hierarchy.directory("", root: root)
            let label = "\(hierarchy.mountPoint)\(hierarchy.ownPath == "/" ? "" : hierarchy.ownPath)"
            let readOnly = mounts.mount(at: hierarchy.mountPoint)?.superOptions.contains("ro") ?? false
            if readOnly || !FileManager.default.isWritableFile(atPath: directory) {
                status = .fail
                problems.append("\(label) is not writable" + (readOnly ? " (mounted read-only, as in an unprivileged container)" : ""))
                fixes.append("run pgfleet serve as root with a writable cgroup tree (a container: --cgroupns=private and a writable /sys/fs/cgroup)")
                continue
            }
            guard hierarchy.version == .v2, hierarchy.ownPath != "/" else { continue }
            // The root cgroup is exempt from the rule; any other one must hold no process of its own.
            let others = CgroupFiles.processes(in: directory).filter { $0 != ownPID }
            if !others.isEmpty {
                status = .fail
                problems.append("\(label) also holds \(others.count) other process\(others.count == 1 ? "" : "es") (\(others.prefix(5).map(String.init).joined(separator: ", "))), so it cannot hand its controllers to the tenants' cgroups")
                fixes.append("give pgfleet serve a cgroup of its own: a systemd unit with Delegate=yes, or mkdir \(hierarchy.mountPoint)/pgfleet && echo $$ > \(hierarchy.mountPoint)/pgfleet/cgroup.procs before starting it")
            }
            let enabled = Set(((try? String(contentsOfFile: directory + "/cgroup.subtree_control", encoding: .utf8)) ?? "")
                .split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init))
            let wanted = ["cpu", "memory", "pids", "io", "hugetlb"].filter { hierarchy.controllers.contains($0) }
            let toEnable = wanted.filter { !enabled.contains($0) }
            notes.append(toEnable.isEmpty
                ? "\(label) hands down \(wanted.joined(separator: " "))"
                : "\(label) offers \(wanted.joined(separator: " ")); pgfleet enables \(toEnable.joined(separator: " ")) in its cgroup.subtree_control at start")
            if hierarchy.ownPath.hasSuffix(".service") && !delegated(directory) {
                if status == .ok { status = .warn }
                problems.append("\(label) is a systemd service without Delegate=yes: systemd may undo the tenants' cgroups")
                fixes.append("add Delegate=yes to the [Service] section of the unit (systemctl edit \(hierarchy.ownPath.split(separator: "/").last ?? "pgfleet.service")), then restart it")
            }
        }
        if problems.isEmpty {
            let paths = layout.distinctHierarchies.map { "\($0.mountPoint)\($0.ownPath == "/" ? "" : $0.ownPath)" }
            return HostCheck(name: name, status: .ok, detail: (["writable: " + paths.joined(separator: ", ")] + notes).joined(separator: "; "))
        }
        return HostCheck(name: name, status: status, detail: (problems + notes).joined(separator: "; "), fix: fixes.joined(separator: "; "))
    }

    /// systemd (251 and later) marks the cgroups it delegates with the `trusted.delegate` xattr.
    static func delegated(_ directory: String) -> Bool {
        guard let getxattr = getxattrFunction else { return true }
        return getxattr(directory, "trusted.delegate", nil, 0) >= 0 || getxattr(directory, "user.delegate", nil, 0) >= 0
    }

    private typealias GetXattr = @convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafeMutableRawPointer?, Int) -> Int

    /// Looked up in the C library: Swift's Glibc module leaves sys/xattr.h out. Without it the
    /// hint is not given (nil: treated as delegated), rather than given wrongly.
    private static let getxattrFunction: GetXattr? = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "getxattr").map {
        unsafeBitCast($0, to: GetXattr.self)
    }
}
