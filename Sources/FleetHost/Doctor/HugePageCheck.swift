import FleetCore
import Foundation

/// The host's huge page pool against the tenants that ask for huge pages, and whether pgfleet can
/// give any safely at all (a reservation limit, or an over-commit ends in SIGBUS: seed 002).
public enum HugePageCheck {
    static let name = "huge pages"

    public static func check(root: HostRoot = .real, fleetRoot: String, demand: FleetDemand?, cgroups: CgroupLayout?) -> HostCheck {
        let host = HugePageHost(root: root)
        let layout = cgroups ?? (try? CgroupLayout.discover(root: root))
        let tenantCgroups = layout.map { TenantCgroups(layout: $0, root: root, groupName: TenantCgroups.groupName(forRoot: fleetRoot)) }
        return judge(pool: host.pool(), problem: host.reservationLimitProblem(cgroups: tenantCgroups), demand: demand)
    }

    /// `pool`: nil when the kernel has no huge pages; `problem`: why none can be limited here.
    public static func judge(pool: HugePagePool?, problem: String?, demand: FleetDemand?) -> HostCheck {
        guard let pool else { return HostCheck(name: name, status: .ok, detail: "this kernel has no huge pages: tenants run on normal pages") }
        let size = ByteSize.format(pool.pageBytes)
        let asking = demand?.tenants.filter { ($0.hugePages ?? .off) != .off } ?? []
        let onTenants = asking.filter { $0.hugePages == .on }
        if let problem {
            let status: HostCheck.Status = onTenants.isEmpty ? .warn : .fail
            return HostCheck(
                name: name, status: status,
                detail: "no tenant is ever given huge pages here: \(problem)"
                    + (onTenants.isEmpty ? "" : "; \(onTenants.count) tenant\(onTenants.count == 1 ? "" : "s") with --huge-pages on cannot start"),
                fix: "Linux 5.7 or later with the hugetlb cgroup controller available to pgfleet (cgroup v2: hugetlb in cgroup.subtree_control of its cgroup)")
        }
        var detail = "pool \(pool.total) × \(size), \(pool.free) free, \(pool.reserved) reserved; reservation limits available"
        guard demand != nil else {
            return HostCheck(name: name, status: .ok, detail: detail + "; not weighed against the tenants (no daemon answered)")
        }
        let needed = asking.compactMap(\.hugePagesNeeded).reduce(0, +)
        let neededOn = onTenants.compactMap(\.hugePagesNeeded).reduce(0, +)
        let granted = asking.compactMap(\.hugePagesGranted).reduce(0, +)
        let unknown = asking.filter { $0.hugePagesNeeded == nil }.count
        detail += "; \(asking.count) tenant\(asking.count == 1 ? "" : "s") ask for huge pages (\(onTenants.count) with on), "
            + "\(needed) pages needed where known, \(granted) given" + (unknown > 0 ? ", \(unknown) not yet computed (computed at a start on a host with a pool)" : "")
        let fix = "sysctl -w vm.nr_hugepages=\(max(pool.total, needed) + 8) (and vm.nr_hugepages in /etc/sysctl.d), or run serve with --huge-pages-pool"
        if neededOn > pool.total {
            return HostCheck(name: name, status: .fail, detail: detail + ": the tenants with --huge-pages on need more than the pool has", fix: fix)
        }
        if needed > pool.total {
            return HostCheck(name: name, status: .warn, detail: detail + ": some tenants with --huge-pages try run on normal pages", fix: fix)
        }
        if pool.total == 0, !asking.isEmpty {
            return HostCheck(name: name, status: .ok, detail: detail + ": no pool, so they run on normal pages (fewer TLB misses with one: \(fix))")
        }
        return HostCheck(name: name, status: .ok, detail: detail)
    }
}
