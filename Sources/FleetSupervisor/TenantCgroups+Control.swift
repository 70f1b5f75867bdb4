import FleetHost

extension TenantCgroups: CgroupControl {
    public func hugePagesProblem() -> String? { HugePageHost(root: root).reservationLimitProblem(cgroups: self) }
}
