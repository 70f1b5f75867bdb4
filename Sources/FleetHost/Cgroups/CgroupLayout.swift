import FleetCore
import Foundation

/// What a tenant's limits need of the kernel.
public enum CgroupResource: String, Sendable, CaseIterable {
    case cpu, cpuAccounting, memory, pids, io, hugetlb

    /// The controller's name on a v1 hierarchy (`cpuacct`, `blkio`) and on v2 (`cpu`, `io`).
    var v1Name: String {
        switch self {
        case .cpu: "cpu"
        case .cpuAccounting: "cpuacct"
        case .memory: "memory"
        case .pids: "pids"
        case .io: "blkio"
        case .hugetlb: "hugetlb"
        }
    }

    var v2Name: String {
        switch self {
        case .cpu, .cpuAccounting: "cpu"
        case .memory: "memory"
        case .pids: "pids"
        case .io: "io"
        case .hugetlb: "hugetlb"
        }
    }
}

/// One mounted cgroup hierarchy and where this process sits in it.
public struct CgroupHierarchy: Sendable, Equatable, Hashable {
    public enum Version: Sendable, Equatable, Hashable { case v1, v2 }

    public var version: Version
    /// Where it is mounted, e.g. `/sys/fs/cgroup/memory` or `/sys/fs/cgroup`.
    public var mountPoint: String
    /// This process's cgroup in it, e.g. `/` or `/system.slice/pgfleet.service`.
    public var ownPath: String
    /// v1: the controllers bound to it (`cpu`, `cpuacct` when mounted together).
    public var controllers: Set<String>

    public init(version: Version, mountPoint: String, ownPath: String, controllers: Set<String>) {
        self.version = version
        self.mountPoint = mountPoint
        self.ownPath = ownPath
        self.controllers = controllers
    }

    /// The directory of `relative` (beneath the daemon's own cgroup) on the host.
    public func directory(_ relative: String, root: HostRoot) -> String {
        let own = ownPath == "/" ? "" : ownPath
        return root.resolve(mountPoint + own + (relative.isEmpty ? "" : "/" + relative))
    }
}

/// Where each resource's cgroup hierarchy is, read from `/proc/self/cgroup` and
/// `/proc/self/mountinfo`: pure v2, pure v1, or hybrid (v1 controllers beside a v2 tree).
public struct CgroupLayout: Sendable, Equatable {
    public var hierarchies: [CgroupResource: CgroupHierarchy]

    public init(hierarchies: [CgroupResource: CgroupHierarchy]) {
        self.hierarchies = hierarchies
    }

    public func hierarchy(for resource: CgroupResource) -> CgroupHierarchy? { hierarchies[resource] }

    /// Every distinct hierarchy the resources use.
    public var distinctHierarchies: [CgroupHierarchy] {
        var seen: Set<String> = []
        return CgroupResource.allCases.compactMap { hierarchies[$0] }.filter { seen.insert($0.mountPoint).inserted }
    }

    public static func discover(root: HostRoot = .real) throws -> CgroupLayout {
        guard let cgroup = root.read("proc/self/cgroup") else { throw FleetError.failed("cannot read /proc/self/cgroup: this kernel has no cgroups") }
        guard let mountinfo = root.read("proc/self/mountinfo") else { throw FleetError.failed("cannot read /proc/self/mountinfo") }
        return try parse(cgroup: cgroup, mountinfo: mountinfo, root: root)
    }

    /// `root` is only asked which controllers a v2 tree has (`cgroup.controllers`).
    static func parse(cgroup: String, mountinfo: String, root: HostRoot) throws -> CgroupLayout {
        // /proc/self/cgroup: "ID:CONTROLLERS:PATH"; v2 is "0::PATH".
        var v1Paths: [String: String] = [:]
        var v2Path: String?
        for line in cgroup.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 3 else { continue }
            if parts[0] == "0" && parts[1].isEmpty {
                v2Path = parts[2]
            } else {
                for controller in parts[1].split(separator: ",") { v1Paths[String(controller)] = parts[2] }
            }
        }
        var v1Mounts: [String: (String, Set<String>)] = [:]
        var v2Mount: String?
        // A bind mount of a sub-cgroup (root not "/") is not the hierarchy's root.
        for mount in MountTable.parse(mountinfo).mounts where mount.root == "/" {
            if mount.fsType == "cgroup2" {
                if v2Mount == nil { v2Mount = mount.mountPoint }
            } else if mount.fsType == "cgroup" {
                let options = Set(mount.superOptions)
                for controller in options where v1Paths[controller] != nil && v1Mounts[controller] == nil {
                    v1Mounts[controller] = (mount.mountPoint, options.intersection(Set(v1Paths.keys)))
                }
            }
        }
        var v2Controllers: Set<String> = []
        if let v2Mount, let v2Path {
            let own = v2Path == "/" ? "" : v2Path
            // A v2 controller is usable where the daemon's cgroup offers it.
            let text = root.read(v2Mount + own + "/cgroup.controllers") ?? root.read(v2Mount + "/cgroup.controllers") ?? ""
            v2Controllers = Set(text.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init))
        }
        var hierarchies: [CgroupResource: CgroupHierarchy] = [:]
        for resource in CgroupResource.allCases {
            if let (mount, controllers) = v1Mounts[resource.v1Name], let path = v1Paths[resource.v1Name] {
                hierarchies[resource] = CgroupHierarchy(version: .v1, mountPoint: mount, ownPath: path, controllers: controllers)
            } else if let v2Mount, let v2Path, v2Controllers.contains(resource.v2Name) {
                hierarchies[resource] = CgroupHierarchy(version: .v2, mountPoint: v2Mount, ownPath: v2Path, controllers: v2Controllers)
            }
        }
        return CgroupLayout(hierarchies: hierarchies)
    }
}
