import FleetCore
import FleetSystem
import Foundation
import Testing

@testable import FleetHost

/// The doctor's checks that weigh the host against the tenants' needs, from fixture readings and
/// fixture demands: /dev/shm, descriptors, the WAL reserve, and the line that says what was weighed.
@Suite struct DemandChecksTests {
    static let mb: UInt64 = 1 << 20
    static let gb: UInt64 = 1 << 30

    /// `count` tenants with pgfleet's defaults (40 connections, 256MB of WAL) or `connections`.
    static func demand(_ count: Int, connections: Int = 40, maxWalSize: UInt64 = 256 << 20, walKeepSize: UInt64 = 0, sandboxed: Bool = false) -> FleetDemand {
        FleetDemand(
            tenants: (0..<count).map {
                TenantDemand(
                    name: "t\($0)", maxConnections: connections, maxWorkerProcesses: 2, autovacuumMaxWorkers: 3, maxWalSenders: 2,
                    maxFilesPerProcess: 1000, maxWalSize: maxWalSize, walKeepSize: walKeepSize)
            }, sandboxed: sandboxed, root: "/var/lib/pgfleet")
    }

    // MARK: /dev/shm

    @Test func aTinyDevShmFailsUnsandboxedTenantsParallelQueries() {
        let tiny = FilesystemSpace(size: 2 * Self.mb, used: 0, available: 2 * Self.mb)
        let check = SharedMemoryCheck.judge(tiny, sandboxed: false)
        #expect(check.status == .fail)
        #expect(check.detail.contains("No space left on device"), "\(check.detail)")
        #expect(check.detail.contains("without a sandbox"))
        #expect(check.fix?.hasPrefix("mount -o remount,size=1G /dev/shm") == true)
        // Without a daemon to say, the same: and it says that sandboxed tenants have their own.
        let unknown = SharedMemoryCheck.judge(tiny, sandboxed: nil)
        #expect(unknown.status == .fail && unknown.detail.contains("tenants in pgfleet's sandbox get a private /dev/shm"))
        // Docker's 64 MB is the seed's case: one 48 MB segment fits, a few at once do not.
        #expect(SharedMemoryCheck.judge(FilesystemSpace(size: 64 * Self.mb, used: 0, available: 64 * Self.mb), sandboxed: false).status == .warn)
    }

    @Test func sandboxedTenantsDoNotNeedTheHostsDevShm() {
        let check = SharedMemoryCheck.judge(FilesystemSpace(size: 2 * Self.mb, used: 0, available: 2 * Self.mb), sandboxed: true)
        #expect(check.status == .ok)
        #expect(check.detail.contains("private /dev/shm"))
        #expect(SharedMemoryCheck.judge(nil, sandboxed: true).status == .ok)
        #expect(SharedMemoryCheck.judge(nil, sandboxed: false).status == .fail)
    }

    @Test func aLargeDevShmIsOkUnlessNearlyFull() {
        #expect(SharedMemoryCheck.judge(FilesystemSpace(size: 24 * Self.gb, used: 0, available: 24 * Self.gb), sandboxed: false).status == .ok)
        let full = SharedMemoryCheck.judge(FilesystemSpace(size: Self.gb, used: 900 * Self.mb, available: 124 * Self.mb), sandboxed: false)
        #expect(full.status == .warn && full.detail.contains("80 %"))
    }

    @Test func theRealDevShmIsRead() throws {
        let (root, path) = try HostChecksTests.host(["proc/sys/kernel/osrelease": "6.1.0\n"])
        defer { try? FileManager.default.removeItem(atPath: path) }
        // A host root without dev/shm: missing, not the fixture directory's filesystem.
        #expect(SharedMemoryCheck.check(root: root, sandboxed: false).detail.hasPrefix("no /dev/shm"))
        try FileManager.default.createDirectory(atPath: path + "/dev/shm", withIntermediateDirectories: true)
        #expect(SharedMemoryCheck.check(root: root, sandboxed: false).detail.contains(" used"))
    }

    // MARK: Descriptors

    static let limits = """
        Limit                     Soft Limit           Hard Limit           Units
        Max cpu time              unlimited            unlimited            seconds
        Max open files            1024                 4096                 files
        Max locked memory         8388608              8388608              bytes
        """

    static func descriptorHost(limits: String = limits, fileMax: String = "2466300", nrOpen: String = "1048576") throws -> (HostRoot, String) {
        try HostChecksTests.host([
            "proc/self/limits": limits, "proc/sys/fs/file-max": fileMax + "\n", "proc/sys/fs/nr_open": nrOpen + "\n",
            "proc/sys/fs/file-nr": "3456\t0\t2466300\n",
        ])
    }

    @Test func readingsComeFromProcSelfLimitsAndProcSysFs() throws {
        let (root, path) = try Self.descriptorHost()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let readings = DescriptorCheck.Readings.read(root: root)
        #expect(readings == DescriptorCheck.Readings(softLimit: 1024, hardLimit: 4096, fileMax: 2_466_300, nrOpen: 1_048_576, allocated: 3456))
        let unlimited = DescriptorCheck.Readings.read(root: try Self.descriptorHost(limits: "Max open files            unlimited            unlimited            files\n").0)
        #expect(unlimited.hardLimit == .max)
    }

    @Test func aLowNofileLimitAgainstManyMaxConnectionsFails() throws {
        let (root, path) = try Self.descriptorHost()
        defer { try? FileManager.default.removeItem(atPath: path) }
        // 50 tenants × 100 connections: the proxy may hold 10,000 descriptors, the hard limit is 4096.
        let demand = Self.demand(50, connections: 100)
        #expect(DescriptorCheck.daemonNeeds(demand) == 10_000 + 256 + 400)
        let check = DescriptorCheck.check(root: root, demand: demand)
        #expect(check.status == .fail, "\(check)")
        #expect(check.detail.contains("2 × 5000 max_connections"), "\(check.detail)")
        #expect(check.detail.contains("53300"))
        #expect(check.fix?.hasPrefix("raise the daemon's hard limit to 11264: LimitNOFILE=11264") == true, "\(check.fix ?? "")")
        // 2 tenants fit.
        #expect(DescriptorCheck.check(root: root, demand: Self.demand(2)).status == .ok)
    }

    @Test func aHardLimitAboveNrOpenNeedsNrOpenRaisedFirst() {
        let readings = DescriptorCheck.Readings(softLimit: 1024, hardLimit: 4096, fileMax: 10_000_000, nrOpen: 8192)
        let check = DescriptorCheck.judge(readings, demand: Self.demand(50, connections: 100))
        #expect(check.fix?.hasPrefix("sysctl -w fs.nr_open=11264 first, then raise") == true, "\(check.fix ?? "")")
    }

    @Test func fileMaxBelowWhatThePostmastersMayOpenWarns() {
        let readings = DescriptorCheck.Readings(softLimit: 65536, hardLimit: 65536, fileMax: 100_000, nrOpen: 1_048_576)
        // 10 tenants × 54 processes × 1000 files = 540,000.
        let demand = Self.demand(10)
        #expect(demand.tenants[0].processes == 40 + 3 + 1 + 2 + 2 + 6)
        #expect(demand.tenantDescriptors == 540_000)
        let check = DescriptorCheck.judge(readings, demand: demand)
        #expect(check.status == .warn, "\(check)")
        #expect(check.fix?.hasPrefix("sysctl -w fs.file-max=") == true)
    }

    @Test func withoutADaemonOnlyAVeryLowLimitWarns() {
        let low = DescriptorCheck.judge(DescriptorCheck.Readings(softLimit: 256, hardLimit: 256, fileMax: 100_000, nrOpen: 1_048_576), demand: nil)
        #expect(low.status == .warn && low.fix?.contains("LimitNOFILE") == true)
        let fine = DescriptorCheck.judge(DescriptorCheck.Readings(softLimit: 1024, hardLimit: 20000, fileMax: 100_000, nrOpen: 1_048_576), demand: nil)
        #expect(fine.status == .ok && fine.detail.contains("not weighed against the tenants"))
        #expect(DescriptorCheck.judge(DescriptorCheck.Readings(), demand: nil).status == .warn)
    }

    // MARK: Disk free against the WAL reserve

    @Test func aDiskTooSmallForTheWALReserveFails() {
        // 20 tenants × (256MB + 64MB wal_keep_size) = 6.25GB, 4GB free.
        let demand = Self.demand(20, walKeepSize: 64 << 20)
        #expect(demand.walReserve == 20 * 320 * Self.mb)
        let check = WALReserveCheck.judge(FilesystemSpace(size: 100 * Self.gb, used: 96 * Self.gb, available: 4 * Self.gb), fleetRoot: "/var/lib/pgfleet", demand: demand)
        #expect(check.status == .fail, "\(check)")
        #expect(check.detail.contains("WAL reserve of 6.3GB (max_wal_size + wal_keep_size of 20 tenants)"), "\(check.detail)")
        #expect(check.detail.contains("PANIC"))
        #expect(check.fix?.contains("max_wal_size") == true)
    }

    @Test func aDiskWithLittleToSpareWarnsAndAmpleIsOk() {
        let demand = Self.demand(4)  // 1GB
        #expect(WALReserveCheck.judge(FilesystemSpace(size: 10 * Self.gb, used: 0, available: 1200 * Self.mb), fleetRoot: "/r", demand: demand).status == .warn)
        #expect(WALReserveCheck.judge(FilesystemSpace(size: 10 * Self.gb, used: 0, available: 10 * Self.gb), fleetRoot: "/r", demand: demand).status == .ok)
        let unknown = WALReserveCheck.judge(FilesystemSpace(size: 10 * Self.gb, used: 0, available: 10 * Self.gb), fleetRoot: "/r", demand: nil)
        #expect(unknown.status == .ok && unknown.detail.contains("not weighed"))
        #expect(WALReserveCheck.judge(FilesystemSpace(size: 10 * Self.gb, used: 0, available: 100 * Self.mb), fleetRoot: "/r", demand: nil).status == .warn)
    }

    @Test func aRootNotMadeYetIsMeasuredOnItsNearestAncestor() throws {
        let space = try #require(FilesystemSpace.read(NSTemporaryDirectory() + "no-such-\(UUID().uuidString)/deeper"))
        #expect(space.size > 0)
    }

    // MARK: All together

    @Test func everyCheckIsPrintedAndTheLastSaysWhetherTheTenantsWereWeighed() throws {
        let (root, path) = try Self.descriptorHost()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let unknown = Doctor.checks(root: root, fleetRoot: "/var/lib/pgfleet", demand: .unknown(reason: "no pgfleet daemon runs for /var/lib/pgfleet"))
        #expect(unknown.map(\.name) == HostChecks.all(root: root).map(\.name) + ["cgroup version", "cgroup delegation", "/dev/shm", "huge pages", "descriptors", "disk free", "tenants' needs"])
        let needs = try #require(unknown.last)
        #expect(needs.status == .ok && needs.detail.hasPrefix("NOT checked: no pgfleet daemon runs for /var/lib/pgfleet"))

        let known = Doctor.checks(root: root, fleetRoot: "/elsewhere", demand: .known(Self.demand(50, connections: 100, sandboxed: true)))
        #expect(known.first { $0.name == "descriptors" }?.status == .fail)
        #expect(known.first { $0.name == "/dev/shm" }?.status == .ok, "sandboxed tenants have their own")
        #expect(known.last?.detail.hasPrefix("checked against the daemon's 50 tenants (5000 max_connections") == true)
    }
}
