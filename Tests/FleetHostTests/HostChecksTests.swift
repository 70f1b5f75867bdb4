import FleetCore
import Foundation
import Testing

@testable import FleetHost

/// `pgfleet doctor`'s checks driven from fixture /proc and /sys trees.
@Suite struct HostChecksTests {
    /// A fake host root with `files` (relative path → contents); removed by the caller.
    static func host(_ files: [String: String]) throws -> (HostRoot, String) {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("doctor-\(UUID().uuidString)").path
        for (path, contents) in files {
            let full = root + "/" + path
            try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try contents.write(toFile: full, atomically: true, encoding: .utf8)
        }
        return (HostRoot(root), root)
    }

    static let clock = "sys/devices/system/clocksource/clocksource0/current_clocksource"
    static let clocks = "sys/devices/system/clocksource/clocksource0/available_clocksource"

    @Test func aXenClockSourceWarnsAndNamesTheFix() throws {
        let (xen, path) = try Self.host([Self.clock: "xen\n", Self.clocks: "xen tsc hpet acpi_pm\n"])
        defer { try? FileManager.default.removeItem(atPath: path) }
        let check = HostChecks.clockSource(root: xen)
        #expect(check.status == .warn && check.detail.hasPrefix("xen"))
        #expect(check.fix?.hasPrefix("echo tsc > /sys/devices/system/clocksource/clocksource0/current_clocksource") == true)

        let (noTSC, other) = try Self.host([Self.clock: "hpet\n", Self.clocks: "hpet acpi_pm\n"])
        defer { try? FileManager.default.removeItem(atPath: other) }
        #expect(HostChecks.clockSource(root: noTSC).fix?.contains("offers no tsc") == true)

        let (tsc, third) = try Self.host([Self.clock: "tsc\n"])
        defer { try? FileManager.default.removeItem(atPath: third) }
        #expect(HostChecks.clockSource(root: tsc).status == .ok)
    }

    @Test func transparentHugePagesAlwaysWarns() throws {
        for (text, status) in [("[always] madvise never\n", HostCheck.Status.warn), ("always [madvise] never\n", .ok), ("always madvise [never]\n", .ok)] {
            let (root, path) = try Self.host(["sys/kernel/mm/transparent_hugepage/enabled": text])
            defer { try? FileManager.default.removeItem(atPath: path) }
            #expect(HostChecks.transparentHugePages(root: root).status == status, "\(text)")
        }
        #expect(HostChecks.selectedChoice("always [madvise] never") == "madvise")
    }

    @Test func overcommitFollowsPostgreSQLsDocs() throws {
        for (mode, status) in [("0", HostCheck.Status.warn), ("1", .fail), ("2", .ok)] {
            let (root, path) = try Self.host(["proc/sys/vm/overcommit_memory": mode + "\n", "proc/sys/vm/overcommit_ratio": "80\n"])
            defer { try? FileManager.default.removeItem(atPath: path) }
            let check = HostChecks.overcommit(root: root)
            #expect(check.status == status, "mode \(mode)")
            #expect((check.fix == nil) == (status == .ok))
        }
    }

    @Test func swappinessMattersOnlyWithSwap() throws {
        let swap = "MemTotal:       24000000 kB\nSwapTotal:       2097148 kB\n"
        let (withSwap, a) = try Self.host(["proc/sys/vm/swappiness": "60\n", "proc/meminfo": swap])
        defer { try? FileManager.default.removeItem(atPath: a) }
        #expect(HostChecks.swappiness(root: withSwap).status == .warn)
        let (noSwap, b) = try Self.host(["proc/sys/vm/swappiness": "60\n", "proc/meminfo": "MemTotal: 24000000 kB\nSwapTotal: 0 kB\n"])
        defer { try? FileManager.default.removeItem(atPath: b) }
        #expect(HostChecks.swappiness(root: noSwap).status == .ok)
    }

    @Test func dirtyRatiosOfALargeMemoryWarnAndBytesAreFine() throws {
        let big = "MemTotal:       24000000 kB\n"
        let (ratio, a) = try Self.host(["proc/sys/vm/dirty_background_ratio": "10\n", "proc/sys/vm/dirty_background_bytes": "0\n", "proc/meminfo": big])
        defer { try? FileManager.default.removeItem(atPath: a) }
        let check = HostChecks.dirtyWriteback(root: ratio)
        #expect(check.status == .warn && check.fix?.contains("vm.dirty_background_bytes") == true, "\(check)")
        let (bytes, b) = try Self.host(["proc/sys/vm/dirty_background_bytes": "268435456\n", "proc/meminfo": big])
        defer { try? FileManager.default.removeItem(atPath: b) }
        #expect(HostChecks.dirtyWriteback(root: bytes).status == .ok)
        let (small, c) = try Self.host(["proc/sys/vm/dirty_background_ratio": "10\n", "proc/meminfo": "MemTotal: 4000000 kB\n"])
        defer { try? FileManager.default.removeItem(atPath: c) }
        #expect(HostChecks.dirtyWriteback(root: small).status == .ok)
    }

    @Test func kernelsBeforeFiveSevenHaveNoHugetlbReservationLimits() throws {
        for (release, status) in [("5.4.0-150-generic", HostCheck.Status.warn), ("5.7.1", .ok), ("6.18.44-fc-v1098", .ok), ("4.19.0", .warn)] {
            let (root, path) = try Self.host(["proc/sys/kernel/osrelease": release + "\n"])
            defer { try? FileManager.default.removeItem(atPath: path) }
            #expect(HostChecks.kernel(root: root).status == status, "\(release)")
        }
    }

    @Test func aMissingBubblewrapFailsAndTheWorstStatusWins() throws {
        let (root, path) = try Self.host(["proc/sys/kernel/osrelease": "6.1.0\n"])
        defer { try? FileManager.default.removeItem(atPath: path) }
        let check = HostChecks.bubblewrap(root: root)
        #expect(check.status == .fail && check.fix?.hasPrefix("apt-get install bubblewrap") == true)
        let checks = HostChecks.all(root: root)
        #expect(checks.count == 7)
        #expect(HostChecks.worst(checks) == .fail)
        #expect(HostChecks.worst([HostCheck(name: "a", status: .ok, detail: ""), HostCheck(name: "b", status: .warn, detail: "")]) == .warn)
        #expect(HostChecks.worst([]) == .ok)
    }
}
