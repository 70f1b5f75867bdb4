import FleetCore
import FleetSystem
import Foundation

/// XFS project quotas on the root filesystem (mounted with `prjquota`): the tenant's directory
/// is one project, its `wal/` another, each with a hard block limit. Nothing to mount, so
/// `ensureMounted` only checks; limits change online in both directions.
///
/// A rename into a directory of another project fails with EXDEV on XFS: a ready-pool cluster
/// must be given the tenant's project (`assign`) before it is renamed into place, or be built
/// inside it.
public struct XFSProjectDisk: TenantDisk {
    public let paths: DiskPaths
    let commands: any DiskCommandRunner
    let host: HostRoot

    public var kind: DiskBackendKind { .xfsProject }

    /// Project ids pgfleet hands out: clear of the small ids administrators use by hand.
    public static let projectIDs: ClosedRange<UInt32> = 1_000_000...1_999_999

    public init(layout: FleetLayout, commands: any DiskCommandRunner = SystemDiskCommands(), host: HostRoot = .real) {
        self.paths = DiskPaths(layout: layout)
        self.commands = commands
        self.host = host
    }

    public struct Projects: Sendable, Equatable {
        public var data: UInt32
        public var wal: UInt32
        /// The limits last set.
        public var limits: DiskAreas?

        var text: String {
            "data=\(data) wal=\(wal)" + (limits.map { " dataBytes=\($0.dataBytes) walBytes=\($0.walBytes)" } ?? "") + "\n"
        }

        static func parse(_ text: String) -> Projects? {
            var values: [String: UInt64] = [:]
            for pair in text.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
                let parts = pair.split(separator: "=")
                if parts.count == 2, let value = UInt64(parts[1]) { values[String(parts[0])] = value }
            }
            guard let data = values["data"].flatMap(UInt32.init(exactly:)), let wal = values["wal"].flatMap(UInt32.init(exactly:)) else { return nil }
            let limits = values["dataBytes"].flatMap { d in values["walBytes"].map { DiskAreas(dataBytes: d, walBytes: $0) } }
            return Projects(data: data, wal: wal, limits: limits)
        }
    }

    public func create(_ name: TenantName, areas: DiskAreas, owner: UserIdentity) async throws {
        try Files.makeDirectory(paths.disksDirectory, mode: 0o700)
        try Files.makeDirectory(paths.directory(name), mode: 0o700)
        let projects = try allocate()
        try Files.write(projects.text, to: paths.projectsFile(name), mode: 0o600)
        try Files.makeDirectory(paths.dataMount(name), mode: 0o700, owner: owner)
        try Files.makeDirectory(paths.walMount(name), mode: 0o700, owner: owner)
        try await assign(name)
        try await resize(name, areas: areas)
    }

    /// Sets the tenant's projects on everything under its directory (data first, then WAL, which lies inside).
    public func assign(_ name: TenantName) async throws {
        let projects = try self.projects(name)
        let fs = try mountPoint()
        try await commands.run("/usr/sbin/xfs_quota", ["-x", "-c", "project -s -p \(paths.dataMount(name)) \(projects.data)", fs])
        try await commands.run("/usr/sbin/xfs_quota", ["-x", "-c", "project -s -p \(paths.walMount(name)) \(projects.wal)", fs])
    }

    public func ensureMounted(_ name: TenantName) async throws {
        _ = try projects(name)
        for path in [paths.dataMount(name), paths.walMount(name)] where !FileManager.default.fileExists(atPath: path) {
            throw FleetError.failed("\(path) is missing: the disk of tenant \(name) cannot be used")
        }
    }

    public func resize(_ name: TenantName, areas: DiskAreas) async throws {
        let projects = try self.projects(name)
        // Usage matters only when a limit shrinks (XFS itself accepts a limit below usage).
        let shrinking = projects.limits.map { areas.dataBytes < $0.dataBytes || areas.walBytes < $0.walBytes } ?? false
        let current = shrinking ? try usage(name) : nil
        for (area, id, bytes, used) in [
            ("data", projects.data, areas.dataBytes, current?.data.usedBytes), ("WAL", projects.wal, areas.walBytes, current?.wal.usedBytes),
        ] {
            if let used, used > bytes {
                throw FleetError.invalidRequest(
                    "the \(area) area holds \(ByteSize.format(used)), more than the new limit \(ByteSize.format(bytes)): delete data first, or choose a larger size"
                )
            }
            try await commands.run("/usr/sbin/xfs_quota", Self.limitArguments(id: id, bytes: bytes, filesystem: try mountPoint()))
        }
        var updated = projects
        updated.limits = areas
        try Files.write(updated.text, to: paths.projectsFile(name), mode: 0o600)
    }

    static func limitArguments(id: UInt32, bytes: UInt64, filesystem: String) -> [String] {
        ["-x", "-c", "limit -p bhard=\(max(bytes >> 10, 1))k \(id)", filesystem]
    }

    /// XFS answers statfs on a project-inheriting directory with its project's limit and usage.
    public func usage(_ name: TenantName) throws -> DiskUsage {
        DiskUsage(data: try Self.statfsUsage(paths.dataMount(name)), wal: try Self.statfsUsage(paths.walMount(name)))
    }

    static func statfsUsage(_ path: String) throws -> AreaUsage {
        var fs = statvfs()
        guard statvfs(path, &fs) == 0 else { throw FleetError.failed("statfs \(path): \(errnoText())") }
        let block = UInt64(fs.f_frsize)
        return AreaUsage(usedBytes: (UInt64(fs.f_blocks) - UInt64(fs.f_bfree)) * block, limitBytes: UInt64(fs.f_blocks) * block)
    }

    public func unmount(_ name: TenantName) async throws {}

    public func remove(_ name: TenantName) async throws {
        guard let projects = try? self.projects(name) else { return try Files.removeTree(paths.directory(name)) }
        let fs = try mountPoint()
        for (id, path) in [(projects.wal, paths.walMount(name)), (projects.data, paths.dataMount(name))] {
            try await commands.run("/usr/sbin/xfs_quota", ["-x", "-c", "limit -p bhard=0 \(id)", fs])
            if FileManager.default.fileExists(atPath: path) {
                try await commands.run("/usr/sbin/xfs_quota", ["-x", "-c", "project -C -p \(path) \(id)", fs])
            }
        }
        try Files.removeTree(paths.directory(name))
    }

    func projects(_ name: TenantName) throws -> Projects {
        guard let text = try? String(contentsOfFile: paths.projectsFile(name), encoding: .utf8), let projects = Projects.parse(text) else {
            throw FleetError.failed("tenant \(name) has no XFS project ids (\(paths.projectsFile(name)))")
        }
        return projects
    }

    /// The two lowest ids no tenant under this root holds. Creates run one at a time per tenant
    /// name; a lock file keeps two different creates from taking the same ids.
    func allocate() throws -> Projects {
        let lock = open(paths.disksDirectory + "/.projects.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard lock >= 0 else { throw FleetError.failed("cannot lock \(paths.disksDirectory): \(errnoText())") }
        defer { close(lock) }
        flock(lock, LOCK_EX)
        var taken = Set<UInt32>()
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: paths.disksDirectory)) ?? [] {
            if let text = try? String(contentsOfFile: paths.disksDirectory + "/" + entry + "/projects", encoding: .utf8),
                let projects = Projects.parse(text)
            {
                taken.formUnion([projects.data, projects.wal])
            }
        }
        let free = Self.projectIDs.lazy.filter { !taken.contains($0) }.prefix(2)
        guard free.count == 2 else { throw FleetError.failed("no free XFS project ids left in \(Self.projectIDs)") }
        return Projects(data: free.first!, wal: free.dropFirst().first!, limits: nil)
    }

    /// The XFS mount point holding the root.
    func mountPoint() throws -> String {
        guard let mount = MountTable.read(host: host)?.mount(containing: paths.layout.root), mount.fsType == "xfs" else {
            throw FleetError.failed("\(paths.layout.root) is not on an XFS filesystem")
        }
        return mount.mountPoint
    }
}
