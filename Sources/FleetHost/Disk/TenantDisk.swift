import FleetCore
import FleetSystem
import Foundation

/// A tenant's disk quota: a data area (its directory: data, temp files, socket, log) and a WAL
/// area of its own at `DiskPaths.walMount`, each with a hard limit. Two backends: `LoopImageDisk`
/// (a filesystem image per area, any root filesystem) and `XFSProjectDisk` (XFS project quotas on
/// the root filesystem itself).
public protocol TenantDisk: Sendable {
    var kind: DiskBackendKind { get }
    /// Makes the areas with these limits and leaves them ready (mounted) for the cluster's files,
    /// owned by `owner`. The tenant's directory must be empty or absent.
    func create(_ name: TenantName, areas: DiskAreas, owner: UserIdentity) async throws
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

/// Where a tenant's disk lives, beside the layout's own paths.
///
///     ROOT/disks/                 0700 root
///       <name>/{data,wal}.img          the loop images (LoopImageDisk)
///       <name>/projects                "data=ID wal=ID" (XFSProjectDisk)
///     ROOT/tenants/<name>/             the data area's mount point (or project root)
///       wal/                           the WAL area's mount point (or project root)
///         pg_wal/                      initdb --waldir; PGDATA/pg_wal → ../wal/pg_wal
public struct DiskPaths: Sendable, Equatable {
    public let layout: FleetLayout

    public init(layout: FleetLayout) {
        self.layout = layout
    }

    public var disksDirectory: String { layout.root + "/disks" }
    public func directory(_ name: TenantName) -> String { disksDirectory + "/" + name.rawValue }
    public func dataImage(_ name: TenantName) -> String { directory(name) + "/data.img" }
    public func walImage(_ name: TenantName) -> String { directory(name) + "/wal.img" }
    public func projectsFile(_ name: TenantName) -> String { directory(name) + "/projects" }
    public func dataMount(_ name: TenantName) -> String { layout.tenantDirectory(name) }
    public func walMount(_ name: TenantName) -> String { layout.tenantDirectory(name) + "/" + Self.walMountName }
    /// `initdb --waldir` for the tenant.
    public func walDirectory(_ name: TenantName) -> String { walMount(name) + "/pg_wal" }

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

public struct SystemDiskCommands: DiskCommandRunner {
    public init() {}

    @discardableResult
    public func run(_ executable: String, _ arguments: [String]) async throws -> CommandResult {
        let name = (executable as NSString).lastPathComponent
        return try await Command.run(executable, arguments).check(([name] + arguments).joined(separator: " "))
    }
}

func errnoText() -> String { String(cString: strerror(errno)) }
