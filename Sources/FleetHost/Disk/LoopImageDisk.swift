import FleetCore
import FleetSystem
import Foundation

/// One sparse ext4 image per area ("one partition per client"), loop-mounted at the tenant's
/// directory (system), its `wal/`, its `log/` and its `tables/` (data, whose `base/` is then
/// bind-mounted at PGDATA/base). The limit inside each image is a `Reserve`; the image only grows
/// (truncate, `losetup -c`, online `resize2fs`) when a limit passes what the filesystem can hold,
/// so most `tenant set --disk` changes never resize a filesystem.
public struct LoopImageDisk: TenantDisk {
    public let paths: DiskPaths
    let commands: any DiskCommandRunner
    let host: HostRoot

    public var kind: DiskBackendKind { .loopImage }

    public init(layout: FleetLayout, commands: any DiskCommandRunner = SystemDiskCommands(), host: HostRoot = .real) {
        self.paths = DiskPaths(layout: layout)
        self.commands = commands
        self.host = host
    }

    // MARK: Image sizes

    /// An image holds at least this so that growing rarely needs a resize: a sparse 16GB ext4
    /// costs the host about 4.4MB (inode tables are never written), a 4GB one 2.2MB, a 1GB one
    /// under 1MB.
    public static func smallestImage(_ area: DiskArea) -> UInt64 {
        switch area {
        case .data: 16 << 30
        case .wal: 4 << 30
        case .system, .log: 1 << 30
        }
    }

    /// Growth room an image gets beyond its limit, as a multiple of the limit.
    public static let growthFactor: UInt64 = 4
    static func journal(_ area: DiskArea) -> UInt64 { area == .data ? 16 << 20 : 8 << 20 }

    public static func imageBytes(limit: UInt64, area: DiskArea) -> UInt64 {
        max(smallestImage(area), Ext4Overhead.imageBytes(usable: limit * growthFactor, journalBytes: journal(area)))
    }

    func image(_ name: TenantName, _ area: DiskArea) -> String { paths.image(name, area) }
    func mountPoint(_ name: TenantName, _ area: DiskArea) -> String { paths.mountPoint(name, area) }

    // MARK: TenantDisk

    public func create(_ name: TenantName, areas: DiskAreas, owner: UserIdentity) async throws {
        try Files.makeDirectory(paths.disksDirectory, mode: 0o700)
        try Files.makeDirectory(paths.directory(name), mode: 0o700)
        for area in DiskArea.allCases {
            try await makeImage(image(name, area), bytes: Self.imageBytes(limit: areas.bytes(area), area: area), owner: owner, area: area)
        }
        try await mountAll(name, owner: owner)
        try await resize(name, areas: areas)
    }

    public func adopt(_ name: TenantName, cluster: String) async throws {
        try await mountAll(name, owner: nil)
        if isBound(name) { return }
        let data = paths.layout.dataDirectory(name), base = paths.baseDirectory(name)
        var info = stat()
        guard stat(paths.systemMount(name), &info) == 0 else { throw FleetError.failed("stat \(paths.systemMount(name)): \(errnoText())") }
        let owner = UserIdentity(name: "", uid: info.st_uid, gid: info.st_gid)
        // Each step ends in a rename, so a crash leaves either the old place or the new one.
        if !FileManager.default.fileExists(atPath: base) {
            guard FileManager.default.fileExists(atPath: cluster + "/base") else {
                throw FleetError.failed("\(cluster) holds no base/: initdb the cluster there before adopting it into tenant \(name)'s disk")
            }
            try await commands.move(cluster + "/base", to: base)
        }
        // initdb --waldir made pg_wal a link to the WAL area already; a ready-pool cluster's
        // pg_wal (a directory, or a link elsewhere) moves there.
        let wal = cluster + "/pg_wal"
        if !FileManager.default.fileExists(atPath: paths.walDirectory(name)) {
            let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: wal)).map { $0.hasPrefix("/") ? $0 : cluster + "/" + $0 }
            try await commands.move(target ?? wal, to: paths.walDirectory(name))
        }
        if !FileManager.default.fileExists(atPath: data) {
            // Only the link is left: relinkWAL makes the relative one.
            var link = stat()
            if lstat(wal, &link) == 0, link.st_mode & S_IFMT == S_IFLNK { unlink(wal) }
            try await commands.move(cluster, to: data)
        }
        try Files.makeDirectory(paths.baseMount(name), mode: 0o700, owner: owner)
        try DiskPaths.relinkWAL(dataDirectory: data)
        try await bind(name)
    }

    public func ensureMounted(_ name: TenantName) async throws {
        try await mountAll(name, owner: nil)
        // Before `adopt` there is no cluster to bind base/ into.
        if FileManager.default.fileExists(atPath: paths.baseDirectory(name)), FileManager.default.fileExists(atPath: paths.baseMount(name)) {
            try await bind(name)
        }
    }

    public func resize(_ name: TenantName, areas: DiskAreas) async throws {
        for area in DiskArea.allCases {
            try await setLimit(areas.bytes(area), name: name, area: area)
        }
    }

    public func usage(_ name: TenantName) throws -> DiskUsage {
        try DiskUsage { area throws(FleetError) in try Reserve.read(mount: mountPoint(name, area)).usage }
    }

    public func unmount(_ name: TenantName) async throws {
        // Innermost first: base/'s bind mount, then the areas mounted inside the system area.
        let points = [(paths.baseMount(name), DiskArea.data)] + DiskArea.allCases.reversed().map { (mountPoint(name, $0), $0) }
        for (point, area) in points {
            while let mounted = mountTable().mount(at: point) {
                guard try backingFile(of: mounted.source) == image(name, area, resolved: true) else {
                    throw FleetError.conflict("\(point) holds \(mounted.source), not \(name)'s \(area.rawValue) image; unmount it by hand")
                }
                try await commands.run("/bin/umount", [point])
            }
        }
    }

    public func remove(_ name: TenantName) async throws {
        try await unmount(name)
        for area in DiskArea.allCases {
            for device in try await loopDevices(of: image(name, area)) {
                try await commands.run("/sbin/losetup", ["-d", device])
            }
        }
        try Files.removeTree(paths.directory(name))
    }

    // MARK: Steps

    func makeImage(_ path: String, bytes: UInt64, owner: UserIdentity, area: DiskArea) async throws {
        unlink(path)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FleetError.failed("cannot create \(path): \(errnoText())") }
        defer { close(fd) }
        guard ftruncate(fd, off_t(bytes)) == 0 else { throw FleetError.failed("truncate \(path): \(errnoText())") }
        try await commands.run("/sbin/mkfs.ext4", Self.mkfsArguments(image: path, owner: owner, area: area))
    }

    /// -m 0: no blocks kept for root (pgfleet never writes as root there). -b 4096: mke2fs's
    /// "small" type would pick 1kB blocks for a small image. -i 16384: an empty cluster has about
    /// a thousand files. Lazy init: mke2fs punches the sparse file's holes (discard), so inode
    /// tables and journal already read as zeros and nothing is written for them, now or later.
    static func mkfsArguments(image: String, owner: UserIdentity, area: DiskArea) -> [String] {
        [
            "-q", "-F", "-t", "ext4", "-m", "0", "-b", "4096", "-i", "16384", "-J", "size=\(journal(area) >> 20)",
            "-E", "lazy_itable_init=1,lazy_journal_init=1,root_owner=\(owner.uid):\(owner.gid)", image,
        ]
    }

    /// nosuid, nodev: nothing a tenant writes becomes a privilege. discard: deleting data gives
    /// the host its blocks back (the loop driver punches holes in the image).
    static let mountOptions = "nosuid,nodev,noatime,discard"

    /// The system area first (the others are mounted inside it), then the other three side by
    /// side: each mount is a process of its own, and a create or a claim waits for them.
    private func mountAll(_ name: TenantName, owner: UserIdentity?) async throws {
        try await mountArea(.system, name: name, owner: owner)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for area in DiskArea.allCases where area != .system {
                group.addTask { try await self.mountArea(area, name: name, owner: owner) }
            }
            try await group.waitForAll()
        }
    }

    private func mountArea(_ area: DiskArea, name: TenantName, owner: UserIdentity?) async throws {
        let point = mountPoint(name, area)
        let path = image(name, area)
        guard FileManager.default.fileExists(atPath: path) else {
            throw FleetError.failed("the \(area.rawValue) image of tenant \(name) is missing: \(path)")
        }
        if let mounted = mountTable().mount(at: point) {
            if try backingFile(of: mounted.source) == image(name, area, resolved: true) { return }
            throw FleetError.conflict("\(point) already holds \(mounted.source), not \(name)'s \(area.rawValue) image")
        }
        if area == .system {
            try Files.makeDirectory(point, mode: 0o700)
        } else if !FileManager.default.fileExists(atPath: point) {
            // The system filesystem holds the other mount points; a fresh one gets them now.
            var info = stat()
            guard stat(paths.systemMount(name), &info) == 0 else { throw FleetError.failed("stat \(paths.systemMount(name)): \(errnoText())") }
            try Files.makeDirectory(point, mode: 0o700, owner: owner ?? UserIdentity(name: "", uid: info.st_uid, gid: info.st_gid))
        }
        try await attach(path, at: point)
        let fresh = !FileManager.default.fileExists(atPath: Reserve.path(in: point))
        if fresh {
            try Reserve.prepare(mount: point)
            try Files.setMode(point, 0o700)
            // The system area's mount point is the tenant's directory: lost+found is no use
            // there, and e2fsck makes it again if it ever needs one.
            if area == .system { rmdir(point + "/lost+found") }
        }
    }

    /// True when PGDATA/base is the data area's base/.
    func isBound(_ name: TenantName) -> Bool {
        guard let mounted = mountTable().mount(at: paths.baseMount(name)) else { return false }
        return mounted.root == "/base" && (try? backingFile(of: mounted.source)) == image(name, .data, resolved: true)
    }

    private func bind(_ name: TenantName) async throws {
        let point = paths.baseMount(name)
        if isBound(name) { return }
        if let mounted = mountTable().mount(at: point) {
            throw FleetError.conflict("\(point) already holds \(mounted.source) (\(mounted.root)), not \(name)'s data area; unmount it by hand")
        }
        // PGDATA/base in the system area stays an empty directory under the bind mount.
        let hidden = (try? FileManager.default.contentsOfDirectory(atPath: point)) ?? []
        guard hidden.isEmpty else {
            throw FleetError.conflict("\(point) is not empty (\(hidden.prefix(3).joined(separator: ", "))): run adopt to move base/ into tenant \(name)'s data area")
        }
        try await commands.run("/bin/mount", ["--bind", paths.baseDirectory(name), point])
    }

    /// Mounts the image, reusing a loop device it is already attached to (a crash between
    /// losetup and mount): two devices on one image would be two writers of one filesystem.
    private func attach(_ path: String, at point: String) async throws {
        let devices = try await loopDevices(of: path)
        let table = mountTable()
        if let busy = devices.first(where: { device in table.mounts.contains { $0.source == device } }) {
            let elsewhere = table.mounts.first { $0.source == busy }?.mountPoint ?? "?"
            throw FleetError.conflict("\(path) is already mounted at \(elsewhere) (\(busy))")
        }
        if let device = devices.first {
            try await commands.run("/bin/mount", ["-t", "ext4", "-o", Self.mountOptions, device, point])
        } else {
            // mount -o loop attaches with autoclear: the device is released at the last unmount.
            try await commands.run("/bin/mount", ["-t", "ext4", "-o", "loop," + Self.mountOptions, path, point])
        }
    }

    private func setLimit(_ limit: UInt64, name: TenantName, area: DiskArea) async throws {
        let point = mountPoint(name, area)
        guard mountTable().mount(at: point) != nil else { throw FleetError.failed("the \(area.rawValue) area of tenant \(name) is not mounted at \(point)") }
        if case .needsLargerFilesystem = try Reserve.setLimit(limit, mount: point, area: area.rawValue) {
            try await growImage(name, area: area, limit: limit)
            guard case .done = try Reserve.setLimit(limit, mount: point, area: area.rawValue) else {
                throw FleetError.failed("the \(area.rawValue) filesystem of tenant \(name) is still too small for \(ByteSize.format(limit)) after resize2fs")
            }
        }
    }

    /// Online: truncate the image, tell the loop device (`losetup -c`), resize2fs the mounted filesystem.
    private func growImage(_ name: TenantName, area: DiskArea, limit: UInt64) async throws {
        let path = image(name, area)
        guard let device = mountTable().mount(at: mountPoint(name, area))?.source else { throw FleetError.failed("\(path) is not mounted") }
        let bytes = Self.imageBytes(limit: limit, area: area)
        var info = stat()
        guard stat(path, &info) == 0 else { throw FleetError.failed("stat \(path): \(errnoText())") }
        if UInt64(info.st_size) < bytes {
            guard truncate(path, off_t(bytes)) == 0 else { throw FleetError.failed("truncate \(path): \(errnoText())") }
        }
        try await commands.run("/sbin/losetup", ["-c", device])
        do {
            try await commands.run("/sbin/resize2fs", [device])
        } catch let error as FleetError where error.description.contains("Permission denied") {
            throw FleetError.failed(
                "\(error.description)\n(ext4's online resize needs CAP_SYS_RESOURCE, which this process lacks, e.g. in a container; "
                    + "without it a tenant's \(area.rawValue) area grows only up to its filesystem's size)"
            )
        }
    }

    func mountTable() -> MountTable { MountTable.read(host: host) ?? MountTable(mounts: []) }

    /// The loop devices attached to `path` (`losetup -j`).
    func loopDevices(of path: String) async throws -> [String] {
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        // From sysfs, as `losetup -j` finds them, without a process per look.
        let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        let names = (try? FileManager.default.contentsOfDirectory(atPath: host.resolve("sys/block"))) ?? []
        return names.filter { $0.hasPrefix("loop") }.sorted().compactMap { name in
            guard let file = host.read("sys/block/\(name)/loop/backing_file")?.trimmingCharacters(in: .whitespacesAndNewlines) else { return nil }
            return file == resolved ? "/dev/" + name : nil
        }
    }

    /// The image behind `/dev/loopN`, from sysfs; nil for anything that is not a loop device.
    func backingFile(of device: String) throws -> String? {
        guard device.hasPrefix("/dev/loop") else { return nil }
        let name = String(device.dropFirst("/dev/".count))
        return host.read("sys/block/\(name)/loop/backing_file")?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Paths as the loop driver reports them: symbolic links resolved.
    func image(_ name: TenantName, _ area: DiskArea, resolved: Bool) -> String {
        let path = image(name, area)
        return resolved ? URL(fileURLWithPath: path).resolvingSymlinksInPath().path : path
    }
}
