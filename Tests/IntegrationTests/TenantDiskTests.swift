import FleetCore
import FleetHost
import FleetSystem
import Foundation
import Testing

/// Loop-image quotas on real loop devices, as root.
@Suite(.serialized, integrationTrait)
struct TenantDiskTests {
    static let mb: UInt64 = 1 << 20
    /// `nobody`: an unprivileged writer needs no user of its own.
    static let writer = UserIdentity(name: "nobody", uid: 65534, gid: 65534)

    /// A root under /tmp with the disks it made removed whatever the body did: mounts, loop
    /// devices, files.
    static func withRoot(_ body: (FleetLayout) async throws -> Void) async throws {
        try #require(geteuid() == 0, "loop devices need root (or set PGFLEET_SKIP_INTEGRATION=1)")
        let root = "/tmp/pgfleet-disk-\(String(UInt32.random(in: 0..<UInt32.max), radix: 36))"
        try Files.makeDirectory(root, mode: 0o711)
        try Files.makeDirectory(root + "/tenants", mode: 0o711)
        let layout = FleetLayout(root: root)
        var failure: (any Error)?
        do { try await body(layout) } catch { failure = error }
        await cleanUp(root)
        if let failure { throw failure }
    }

    static func cleanUp(_ root: String) async {
        let mounts = (MountTable.read()?.mounts ?? []).filter { $0.mountPoint.hasPrefix(root + "/") }
        for mount in mounts.reversed() { _ = try? await Command.run("/bin/umount", ["-l", mount.mountPoint]) }
        for device in loopDevices(under: root) { _ = try? await Command.run("/sbin/losetup", ["-d", device]) }
        try? Files.removeTree(root)
    }

    /// Loop devices whose backing file is under `root`, from sysfs.
    static func loopDevices(under root: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/block")) ?? []
        return names.filter { $0.hasPrefix("loop") }.compactMap { name in
            guard let file = try? String(contentsOfFile: "/sys/block/\(name)/loop/backing_file", encoding: .utf8) else { return nil }
            return file.hasPrefix(root + "/") ? "/dev/" + name : nil
        }
    }

    static func mounts(under root: String) -> [String] {
        (MountTable.read()?.mounts ?? []).map(\.mountPoint).filter { $0.hasPrefix(root + "/") }
    }

    /// dd as `writer`: true when all of it was written, false on ENOSPC, anything else fails the test.
    static func write(_ megabytes: Int, to path: String) async throws -> Bool {
        let result = try await Command.run(
            "/bin/dd", ["if=/dev/zero", "of=\(path)", "bs=1M", "count=\(megabytes)", "conv=fsync"], user: writer)
        if result.succeeded { return true }
        #expect(result.stderr.contains("No space left on device"), "dd: \(result.stderr)")
        return false
    }

    @Test func aLoopImageQuotaFillsGrowsSurvivesARebootAndLeavesNothingBehind() async throws {
        try await Self.withRoot { layout in
            let disk = LoopImageDisk(layout: layout)
            let name = try TenantName(validating: "quota")
            let paths = DiskPaths(layout: layout)
            let small = try DiskPlan.make(diskBytes: 128 * Self.mb, wal: .pgfleetDefaults)

            let started = ContinuousClock.now
            try await disk.create(name, areas: small.areas, owner: Self.writer)
            print("create (4 × mkfs.ext4 + mount + reserve): \(ContinuousClock.now - started)")
            let fresh = try disk.usage(name)
            for area in DiskArea.allCases {
                let limit = fresh.area(area).limitBytes, asked = small.areas.bytes(area)
                #expect(limit >= asked && limit < asked + Self.mb, "\(area) area: \(limit) for \(asked)")
            }
            #expect(fresh.usedBytes < 2 * Self.mb)
            #expect(fresh.limitBytes >= small.diskBytes && fresh.limitBytes < small.diskBytes + 4 * Self.mb, "the tenant sees its --disk")
            var info = stat()
            #expect(stat(paths.dataMount(name), &info) == 0 && info.st_uid == Self.writer.uid && info.st_mode & 0o777 == 0o700)
            #expect(stat(paths.walMount(name), &info) == 0 && info.st_uid == Self.writer.uid)

            // The data area fills: ENOSPC for the writer; the WAL area still takes its writes.
            #expect(try await Self.write(200, to: paths.dataMount(name) + "/fill") == false)
            let full = try disk.usage(name)
            #expect(full.data.usedBytes + Self.mb >= full.data.limitBytes)
            #expect(full.warnings.count == 1)
            #expect(try await Self.write(16, to: paths.walMount(name) + "/segment"))
            // The reserve is not the tenant's to remove.
            let removal = try await Command.run("/bin/rm", ["-rf", paths.dataMount(name) + "/.pgfleet"], user: Self.writer)
            #expect(!removal.succeeded)

            // Online growth to 256MB: the writer has room again.
            let large = try DiskPlan.make(diskBytes: 256 * Self.mb, wal: .pgfleetDefaults)
            let growing = ContinuousClock.now
            try await disk.resize(name, areas: large.areas)
            print("grow 128MB → 256MB online: \(ContinuousClock.now - growing)")
            #expect(try disk.usage(name).data.limitBytes >= large.areas.dataBytes)
            #expect(try await Self.write(60, to: paths.dataMount(name) + "/more"))

            // Shrinking below what is stored is refused with the numbers; above it, it works.
            await #expect(throws: FleetError.self) { try await disk.resize(name, areas: small.areas) }
            unlink(paths.dataMount(name) + "/fill")
            unlink(paths.dataMount(name) + "/more")
            try await disk.resize(name, areas: small.areas)
            #expect(try disk.usage(name).data.limitBytes < small.areas.dataBytes + Self.mb)

            // A "reboot": nothing mounted, no loop device; ensureMounted brings both areas back, twice over.
            try await disk.unmount(name)
            #expect(Self.mounts(under: layout.root).isEmpty)
            #expect(Self.loopDevices(under: layout.root).isEmpty, "mount -o loop attaches with autoclear")
            try await disk.ensureMounted(name)
            try await disk.ensureMounted(name)
            #expect(Self.mounts(under: layout.root) == DiskArea.allCases.map { paths.mountPoint(name, $0) })
            #expect(FileManager.default.fileExists(atPath: paths.walMount(name) + "/segment"))
            #expect(Self.loopDevices(under: layout.root).count == 4)

            try await disk.remove(name)
            #expect(Self.mounts(under: layout.root).isEmpty)
            #expect(Self.loopDevices(under: layout.root).isEmpty)
            #expect(!FileManager.default.fileExists(atPath: paths.directory(name)))
            try await disk.remove(name)
        }
    }
}
