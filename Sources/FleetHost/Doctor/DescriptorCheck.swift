import FleetCore
import Foundation

/// File descriptors against what the tenants may open (seed 003: "You'll run out of file
/// descriptors"). The daemon's own limit bounds the proxy, which holds two per client connection;
/// `fs.file-max` bounds every process together, postmasters and backends included; `fs.nr_open`
/// is the ceiling of any process's limit, so the fix for a low hard limit may need it first.
public enum DescriptorCheck {
    static let name = "descriptors"

    public struct Readings: Sendable, Equatable {
        /// RLIMIT_NOFILE of the process that serves (or would serve) the tenants.
        public var softLimit: UInt64?
        public var hardLimit: UInt64?
        public var fileMax: UInt64?
        public var nrOpen: UInt64?
        /// Descriptors allocated host-wide now (the first field of fs.file-nr).
        public var allocated: UInt64?

        public init(softLimit: UInt64? = nil, hardLimit: UInt64? = nil, fileMax: UInt64? = nil, nrOpen: UInt64? = nil, allocated: UInt64? = nil) {
            self.softLimit = softLimit
            self.hardLimit = hardLimit
            self.fileMax = fileMax
            self.nrOpen = nrOpen
            self.allocated = allocated
        }

        /// From `/proc/self/limits` and `/proc/sys/fs` under `root`.
        public static func read(root: HostRoot = .real) -> Readings {
            func number(_ relative: String) -> UInt64? {
                root.read(relative)?.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first.flatMap { UInt64($0) }
            }
            var readings = Readings(fileMax: number("proc/sys/fs/file-max"), nrOpen: number("proc/sys/fs/nr_open"), allocated: number("proc/sys/fs/file-nr"))
            // "Max open files            1024                 524288               files"
            if let line = root.read("proc/self/limits")?.split(separator: "\n").first(where: { $0.hasPrefix("Max open files") }) {
                let fields = line.dropFirst("Max open files".count).split(whereSeparator: { $0 == " " })
                func limit(_ index: Int) -> UInt64? {
                    guard fields.count > index else { return nil }
                    return fields[index] == "unlimited" ? UInt64.max : UInt64(fields[index])
                }
                readings.softLimit = limit(0)
                readings.hardLimit = limit(1)
            }
            return readings
        }
    }

    /// Besides the proxy's two per client: the catalog, the API's connections, logs and each
    /// tenant's log file, process descriptor and health connection.
    static let daemonBase: UInt64 = 256
    static let perTenant: UInt64 = 8

    /// What the daemon's own limit must allow for `demand`.
    public static func daemonNeeds(_ demand: FleetDemand) -> UInt64 {
        demand.proxyDescriptors + daemonBase + perTenant * UInt64(demand.tenants.count)
    }

    public static func check(root: HostRoot = .real, demand: FleetDemand?) -> HostCheck {
        judge(Readings.read(root: root), demand: demand)
    }

    public static func judge(_ readings: Readings, demand: FleetDemand?) -> HostCheck {
        func text(_ value: UInt64?) -> String { value.map { $0 == .max ? "unlimited" : String($0) } ?? "?" }
        var detail = "the daemon's RLIMIT_NOFILE \(text(readings.softLimit)) soft, \(text(readings.hardLimit)) hard; fs.file-max \(text(readings.fileMax)), fs.nr_open \(text(readings.nrOpen))"
            + (readings.allocated.map { ", \($0) open host-wide" } ?? "")
        guard let hard = readings.hardLimit else {
            return HostCheck(name: name, status: .warn, detail: "cannot read Max open files in /proc/self/limits; " + detail)
        }
        guard let demand else {
            // Without the tenants' numbers, only a limit too low for any fleet is said.
            if hard < 1024 {
                return HostCheck(
                    name: name, status: .warn, detail: detail + ": fewer than 1024, too few for a proxy in front of many clients",
                    fix: "raise the hard limit before pgfleet serve: LimitNOFILE=65536 in its systemd unit, or ulimit -Hn 65536")
            }
            return HostCheck(name: name, status: .ok, detail: detail + "; not weighed against the tenants (no daemon answered)")
        }
        let daemon = daemonNeeds(demand)
        let connections = demand.tenants.reduce(0) { $0 + max(0, $1.maxConnections) }
        let hostWide = demand.tenantDescriptors + daemon
        detail += "; \(demand.tenants.count) tenant\(demand.tenants.count == 1 ? "" : "s"): the proxy needs up to \(daemon) (2 × \(connections) max_connections + \(daemonBase + perTenant * UInt64(demand.tenants.count)) of its own), "
            + "the postmasters up to \(demand.tenantDescriptors) (processes × max_files_per_process)"
        var status = HostCheck.Status.ok
        var fixes: [String] = []
        if hard < daemon {
            status = .fail
            detail += ": the hard limit is too low, so the proxy refuses clients (53300) before the tenants are full"
            let wanted = roundUp(daemon)
            var fix = "raise the daemon's hard limit to \(wanted): LimitNOFILE=\(wanted) in its systemd unit, or ulimit -Hn \(wanted) before pgfleet serve"
            if let nrOpen = readings.nrOpen, nrOpen < wanted { fix = "sysctl -w fs.nr_open=\(wanted) first, then " + fix }
            fixes.append(fix + " (or lower the tenants' max_connections)")
        }
        if let fileMax = readings.fileMax, fileMax < hostWide {
            status = max(status, .warn)
            detail += ": fs.file-max is below what the tenants may open together (\(hostWide))"
            fixes.append("sysctl -w fs.file-max=\(roundUp(hostWide)) (or lower max_files_per_process with `pgfleet tenant set`)")
        }
        return HostCheck(name: name, status: status, detail: detail, fix: fixes.isEmpty ? nil : fixes.joined(separator: "; "))
    }

    /// A round figure above `value`: the next multiple of 1024.
    static func roundUp(_ value: UInt64) -> UInt64 { (value + 1023) / 1024 * 1024 }
}
