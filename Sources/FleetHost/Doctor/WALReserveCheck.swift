import FleetCore
import FleetSystem
import Foundation

/// Free space where the tenants' WAL lives against the WAL they may keep: where PostgreSQL
/// cannot write WAL it stops with a PANIC, and every tenant on the filesystem stops with it.
/// max_wal_size is a soft bound (a burst or a failing archive goes past it), hence the margin.
public enum WALReserveCheck {
    static let name = "disk free"
    /// Without the tenants' numbers: less than this free is worth a look anyway.
    public static let lowWithoutDemand: UInt64 = 1 << 30

    public static func check(root: HostRoot = .real, fleetRoot: String, demand: FleetDemand?) -> HostCheck {
        judge(FilesystemSpace.read(root.resolve(fleetRoot)), fleetRoot: fleetRoot, demand: demand)
    }

    public static func judge(_ space: FilesystemSpace?, fleetRoot: String, demand: FleetDemand?) -> HostCheck {
        let f = ByteSize.format
        guard let space else {
            return HostCheck(name: name, status: .warn, detail: "cannot tell the free space at \(fleetRoot)")
        }
        var detail = "\(f(space.available)) free of \(f(space.size)) at \(fleetRoot)"
        guard let demand else {
            if space.available < lowWithoutDemand {
                return HostCheck(name: name, status: .warn, detail: detail + ": under \(f(lowWithoutDemand)), less than one tenant's default max_wal_size", fix: "free space on this filesystem, or serve with --root on a larger one")
            }
            return HostCheck(name: name, status: .ok, detail: detail + "; not weighed against the tenants' WAL (no daemon answered)")
        }
        let reserve = demand.walReserve
        let keep = demand.tenants.reduce(UInt64(0)) { $0 + $1.walKeepSize }
        detail += " against a WAL reserve of \(f(reserve)) (max_wal_size\(keep > 0 ? " + wal_keep_size" : "") of \(demand.tenants.count) tenant\(demand.tenants.count == 1 ? "" : "s"))"
        let fix = "free space or grow the filesystem holding \(fleetRoot) to at least \(f(reserve + reserve / 2)) free, or lower max_wal_size with `pgfleet tenant set NAME max_wal_size=…` (or give tenants --disk quotas)"
        if space.available < reserve {
            return HostCheck(name: name, status: .fail, detail: detail + ": the tenants' WAL does not fit, and a tenant that cannot write WAL stops (PANIC)", fix: fix)
        }
        if space.available < reserve + reserve / 2 {
            return HostCheck(name: name, status: .warn, detail: detail + ": less than half the reserve to spare, and max_wal_size is only a soft bound", fix: fix)
        }
        return HostCheck(name: name, status: .ok, detail: detail)
    }
}
