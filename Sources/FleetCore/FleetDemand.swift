/// What the tenants ask of the host, for the doctor's checks that weigh the host against them
/// (descriptors, the WAL reserve, and later the huge page pool). The daemon computes it from its
/// catalog and each tenant's configuration files, without starting or waking any tenant.
///
/// New needs are added as optional members, so that a CLI and a daemon of neighbouring versions
/// still read each other's JSON.
public struct FleetDemand: Codable, Sendable, Equatable {
    public var tenants: [TenantDemand]
    /// Whether the daemon runs each postmaster in a sandbox with a private `/dev/shm`.
    public var sandboxed: Bool
    /// The daemon's pgfleet root: its filesystem holds the tenants' WAL.
    public var root: String

    public init(tenants: [TenantDemand], sandboxed: Bool, root: String) {
        self.tenants = tenants
        self.sandboxed = sandboxed
        self.root = root
    }

    /// Descriptors every postmaster and its backends may open together.
    public var tenantDescriptors: UInt64 { tenants.reduce(0) { $0 + $1.descriptors } }

    /// The proxy holds two descriptors per client connection (the client's and the tenant's), and
    /// every tenant may be asked for as many clients as it accepts.
    public var proxyDescriptors: UInt64 { tenants.reduce(0) { $0 + 2 * UInt64(max(0, $1.maxConnections)) } }

    /// WAL the tenants may keep on disk together: max_wal_size (a soft bound checkpoints aim
    /// for) plus wal_keep_size each.
    public var walReserve: UInt64 { tenants.reduce(0) { $0 + $1.walReserve } }
}

/// One tenant's share of `FleetDemand`, from its effective settings.
public struct TenantDemand: Codable, Sendable, Equatable {
    public var name: String
    public var maxConnections: Int
    public var maxWorkerProcesses: Int
    public var autovacuumMaxWorkers: Int
    public var maxWalSenders: Int
    public var maxFilesPerProcess: Int
    public var maxWalSize: UInt64
    public var walKeepSize: UInt64
    /// `--huge-pages` in force (nil: off, or an older daemon).
    public var hugePages: HugePagesMode?
    /// Pages its shared memory needs, where the daemon has computed it (a start on a host with a pool).
    public var hugePagesNeeded: Int?
    /// Pages it was given at its last start.
    public var hugePagesGranted: Int?

    public init(
        name: String, maxConnections: Int = 100, maxWorkerProcesses: Int = 8, autovacuumMaxWorkers: Int = 3, maxWalSenders: Int = 10,
        maxFilesPerProcess: Int = 1000, maxWalSize: UInt64 = 1 << 30, walKeepSize: UInt64 = 0
    ) {
        self.name = name
        self.maxConnections = maxConnections
        self.maxWorkerProcesses = maxWorkerProcesses
        self.autovacuumMaxWorkers = autovacuumMaxWorkers
        self.maxWalSenders = maxWalSenders
        self.maxFilesPerProcess = maxFilesPerProcess
        self.maxWalSize = maxWalSize
        self.walKeepSize = walKeepSize
    }

    /// From a tenant's settings (name → value as written in its configuration files), with
    /// PostgreSQL's defaults for what is not set there. A value that cannot be read keeps the
    /// default: the doctor estimates, it does not refuse.
    public init(name: String, settings: [String: String]) {
        func count(_ key: String) -> Int? { settings[key].flatMap { Int($0.trimmingCharacters(in: .whitespaces)) } }
        // Both are in megabytes when written without a unit.
        func megabytes(_ key: String) -> UInt64? {
            guard let text = settings[key]?.trimmingCharacters(in: .whitespaces) else { return nil }
            if let number = UInt64(text) { return number.multipliedReportingOverflow(by: 1 << 20).overflow ? nil : number << 20 }
            return PostgresUnits.bytes(text)
        }
        let defaults = TenantDemand(name: name)
        self.init(
            name: name, maxConnections: count("max_connections") ?? defaults.maxConnections,
            maxWorkerProcesses: count("max_worker_processes") ?? defaults.maxWorkerProcesses,
            autovacuumMaxWorkers: count("autovacuum_max_workers") ?? defaults.autovacuumMaxWorkers,
            maxWalSenders: count("max_wal_senders") ?? defaults.maxWalSenders,
            maxFilesPerProcess: count("max_files_per_process") ?? defaults.maxFilesPerProcess,
            maxWalSize: megabytes("max_wal_size") ?? defaults.maxWalSize, walKeepSize: megabytes("wal_keep_size") ?? defaults.walKeepSize
        )
    }

    /// The settings this reads, for the caller that collects them.
    public static let settingNames = [
        "max_connections", "max_worker_processes", "autovacuum_max_workers", "max_wal_senders", "max_files_per_process", "max_wal_size",
        "wal_keep_size",
    ]

    /// Every process the postmaster may run at once: backends, workers, WAL senders, the
    /// autovacuum launcher and its own auxiliary processes (as `LimitFit.processes` counts them).
    public var processes: Int {
        max(0, maxConnections) + max(0, autovacuumMaxWorkers) + 1 + max(0, maxWorkerProcesses) + max(0, maxWalSenders) + LimitFit.auxiliaryProcesses
    }

    /// Each process may keep max_files_per_process files open besides its sockets.
    public var descriptors: UInt64 { UInt64(processes) * UInt64(max(0, maxFilesPerProcess)) }

    public var walReserve: UInt64 { maxWalSize &+ walKeepSize }
}
