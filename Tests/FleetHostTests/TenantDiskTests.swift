import FleetCore
import FleetHost
@testable import FleetSystem
import Foundation
import Testing

private let mountinfo = """
    22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
    40 22 0:35 / /srv/pg rw,noatime shared:20 - xfs /dev/vdb rw,attr2,inode64,logbufs=8,prjquota
    41 40 7:3 / /srv/pg/tenants/a\\040b rw,nosuid,nodev - ext4 /dev/loop3 rw,discard
    42 22 0:36 / /mnt/plain rw - xfs /dev/vdc rw,attr2,noquota

    """

@Test func mountinfoIsParsedWithEscapesAndSuperOptions() {
    let table = MountTable.parse(mountinfo)
    #expect(table.mounts.count == 4)
    #expect(table.mount(at: "/srv/pg/tenants/a b")?.source == "/dev/loop3")
    #expect(table.mount(containing: "/srv/pg/tenants/x/data")?.mountPoint == "/srv/pg")
    #expect(table.mount(containing: "/srv/pgx")?.mountPoint == "/")
    #expect(table.mount(containing: "/srv/pg")?.hasProjectQuota == true)
    #expect(table.mount(at: "/mnt/plain")?.hasProjectQuota == false)
}

@Test func theBackendFollowsTheRootsFilesystem() throws {
    let fake = FileManager.default.temporaryDirectory.appendingPathComponent("disk-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: fake) }
    try FileManager.default.createDirectory(atPath: fake + "/proc/self", withIntermediateDirectories: true)
    try mountinfo.write(toFile: fake + "/proc/self/mountinfo", atomically: true, encoding: .utf8)
    let host = HostRoot(fake)
    #expect(DiskBackendKind.detect(for: "/srv/pg/root", host: host) == .xfsProject)
    #expect(DiskBackendKind.detect(for: "/mnt/plain/root", host: host) == .loopImage)
    #expect(DiskBackendKind.detect(for: "/var/lib/pgfleet", host: host) == .loopImage)
}

@Test func imagesLeaveRoomToGrowWithoutResizing() {
    #expect(LoopImageDisk.imageBytes(limit: 98 << 20, area: .data) == 16 << 30)
    #expect(LoopImageDisk.imageBytes(limit: 30 << 20, area: .wal) == 4 << 30)
    #expect(LoopImageDisk.imageBytes(limit: 16 << 20, area: .system) == 1 << 30)
    #expect(LoopImageDisk.imageBytes(limit: 256 << 20, area: .log) > 1 << 30, "a 256MB log gets four times its limit")
    let large = LoopImageDisk.imageBytes(limit: 10 << 30, area: .data)
    #expect(large >= 40 << 30 && large - Ext4Overhead.bytes(imageBytes: large, journalBytes: 16 << 20) >= 40 << 30)
}

@Test func walPathsAndTheRelativeLink() throws {
    let paths = DiskPaths(layout: FleetLayout(root: "/r"))
    let name = try TenantName(validating: "a")
    #expect(paths.image(name, .data) == "/r/disks/a/data.img")
    #expect(paths.walDirectory(name) == "/r/tenants/a/wal/pg_wal")
    #expect(paths.baseMount(name) == "/r/tenants/a/data/base")
    #expect(paths.baseDirectory(name) == "/r/tenants/a/tables/base")
    #expect(paths.logMount(name) == FleetLayout(root: "/r").tenantLogDirectory(name), "postgresql.log stays where the layout says")
    // Every area's mount point is inside the system area's, mounted first.
    for area in DiskArea.allCases.dropFirst() {
        #expect(paths.mountPoint(name, area).hasPrefix(paths.mountPoint(name, .system) + "/"))
    }
    #expect(DiskPaths.relativeWALLink == "../wal/pg_wal")
    // From PGDATA (/r/tenants/a/data) the link reaches the WAL area.
    #expect(URL(fileURLWithPath: "/r/tenants/a/data/" + DiskPaths.relativeWALLink).standardized.path == paths.walDirectory(name))
}

/// Records the commands instead of running them.
final class RecordingCommands: DiskCommandRunner, @unchecked Sendable {
    private let lock = NSLock()
    private var recorded: [[String]] = []
    var commands: [[String]] { lock.withLock { recorded } }

    func run(_ executable: String, _ arguments: [String]) async throws -> CommandResult {
        lock.withLock { recorded.append([executable] + arguments) }
        return CommandResult(status: .exited(0), stdout: "", stderr: "")
    }
}

@Test func xfsProjectsAreAssignedLimitedAndCleared() async throws {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("xfs-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: root) }
    try FileManager.default.createDirectory(atPath: root + "/proc/self", withIntermediateDirectories: true)
    try "1 0 0:35 / / rw - xfs /dev/vdb rw,prjquota\n".write(toFile: root + "/proc/self/mountinfo", atomically: true, encoding: .utf8)
    let runner = RecordingCommands()
    let layout = FleetLayout(root: root + "/pgfleet")
    let disk = XFSProjectDisk(layout: layout, commands: runner, host: HostRoot(root))
    let owner = UserIdentity(name: "me", uid: getuid(), gid: getgid())
    let a = try TenantName(validating: "a"), b = try TenantName(validating: "b")
    let areas = DiskAreas(systemBytes: 16 << 20, dataBytes: 74 << 20, walBytes: 30 << 20, logBytes: 8 << 20)
    try await disk.create(a, areas: areas, owner: owner)
    let x = "/usr/sbin/xfs_quota"
    let t = "\(root)/pgfleet/tenants/a"
    // The system and data limits wait for adopt: initdb writes base/ before it is a project of its own.
    #expect(runner.commands == [
        [x, "-x", "-c", "project -s -p \(t) 1000000", "/"],
        [x, "-x", "-c", "project -s -p \(t)/wal 1000001", "/"],
        [x, "-x", "-c", "project -s -p \(t)/log 1000002", "/"],
        [x, "-x", "-c", "limit -p bhard=30720k 1000001", "/"],
        [x, "-x", "-c", "limit -p bhard=8192k 1000002", "/"],
    ])
    let staging = root + "/staging"
    try FileManager.default.createDirectory(atPath: staging + "/base", withIntermediateDirectories: true)
    try FileManager.default.createDirectory(atPath: staging + "/pg_wal", withIntermediateDirectories: true)
    try await disk.adopt(a, cluster: staging)
    // A cluster made elsewhere: its pg_wal into the WAL project, the rest into place, linked.
    #expect(FileManager.default.fileExists(atPath: t + "/wal/pg_wal") && FileManager.default.fileExists(atPath: t + "/data/base"))
    #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: t + "/data/pg_wal")) == DiskPaths.relativeWALLink)
    #expect(!FileManager.default.fileExists(atPath: staging))
    #expect(runner.commands.suffix(8) == [
        [x, "-x", "-c", "project -s -p \(t) 1000000", "/"],
        [x, "-x", "-c", "project -s -p \(t)/wal 1000001", "/"],
        [x, "-x", "-c", "project -s -p \(t)/log 1000002", "/"],
        [x, "-x", "-c", "project -s -p \(t)/data/base 1000003", "/"],
        [x, "-x", "-c", "limit -p bhard=16384k 1000000", "/"],
        [x, "-x", "-c", "limit -p bhard=30720k 1000001", "/"],
        [x, "-x", "-c", "limit -p bhard=8192k 1000002", "/"],
        [x, "-x", "-c", "limit -p bhard=75776k 1000003", "/"],
    ])
    try await disk.create(b, areas: areas, owner: owner)
    #expect(Array(runner.commands.suffix(5))[0][3] == "project -s -p \(root)/pgfleet/tenants/b 1000004", "the next tenant gets the next ids")
    try await disk.remove(a)
    #expect(runner.commands.suffix(8) == [
        [x, "-x", "-c", "limit -p bhard=0 1000003", "/"],
        [x, "-x", "-c", "project -C -p \(t)/data/base 1000003", "/"],
        [x, "-x", "-c", "limit -p bhard=0 1000002", "/"],
        [x, "-x", "-c", "project -C -p \(t)/log 1000002", "/"],
        [x, "-x", "-c", "limit -p bhard=0 1000001", "/"],
        [x, "-x", "-c", "project -C -p \(t)/wal 1000001", "/"],
        [x, "-x", "-c", "limit -p bhard=0 1000000", "/"],
        [x, "-x", "-c", "project -C -p \(t) 1000000", "/"],
    ])
    #expect(!FileManager.default.fileExists(atPath: DiskPaths(layout: layout).directory(a)))
}
