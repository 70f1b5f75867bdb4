import FleetCore
import Foundation

/// Every check of `pgfleet doctor`, in the order it prints them: the kernel's settings, the
/// cgroups, then what weighs the host against the tenants' needs. `serve` runs the same at start.
public enum Doctor {
    /// Why the tenants' needs are unknown, for the line that says they were not checked.
    public enum Demand: Sendable {
        case known(FleetDemand)
        case unknown(reason: String)

        var value: FleetDemand? {
            if case .known(let demand) = self { return demand }
            return nil
        }
    }

    public static let needsName = "tenants' needs"

    /// `cgroups`: the daemon's layout as found at its start; nil: this process's, discovered now.
    public static func checks(root: HostRoot = .real, fleetRoot: String, demand: Demand, cgroups: CgroupLayout? = nil) -> [HostCheck] {
        let known = demand.value
        return HostChecks.all(root: root) + [
            CgroupChecks.version(root: root, layout: cgroups), CgroupChecks.delegation(root: root, layout: cgroups),
            SharedMemoryCheck.check(root: root, sandboxed: known?.sandboxed),
            HugePageCheck.check(root: root, fleetRoot: known?.root ?? fleetRoot, demand: known, cgroups: cgroups),
            DescriptorCheck.check(root: root, demand: known),
            WALReserveCheck.check(root: root, fleetRoot: known?.root ?? fleetRoot, demand: known),
            needs(demand),
        ]
    }

    /// Says plainly whether the checks above were weighed against the tenants: not knowing them
    /// is not a fault of the host, so it is `ok` either way.
    public static func needs(_ demand: Demand) -> HostCheck {
        switch demand {
        case .known(let demand):
            let connections = demand.tenants.reduce(0) { $0 + max(0, $1.maxConnections) }
            return HostCheck(
                name: needsName, status: .ok,
                detail: "checked against the daemon's \(demand.tenants.count) tenant\(demand.tenants.count == 1 ? "" : "s") (\(connections) max_connections, "
                    + "WAL reserve \(ByteSize.format(demand.walReserve)), \(demand.sandboxed ? "sandboxed" : "not sandboxed")), as their configuration files say")
        case .unknown(let reason):
            return HostCheck(
                name: needsName, status: .ok,
                detail: "NOT checked: \(reason); descriptors and disk free were judged for the host alone. Run doctor again with `pgfleet serve` running (and the same --root)")
        }
    }
}
