/// What a tenant is, as its creator asked for it. Made once from a create request by
/// `CreateTenantRequest.validated(spelling:)` (the CLI before sending it, the API before streaming,
/// provisioning before acting), stored in the catalog's `tenant` row and read back from it
/// (`TenantRecord.spec`) for the tenant's supervisor.
///
/// A new property (a cgroup cpu/memory/pids limit, a disk quota, huge pages, backups) is: a field
/// here, its check in `validated(spelling:)`, its column (a migration in FleetCatalog's `Schema` and
/// a `CodingKey` of `TenantRecord`), and its use.
public struct TenantSpec: Sendable, Equatable {
    /// Which PostgreSQL build runs it; provisioning resolves the first two to an `.id`, which the catalog keeps.
    public enum BundleChoice: Sendable, Equatable {
        case daemonDefault
        case major(Int)
        case id(String)
    }

    public static let defaultSuperuser = "postgres"

    public var name: TenantName
    public var bundle: BundleChoice
    public var superuser: String
    /// Seconds without a client before the tenant is suspended; nil: the daemon's default; 0: never.
    public var suspendAfter: Int?
    /// Its own limits; each unset one is the daemon's default (`serve --cpu …`).
    public var limits: TenantLimits
    /// The sandbox's network: none (the default for a new tenant) or the host's.
    public var network: SandboxNetwork

    public init(
        name: TenantName, bundle: BundleChoice = .daemonDefault, superuser: String = Self.defaultSuperuser, suspendAfter: Int? = nil,
        limits: TenantLimits = .none, network: SandboxNetwork = .none
    ) {
        self.network = network
        self.limits = limits
        self.name = name
        self.bundle = bundle
        self.superuser = superuser
        self.suspendAfter = suspendAfter
    }
}

extension CreateTenantRequest {
    /// How the request's fields are named in an error, as the person who wrote them knows them.
    public enum Spelling: Sendable {
        /// `--password`
        case commandLine
        /// `"password"`
        case json

        func field(_ name: String, option: String) -> String {
            switch self {
            case .commandLine: "--\(option)"
            case .json: "\"\(name)\""
            }
        }
    }

    /// The one validation of a create request; throws `FleetError.invalidRequest` naming the first
    /// problem. The password is checked here but is not part of the spec: it is never stored.
    public func validated(spelling: Spelling) throws -> TenantSpec {
        let name = try TenantName(validating: name)
        let superuser = superuser ?? TenantSpec.defaultSuperuser
        if let problem = RoleName.problem(with: superuser) {
            throw FleetError.invalidRequest("invalid superuser name \"\(superuser.debugClipped)\": \(problem)")
        }
        if let password {
            if password.isEmpty {
                throw FleetError.invalidRequest("\(spelling.field("password", option: "password")) is empty; omit it to have one generated")
            }
            if password.utf8.contains(0) || password.contains("\n") || password.contains("\r") {
                throw FleetError.invalidRequest("the password contains a NUL or line break, which PostgreSQL cannot store")
            }
            if password.utf8.count > 1000 { throw FleetError.invalidRequest("the password is longer than 1000 bytes") }
        }
        if let suspendAfter, suspendAfter < 0 {
            throw FleetError.invalidRequest("suspend-after must be 0 (never) or a positive number of seconds")
        }
        let bundle: TenantSpec.BundleChoice = if let bundle { .id(bundle) } else if let pg { .major(pg) } else { .daemonDefault }
        let limits = try (self.limits ?? LimitsChange()).applied(to: .none, spelling: spelling == .json ? .json : .commandLine)
        let network = try self.network.map { text throws(FleetError) in try SandboxNetwork(validating: text, field: spelling.field("network", option: "network")) } ?? .none
        return TenantSpec(name: name, bundle: bundle, superuser: superuser, suspendAfter: suspendAfter, limits: limits, network: network)
    }
}
