import FleetCore
import FleetSystem
import Foundation

/// A tenant's disk quota: four areas with a hard limit each (see `DiskAreas` for why): system
/// (the tenant's directory: PGDATA but its base/, the socket), data (PGDATA/base), WAL
/// (`DiskPaths.walMount`) and log (`DiskPaths.logMount`). Two backends: `LoopImageDisk` (a
/// filesystem image per area, any root filesystem) and `XFSProjectDisk` (XFS project quotas on
/// the root filesystem itself).
///
/// The order of use: `create`, then initdb (or the ready pool's cluster) into
/// `DiskPaths.stagingDirectory` with `--waldir` `DiskPaths.walDirectory`, then `adopt`, then
/// postgres. After a reboot, `ensureMounted` before postgres.
public protocol TenantDisk: Sendable {
    var kind: DiskBackendKind { get }
    /// Makes the areas with these limits and leaves them ready (mounted) for the cluster's files,
    /// owned by `owner`. The tenant's directory must be empty or absent.
    func create(_ name: TenantName, areas: DiskAreas, owner: UserIdentity) async throws
    /// Moves an initialised cluster into the areas: its base/ into the data area (a rename when
    /// it was made in `DiskPaths.stagingDirectory`, a copy otherwise), its pg_wal into the WAL
    /// area, the rest to `FleetLayout.dataDirectory` in the system area, with `pg_wal` the relative
    /// link. Idempotent: after a crash during it, run it again with the same `cluster`.
    func adopt(_ name: TenantName, cluster: String) async throws
    /// Idempotent: after a reboot nothing is mounted; after a crash half may be.
    func ensureMounted(_ name: TenantName) async throws
    /// New limits, online. Growing always works; shrinking only while what is stored fits.
    func resize(_ name: TenantName, areas: DiskAreas) async throws
    func usage(_ name: TenantName) throws -> DiskUsage
    /// Unmounts (the postmaster must be stopped); `ensureMounted` brings it back.
    func unmount(_ name: TenantName) async throws
    /// Unmounts and deletes the areas and everything stored in them. Absent areas are no error.
    func remove(_ name: TenantName) async throws
}

public enum DiskBackendKind: String, Sendable, Equatable, Codable {
    case loopImage = "loop-image"
    case xfsProject = "xfs-project"

    /// XFS project quotas where the filesystem holding `path` is XFS mounted with `prjquota`
    /// (`pquota`), loop images otherwise.
    public static func detect(for path: String, host: HostRoot = .real) -> DiskBackendKind {
        guard let mount = MountTable.read(host: host)?.mount(containing: path) else { return .loopImage }
        return mount.fsType == "xfs" && mount.hasProjectQuota ? .xfsProject : .loopImage
    }
}

/// The areas of a tenant's disk, in the order they are mounted (each inside the first).
public enum DiskArea: String, Sendable, CaseIterable {
    case system, wal, log, data
}

extension DiskAreas {
    public func bytes(_ area: DiskArea) -> UInt64 {
        switch area {
        case .system: systemBytes
        case .data: dataBytes
        case .wal: walBytes
        case .log: logBytes
        }
    }
}

extension DiskUsage {
    public func area(_ area: DiskArea) -> AreaUsage {
        switch area {
        case .system: system
        case .data: data
        case .wal: wal
        case .log: log
        }
    }

    init(reading: (DiskArea) throws(FleetError) -> AreaUsage) throws(FleetError) {
        self.init(system: try reading(.system), data: try reading(.data), wal: try reading(.wal), log: try reading(.log))
    }
}

/// Where a tenant's disk lives, beside the layout's own paths.
///
///     ROOT/disks/                 0700 root
///       <name>/{system,data,wal,log}.img   the loop images (LoopImageDisk)
///       <name>/projects                    "system=ID data=ID wal=ID log=ID" (XFSProjectDisk)
///     ROOT/tenants/<name>/             the system area's mount point (or project root)
///       data/                          PGDATA
///         base/                        the data area's base/, bind-mounted (or its project root)
///         pg_wal → ../wal/pg_wal
///       wal/                           the WAL area's mount point (or project root)
///         pg_wal/                      initdb --waldir
///       log/                           the log area's mount point (or project root)
///       tables/                        the data area's mount point (LoopImageDisk)
///         base/                        bound at data/base
///         staging/                     initdb -D here: base/ is then renamed, not copied
///
/// base/ is a bind mount of a subdirectory, not the data area's mount point, so that PGDATA/base
/// holds only what PostgreSQL writes: the area's root-owned `lost+found` and reserve would be
/// unreadable directories that pg_basebackup and pgBackRest fail on.
public struct DiskPaths: Sendable, Equatable {
    public let layout: FleetLayout

    public init(layout: FleetLayout) {
        self.layout = layout
    }

    public var disksDirectory: String { layout.root + "/disks" }
    public func directory(_ name: TenantName) -> String { disksDirectory + "/" + name.rawValue }
    public func image(_ name: TenantName, _ area: DiskArea) -> String { directory(name) + "/" + area.rawValue + ".img" }
    public func projectsFile(_ name: TenantName) -> String { directory(name) + "/projects" }
    public func systemMount(_ name: TenantName) -> String { layout.tenantDirectory(name) }
    /// The data area's filesystem (LoopImageDisk); PostgreSQL uses it as `baseMount`.
    public func dataMount(_ name: TenantName) -> String { layout.tenantDirectory(name) + "/" + Self.dataMountName }
    public func walMount(_ name: TenantName) -> String { layout.tenantDirectory(name) + "/" + Self.walMountName }
    public func logMount(_ name: TenantName) -> String { layout.tenantLogDirectory(name) }
    /// PGDATA/base: where the data area's `base/` is bind-mounted.
    public func baseMount(_ name: TenantName) -> String { layout.dataDirectory(name) + "/base" }
    /// The data area's `base/` (LoopImageDisk), bound at `baseMount`.
    public func baseDirectory(_ name: TenantName) -> String { dataMount(name) + "/base" }
    /// `initdb -D` for the tenant, on the data area, so that `adopt` renames base/ instead of copying it.
    public func stagingDirectory(_ name: TenantName) -> String { dataMount(name) + "/staging" }
    /// `initdb --waldir` for the tenant.
    public func walDirectory(_ name: TenantName) -> String { walMount(name) + "/pg_wal" }

    /// Where each area is mounted (or its project's root).
    public func mountPoint(_ name: TenantName, _ area: DiskArea) -> String {
        switch area {
        case .system: systemMount(name)
        case .data: dataMount(name)
        case .wal: walMount(name)
        case .log: logMount(name)
        }
    }

    public static let dataMountName = "tables"
    public static let walMountName = "wal"
    /// PGDATA/pg_wal as a relative link: the same cluster works at the pool's path and the tenant's.
    public static let relativeWALLink = "../" + walMountName + "/pg_wal"

    /// Replaces initdb's absolute `pg_wal` link in `dataDirectory` by `relativeWALLink`.
    public static func relinkWAL(dataDirectory: String) throws {
        let link = dataDirectory + "/pg_wal"
        let temporary = link + ".pgfleet-new"
        unlink(temporary)
        guard symlink(relativeWALLink, temporary) == 0 else { throw FleetError.failed("symlink \(temporary): \(String(cString: strerror(errno)))") }
        // The link belongs to the cluster's owner like the rest of PGDATA.
        var info = stat()
        if lstat(dataDirectory, &info) == 0 { lchown(temporary, info.st_uid, info.st_gid) }
        guard rename(temporary, link) == 0 else { throw FleetError.failed("rename \(temporary): \(String(cString: strerror(errno)))") }
    }
}

/// Runs the disk tools (mkfs, mount, losetup, resize2fs, xfs_quota); replaced in unit tests.
public protocol DiskCommandRunner: Sendable {
    /// Runs the command and throws a `FleetError` with its stderr unless it succeeded.
    @discardableResult
    func run(_ executable: String, _ arguments: [String]) async throws -> CommandResult
}

extension DiskCommandRunner {
    /// rename, or a copy (owners, modes and links kept) then a rename where the kernel refuses
    /// one (EXDEV: another filesystem, or on XFS another project). A crash leaves either the
    /// source or the destination whole, and a `.pgfleet-copy` to be made again.
    func move(_ source: String, to destination: String) async throws {
        if rename(source, destination) == 0 { return }
        guard errno == EXDEV else { throw FleetError.failed("rename \(source) to \(destination): \(errnoText())") }
        let partial = destination + ".pgfleet-copy"
        try Files.removeTree(partial)
        try await run("/bin/cp", ["-a", "--", source, partial])
        guard rename(partial, destination) == 0 else { throw FleetError.failed("rename \(partial) to \(destination): \(errnoText())") }
        try Files.removeTree(source)
    }
}

public struct SystemDiskCommands: DiskCommandRunner {
    public init() {}

    @discardableResult
    public func run(_ executable: String, _ arguments: [String]) async throws -> CommandResult {
        let name = (executable as NSString).lastPathComponent
        return try await Command.run(executable, arguments).check(([name] + arguments).joined(separator: " "))
    }
}

func errnoText() -> String { String(cString: strerror(errno)) }
