import FleetCore
import Foundation

/// The host checks a DBA runs by hand before trusting a machine with many PostgreSQL clusters,
/// each read from `/proc` and `/sys` under a `HostRoot` (fixture trees in tests) and judged here.
/// The kernel's settings; `Doctor` adds the cgroups and the checks against the tenants' needs.
public enum HostChecks {
    public static func all(root: HostRoot = .real) -> [HostCheck] {
        [
            clockSource(root: root), transparentHugePages(root: root), overcommit(root: root), swappiness(root: root),
            dirtyWriteback(root: root), kernel(root: root), bubblewrap(root: root),
        ]
    }

    /// The worst status: `doctor`'s exit status is 0, 1 or 2 for ok, warn, fail.
    public static func worst(_ checks: [HostCheck]) -> HostCheck.Status {
        checks.map(\.status).max() ?? .ok
    }

    static func value(_ relative: String, root: HostRoot) -> String? {
        root.read(relative)?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A `/proc/meminfo` line's value ("SwapTotal:   2097148 kB" → 2097148).
    static func meminfoKB(_ key: String, root: HostRoot) -> UInt64? {
        value("proc/meminfo", root: root)?.split(separator: "\n").first { $0.hasPrefix(key + ":") }
            .flatMap { $0.split(whereSeparator: { $0 == " " }).dropFirst().first.flatMap { UInt64($0) } }
    }

    /// `tsc` (or `kvm-clock`, which reads the TSC too) keeps `gettimeofday` in the vDSO; `xen`,
    /// `hpet` and `acpi_pm` make every timestamp PostgreSQL takes (EXPLAIN ANALYZE, track_io_timing,
    /// statement logging) a real system call (seed 004).
    public static func clockSource(root: HostRoot = .real) -> HostCheck {
        let name = "clock source"
        guard let source = value("sys/devices/system/clocksource/clocksource0/current_clocksource", root: root) else {
            return HostCheck(name: name, status: .warn, detail: "cannot read /sys/devices/system/clocksource/clocksource0/current_clocksource")
        }
        let available = value("sys/devices/system/clocksource/clocksource0/available_clocksource", root: root)?
            .split(separator: " ").map(String.init) ?? []
        if ["tsc", "kvm-clock", "arch_sys_counter"].contains(source) {
            return HostCheck(name: name, status: .ok, detail: "\(source): timestamps stay in the vDSO")
        }
        let fix = available.contains("tsc")
            ? "echo tsc > /sys/devices/system/clocksource/clocksource0/current_clocksource (and clocksource=tsc on the kernel command line)"
            : "this host offers no tsc clock source (\(available.joined(separator: " "))); on Xen, ask for a TSC-stable instance type"
        return HostCheck(name: name, status: .warn, detail: "\(source): every gettimeofday is a system call, which slows EXPLAIN ANALYZE and timing", fix: fix)
    }

    /// `always` gives PostgreSQL's backends huge pages they did not ask for (latency spikes from
    /// compaction, more memory per backend); `madvise` or `never` is what PostgreSQL's docs assume.
    public static func transparentHugePages(root: HostRoot = .real) -> HostCheck {
        let name = "transparent huge pages"
        guard let text = value("sys/kernel/mm/transparent_hugepage/enabled", root: root) else {
            return HostCheck(name: name, status: .ok, detail: "not built into this kernel")
        }
        let selected = selectedChoice(text) ?? text
        if selected == "always" {
            return HostCheck(
                name: name, status: .warn, detail: "always: backends get huge pages they did not ask for (compaction stalls, larger memory use)",
                fix: "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled (and transparent_hugepage=madvise on the kernel command line)")
        }
        return HostCheck(name: name, status: .ok, detail: selected)
    }

    /// "[madvise]" out of "always [madvise] never".
    static func selectedChoice(_ text: String) -> String? {
        guard let open = text.firstIndex(of: "["), let close = text[open...].firstIndex(of: "]") else { return nil }
        return String(text[text.index(after: open)..<close])
    }

    /// PostgreSQL's docs ("Linux Memory Overcommit"): heuristic overcommit (0) lets the OOM killer
    /// pick a victim anywhere; 1 never refuses and makes that likelier. pgfleet's memory limits
    /// keep a tenant's OOM kills inside its cgroup, so 0 is a warning, not a failure; 1 fails.
    public static func overcommit(root: HostRoot = .real) -> HostCheck {
        let name = "vm.overcommit_memory"
        guard let mode = value("proc/sys/vm/overcommit_memory", root: root).flatMap(Int.init) else {
            return HostCheck(name: name, status: .warn, detail: "cannot read /proc/sys/vm/overcommit_memory")
        }
        switch mode {
        case 2:
            let ratio = value("proc/sys/vm/overcommit_ratio", root: root) ?? "?"
            return HostCheck(name: name, status: .ok, detail: "2 (strict), overcommit_ratio \(ratio)")
        case 1:
            return HostCheck(
                name: name, status: .fail, detail: "1: the kernel never refuses memory, and the OOM killer settles it later",
                fix: "sysctl -w vm.overcommit_memory=0 (or 2 with a fitting vm.overcommit_ratio; PostgreSQL's docs, \"Linux Memory Overcommit\")")
        default:
            return HostCheck(
                name: name, status: .warn,
                detail: "\(mode) (heuristic): an OOM kill outside a tenant's memory limit may hit any process; give tenants --memory limits",
                fix: "sysctl -w vm.overcommit_memory=2 with vm.overcommit_ratio sized to RAM (PostgreSQL's docs, \"Linux Memory Overcommit\"), or set --memory on every tenant")
        }
    }

    /// With swap, a high swappiness pages out shared buffers; without swap it does not matter.
    public static func swappiness(root: HostRoot = .real) -> HostCheck {
        let name = "vm.swappiness"
        let swapKB = meminfoKB("SwapTotal", root: root) ?? 0
        guard let value = value("proc/sys/vm/swappiness", root: root).flatMap(Int.init) else {
            return HostCheck(name: name, status: .warn, detail: "cannot read /proc/sys/vm/swappiness")
        }
        if swapKB == 0 { return HostCheck(name: name, status: .ok, detail: "\(value), no swap") }
        if value <= 10 { return HostCheck(name: name, status: .ok, detail: "\(value), \(swapKB / 1024) MB of swap") }
        return HostCheck(
            name: name, status: .warn, detail: "\(value) with \(swapKB / 1024) MB of swap: shared buffers and backends get paged out under pressure",
            fix: "sysctl -w vm.swappiness=1")
    }

    /// Ratios of a large RAM let gigabytes of dirty pages pile up, then flush at once (a
    /// checkpoint's fsync stalls every tenant on the disk); bytes bound it (seed 004: cgroup v1
    /// writeback cannot throttle a tenant on its own).
    public static func dirtyWriteback(root: HostRoot = .real) -> HostCheck {
        let name = "dirty writeback"
        let bytes = value("proc/sys/vm/dirty_background_bytes", root: root).flatMap(UInt64.init) ?? 0
        if bytes > 0 { return HostCheck(name: name, status: .ok, detail: "dirty_background_bytes \(ByteSize.format(bytes))") }
        let ratio = value("proc/sys/vm/dirty_background_ratio", root: root).flatMap(Int.init) ?? 10
        let memoryKB = meminfoKB("MemTotal", root: root) ?? 0
        let threshold = memoryKB * 1024 / 100 * UInt64(ratio)
        if threshold <= 1 << 30 {
            return HostCheck(name: name, status: .ok, detail: "dirty_background_ratio \(ratio) % of \(ByteSize.format(memoryKB * 1024)): \(ByteSize.format(threshold))")
        }
        return HostCheck(
            name: name, status: .warn,
            detail: "dirty_background_ratio \(ratio) % of \(ByteSize.format(memoryKB * 1024)) lets \(ByteSize.format(threshold)) of dirty pages wait before writeback starts",
            fix: "sysctl -w vm.dirty_background_bytes=268435456 vm.dirty_bytes=1073741824")
    }

    /// 5.7 brought the hugetlb reservation limits pgfleet needs before it hands out huge pages.
    public static func kernel(root: HostRoot = .real) -> HostCheck {
        let name = "kernel"
        guard let release = value("proc/sys/kernel/osrelease", root: root) else {
            return HostCheck(name: name, status: .warn, detail: "cannot read /proc/sys/kernel/osrelease")
        }
        let numbers = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        guard numbers.count == 2 else { return HostCheck(name: name, status: .warn, detail: "\(release): not a version pgfleet can read") }
        if (numbers[0], numbers[1]) >= (5, 7) { return HostCheck(name: name, status: .ok, detail: release) }
        return HostCheck(
            name: name, status: .warn, detail: "\(release): before 5.7 there are no hugetlb reservation limits, so tenants never get huge pages",
            fix: "upgrade to Linux 5.7 or later")
    }

    /// The tenants' sandbox.
    public static func bubblewrap(root: HostRoot = .real) -> HostCheck {
        let name = "bubblewrap"
        if FileManager.default.isExecutableFile(atPath: root.resolve("usr/bin/bwrap")) {
            return HostCheck(name: name, status: .ok, detail: "/usr/bin/bwrap")
        }
        return HostCheck(
            name: name, status: .fail, detail: "/usr/bin/bwrap is missing: `pgfleet serve` as root will not start without it",
            fix: "apt-get install bubblewrap (or run serve with --sandbox off, and no sandbox)")
    }
}
