/// One finding of `pgfleet doctor`: what was looked at, what it is, and the exact fix. In
/// FleetCore because the daemon answers its own checks over the API (`GET /v1/doctor`).
public struct HostCheck: Codable, Sendable, Equatable {
    public enum Status: String, Codable, Sendable, Comparable {
        case ok, warn, fail

        private var rank: Int { self == .ok ? 0 : self == .warn ? 1 : 2 }
        public static func < (lhs: Status, rhs: Status) -> Bool { lhs.rank < rhs.rank }
    }

    public var name: String
    public var status: Status
    /// What the host has, in words.
    public var detail: String
    /// What to run or change, when the status is not ok.
    public var fix: String?

    public init(name: String, status: Status, detail: String, fix: String? = nil) {
        self.name = name
        self.status = status
        self.detail = detail
        self.fix = fix
    }
}

/// The daemon's answer to `GET /v1/doctor`: its checks of the host (read in the daemon's own
/// process: its descriptor limit, its cgroup) against what its tenants need.
public struct DoctorReport: Codable, Sendable, Equatable {
    public var checks: [HostCheck]
    public var demand: FleetDemand

    public init(checks: [HostCheck], demand: FleetDemand) {
        self.checks = checks
        self.demand = demand
    }
}
