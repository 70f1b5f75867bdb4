import FleetHost

extension TenantCgroups: CgroupControl {}
