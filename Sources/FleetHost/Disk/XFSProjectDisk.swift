import FleetCore
import FleetSystem
import Foundation

/// XFS project quotas on the root filesystem (mounted with `prjquota`): one project per area,
/// each with a hard block limit: the tenant's directory (system), PGDATA/base (data), its `wal/`
/// and its `log/`. Nothing to mount, so `ensureMounted` only checks; limits change online in both
/// directions.
///
/// A rename into a directory of another project fails with EXDEV on XFS: a ready-pool cluster
/// must be given the tenant's projects (`assign`) before it is renamed into place, or be built
/// inside it. PostgreSQL itself renames only within a directory.
///
/// initdb writes base/ (22MB) before it can be a project of its own, so the system and data
/// limits are set by `adopt`, after base/ has moved to the data project.
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
        public var ids: [DiskArea: UInt32]
        /// The limits last set.
        public var limits: DiskAreas?

        func id(_ area: DiskArea) -> UInt32 { ids[area] ?? 0 }

        var text: String {
            DiskArea.allCases.map { "\($0.rawValue)=\(id($0))" }.joined(separator: " ")
                + (limits.map { limits in DiskArea.allCases.map { " \($0.rawValue)Bytes=\(limits.bytes($0))" }.joined() } ?? "") + "\n"
        }

        static func parse(_ text: String) -> Projects? {
            var values: [String: UInt64] = [:]
            for pair in text.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
                let parts = pair.split(separator: "=")
                if parts.count == 2, let value = UInt64(parts[1]) { values[String(parts[0])] = value }
            }
            var ids: [DiskArea: UInt32] = [:]
            for area in DiskArea.allCases {
                guard let id = values[area.rawValue].flatMap(UInt32.init(exactly:)) else { return nil }
                ids[area] = id
            }
            let bytes = DiskArea.allCases.map { values[$0.rawValue + "Bytes"] }
            let limits = bytes.contains(nil) ? nil : DiskAreas(systemBytes: bytes[0]!, dataBytes: bytes[3]!, walBytes: bytes[1]!, logBytes: bytes[2]!)
            return Projects(ids: ids, limits: limits)
        }
    }

    /// The root of each area's project: PGDATA/base for the data area.
    func projectRoot(_ name: TenantName, _ area: DiskArea) -> String {
        area == .data ? paths.baseMount(name) : paths.mountPoint(name, area)
    }

    public func create(_ name: TenantName, areas: DiskAreas, owner: UserIdentity) async throws {
        try Files.makeDirectory(paths.disksDirectory, mode: 0o700)
        try Files.makeDirectory(paths.directory(name), mode: 0o700)
        var projects = try allocate()
        projects.limits = areas
        try Files.write(projects.text, to: paths.projectsFile(name), mode: 0o600)
        for area in [DiskArea.system, .wal, .log] {
            try Files.makeDirectory(paths.mountPoint(name, area), mode: 0o700, owner: owner)
        }
        try await assign(name)
        let fs = try mountPoint()
        for area in [DiskArea.wal, .log] {
            try await commands.run("/usr/sbin/xfs_quota", Self.limitArguments(id: projects.id(area), bytes: areas.bytes(area), filesystem: fs))
        }
    }

    /// Sets the tenant's projects on everything under its directory (system first, then the
    /// areas inside it; PGDATA/base once it exists).
    public func assign(_ name: TenantName) async throws {
        let projects = try self.projects(name)
        let fs = try mountPoint()
        for area in [DiskArea.system, .wal, .log, .data] where FileManager.default.fileExists(atPath: projectRoot(name, area)) {
            try await commands.run("/usr/sbin/xfs_quota", ["-x", "-c", "project -s -p \(projectRoot(name, area)) \(projects.id(area))", fs])
        }
    }

    public func adopt(_ name: TenantName, cluster: String) async throws {
        let data = paths.layout.dataDirectory(name)
        // A cluster made elsewhere (the ready pool's, an initdb beside the tenant's directory):
        // its pg_wal into the WAL project, the rest into place. Across projects XFS refuses a
        // rename (EXDEV): those moves are copies.
        if cluster != data {
            let wal = cluster + "/pg_wal"
            let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: wal)).map { $0.hasPrefix("/") ? $0 : cluster + "/" + $0 }
            if !FileManager.default.fileExists(atPath: paths.walDirectory(name)) {
                guard FileManager.default.fileExists(atPath: target ?? wal) else {
                    throw FleetError.failed("\(cluster) holds no pg_wal: initdb the cluster there before adopting it into tenant \(name)'s disk")
                }
                try await commands.move(target ?? wal, to: paths.walDirectory(name))
            }
            if !FileManager.default.fileExists(atPath: data) {
                var link = stat()
                if lstat(wal, &link) == 0, link.st_mode & S_IFMT == S_IFLNK { unlink(wal) }
                try await commands.move(cluster, to: data)
            }
        }
        try DiskPaths.relinkWAL(dataDirectory: data)
        try await assign(name)
        let projects = try self.projects(name)
        guard let limits = projects.limits else { throw FleetError.failed("tenant \(name)'s XFS projects have no limits (\(paths.projectsFile(name)))") }
        try await resize(name, areas: limits)
    }

    public func ensureMounted(_ name: TenantName) async throws {
        _ = try projects(name)
        for area in DiskArea.allCases where !FileManager.default.fileExists(atPath: projectRoot(name, area)) {
            throw FleetError.failed("\(projectRoot(name, area)) is missing: the disk of tenant \(name) cannot be used")
        }
    }

    public func resize(_ name: TenantName, areas: DiskAreas) async throws {
        let projects = try self.projects(name)
        // Usage matters only when a limit shrinks (XFS itself accepts a limit below usage).
        let shrinking = projects.limits.map { old in DiskArea.allCases.contains { areas.bytes($0) < old.bytes($0) } } ?? false
        let current = shrinking ? try usage(name) : nil
        for area in DiskArea.allCases {
            if let used = current?.area(area).usedBytes, used > areas.bytes(area) {
                throw FleetError.invalidRequest(
                    "the \(area.rawValue) area holds \(ByteSize.format(used)), more than the new limit \(ByteSize.format(areas.bytes(area))): "
                        + "delete data first, or choose a larger size"
                )
            }
            try await commands.run("/usr/sbin/xfs_quota", Self.limitArguments(id: projects.id(area), bytes: areas.bytes(area), filesystem: try mountPoint()))
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
        try DiskUsage { area throws(FleetError) in try Self.statfsUsage(projectRoot(name, area)) }
    }

    static func statfsUsage(_ path: String) throws(FleetError) -> AreaUsage {
        var fs = statvfs()
        guard statvfs(path, &fs) == 0 else { throw .failed("statfs \(path): \(errnoText())") }
        let block = UInt64(fs.f_frsize)
        return AreaUsage(usedBytes: (UInt64(fs.f_blocks) - UInt64(fs.f_bfree)) * block, limitBytes: UInt64(fs.f_blocks) * block)
    }

    public func unmount(_ name: TenantName) async throws {}

    public func remove(_ name: TenantName) async throws {
        guard let projects = try? self.projects(name) else { return try Files.removeTree(paths.directory(name)) }
        let fs = try mountPoint()
        for area in [DiskArea.data, .log, .wal, .system] {
            let id = projects.id(area), path = projectRoot(name, area)
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

    /// The lowest ids (one per area) no tenant under this root holds. Creates run one at a time per tenant
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
                taken.formUnion(projects.ids.values)
            }
        }
        let free = Array(Self.projectIDs.lazy.filter { !taken.contains($0) }.prefix(DiskArea.allCases.count))
        guard free.count == DiskArea.allCases.count else {
            throw FleetError.failed("no free XFS project ids left in \(Self.projectIDs): remove tenants that are gone, or their \(paths.disksDirectory)/<name>/projects files")
        }
        return Projects(ids: Dictionary(uniqueKeysWithValues: zip(DiskArea.allCases, free)), limits: nil)
    }

    /// The XFS mount point holding the root.
    func mountPoint() throws -> String {
        guard let mount = MountTable.read(host: host)?.mount(containing: paths.layout.root), mount.fsType == "xfs" else {
            throw FleetError.failed("\(paths.layout.root) is not on an XFS filesystem")
        }
        return mount.mountPoint
    }
}
