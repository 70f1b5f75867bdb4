import FleetCatalog
import FleetCore
import FleetHost
import Foundation
import Logging

/// `pgfleet doctor` as the daemon sees it: the host checks read in this process (its descriptor
/// limit, its cgroup) against what its tenants need, and the same checks logged at start-up.
extension Fleet {
    /// The tenants' needs from the catalog and each tenant's configuration files, read as
    /// PostgreSQL would read them: no tenant is started or woken for it, and no `postgres -C` is
    /// run (one per setting and tenant would take minutes on a dense host).
    public func demand() throws -> FleetDemand {
        let tenants = try catalog.tenants().map { record in
            var tenant = TenantDemand(name: record.name, settings: Self.configuredSettings(dataDirectory: record.dataDirectory))
            // Huge pages: what the starts found (a tenant never started on a host with a pool is not known).
            let mode = effectiveLimits(record).hugePages
            if let mode, mode != .off {
                tenant.hugePages = mode
                tenant.hugePagesNeeded = hugePages.knownNeed(of: record.name)
                tenant.hugePagesGranted = hugePages.grant(of: record.name)?.pages
            }
            return tenant
        }
        return FleetDemand(tenants: tenants, sandboxed: options.isolated && options.sandbox != nil, root: options.layout.root)
    }

    static func configuredSettings(dataDirectory: String) -> [String: String] {
        PostgresConfig.settings(
            dataDirectory: dataDirectory, read: { try? String(contentsOfFile: $0, encoding: .utf8) },
            list: { (try? FileManager.default.contentsOfDirectory(atPath: $0)) ?? [] }
        )
    }

    public func doctor() async throws -> DoctorReport {
        let demand = try demand()
        // The cgroups as the daemon found them at start: on v2 it has since moved into a leaf of
        // its own subtree, and the cgroup that matters is the one it was given.
        let cgroups = (options.cgroups as? TenantCgroups)?.layout
        return DoctorReport(checks: Doctor.checks(fleetRoot: options.layout.root, demand: .known(demand), cgroups: cgroups), demand: demand)
    }

    /// At start-up: each check that is not ok, as a warning. Never a reason not to start: the
    /// operator decides, and `pgfleet doctor` prints the same with the fixes.
    public func logDoctorChecks() async {
        let checks: [HostCheck]
        do {
            checks = try await doctor().checks
        } catch {
            logger.warning("doctor: could not read the tenants' needs", metadata: ["error": "\(error)"])
            return
        }
        for check in checks where check.status != .ok {
            var metadata: Logger.Metadata = ["check": "\(check.name)", "status": "\(check.status.rawValue)"]
            if let fix = check.fix { metadata["fix"] = "\(fix)" }
            logger.warning("doctor: \(check.name): \(check.detail)", metadata: metadata)
        }
    }
}
