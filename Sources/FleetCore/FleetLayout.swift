import Foundation

/// Where everything lives under the root directory. This layout is an interface: operators read
/// it, backups copy it, and the next daemon re-adopts tenants from it.
///
///     ROOT/                       0711  root (or the invoking user)
///       catalog.sqlite            0600  the catalog (plus -wal/-shm)
///       run/                      0700
///         api.sock                0600  the HTTP API
///         serve.pid                     the daemon's pid while it runs
///       log/serve.log                   the daemon's own log when detached
///       bundles/                  0755
///         <id>/                         one PostgreSQL build: manifest.json, bin/, lib/, share/
///       pool/                     0711  the ready pool (`serve --pool-size`)
///         <bundle id>/            0700  owned by the pool's OS user; tenants cannot enter
///           ready-<token>/        0700  a pre-initialised data directory, claimed by `tenant create`
///           building-<token>/           one being made (removed at start-up if a crash left it)
///       tenants/                  0711
///         <name>/                 0700  owned by the tenant's OS user
///           data/                 0700  PGDATA
///           socket/               0700  the postmaster's unix socket (.s.PGSQL.5432)
///           log/postgresql.log          postmaster stderr
public struct FleetLayout: Sendable, Equatable {
    public let root: String

    public init(root: String) {
        var cleaned = root
        while cleaned.count > 1 && cleaned.hasSuffix("/") { cleaned.removeLast() }
        self.root = cleaned
    }

    public var catalogPath: String { root + "/catalog.sqlite" }
    public var runDirectory: String { root + "/run" }
    public var apiSocketPath: String { runDirectory + "/api.sock" }
    public var pidFile: String { runDirectory + "/serve.pid" }
    public var logDirectory: String { root + "/log" }
    public var bundlesDirectory: String { root + "/bundles" }
    public var tenantsDirectory: String { root + "/tenants" }
    public var poolDirectory: String { root + "/pool" }
    /// The daemon's files about each tenant's sandbox (root's, out of the tenant's reach).
    public var sandboxesDirectory: String { root + "/sandbox" }

    public func bundleDirectory(_ id: String) -> String { bundlesDirectory + "/" + id }
    public func poolDirectory(bundle id: String) -> String { poolDirectory + "/" + id }
    public func tenantDirectory(_ name: TenantName) -> String { tenantsDirectory + "/" + name.rawValue }
    public func dataDirectory(_ name: TenantName) -> String { tenantDirectory(name) + "/data" }
    public func socketDirectory(_ name: TenantName) -> String { tenantDirectory(name) + "/socket" }
    public func tenantLogDirectory(_ name: TenantName) -> String { tenantDirectory(name) + "/log" }
    public func tenantLogFile(_ name: TenantName) -> String { tenantLogDirectory(name) + "/postgresql.log" }
    /// The sandbox's generated /etc/passwd and /etc/group, and its postmaster's host pid.
    public func sandboxDirectory(_ name: TenantName) -> String { sandboxesDirectory + "/" + name.rawValue }
    /// Present while `tenant create NAME` runs, and after it if the create never finished (the
    /// daemon died during it, or the new cluster did not start): see `Fleet.resumeTenants`.
    /// Beside the tenants' directories, not in one: a tenant's files are its OS user's, this one
    /// is the daemon's. Tenant names never start with a dot.
    public func creationMarker(_ name: TenantName) -> String { tenantsDirectory + "/." + name.rawValue + ".creating" }

    /// Every tenant's postmaster listens on this port number, in its own socket directory only.
    public static let tenantPort = 5432

    /// `--root`, else `PGFLEET_ROOT`, else `/var/lib/pgfleet` for root and the XDG data directory otherwise.
    public static func resolveRoot(option: String?, environment: [String: String] = ProcessInfo.processInfo.environment, isRoot: Bool) -> String {
        if let option, !option.isEmpty { return absolute(option) }
        if let fromEnv = environment["PGFLEET_ROOT"], !fromEnv.isEmpty { return absolute(fromEnv) }
        if isRoot { return "/var/lib/pgfleet" }
        if let xdg = environment["XDG_DATA_HOME"], xdg.hasPrefix("/") { return xdg + "/pgfleet" }
        let home = environment["HOME"] ?? NSHomeDirectory()
        return home + "/.local/share/pgfleet"
    }

    private static func absolute(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        return FileManager.default.currentDirectoryPath + "/" + path
    }
}
