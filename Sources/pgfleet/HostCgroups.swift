import FleetCore
import FleetHost
import FleetSupervisor
import Logging

/// The tenants' cgroups beneath the daemon's own (nil: none usable here, said in the log).
func hostCgroups(layout: FleetLayout, logger: Logger) -> (any CgroupControl)? {
    do {
        let cgroups = TenantCgroups(layout: try CgroupLayout.discover(), groupName: TenantCgroups.groupName(forRoot: layout.root))
        let found = cgroups.layout.distinctHierarchies.map { "\($0.mountPoint) (\($0.version == .v2 ? "v2" : "v1"))" }
        logger.info("tenant cgroups", metadata: ["hierarchies": "\(found.joined(separator: ", "))", "group": "\(cgroups.groupName)"])
        return cgroups
    } catch {
        logger.warning("no cgroups: tenant limits are stored but not enforced", metadata: ["error": "\(error)"])
        return nil
    }
}
