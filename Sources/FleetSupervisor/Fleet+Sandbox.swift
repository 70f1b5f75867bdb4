import FleetBundles
import FleetCatalog
import FleetCore
import FleetHost
import FleetSystem
import Foundation

/// How the daemon sandboxes its tenants' postmasters (`serve --sandbox on`, the default as root).
public struct SandboxSettings: Sendable {
    public var bwrapPath: String
    public var hostLayout: SandboxHostLayout
    public var identityMode: SandboxIdentityMode

    public init(bwrapPath: String = "/usr/bin/bwrap", hostLayout: SandboxHostLayout, identityMode: SandboxIdentityMode = .userNamespace) {
        self.bwrapPath = bwrapPath
        self.hostLayout = hostLayout
        self.identityMode = identityMode
    }

    /// A private /tmp: scripts of `COPY … PROGRAM` may write there; PostgreSQL itself does not.
    public static let tmpBytes: UInt64 = 64 << 20
    /// The private /dev/shm without a memory limit (with one, the limit: tmpfs pages are charged
    /// to the tenant's memory cgroup, so it can never hold more).
    public static let unlimitedShmBytes: UInt64 = 1 << 30
}

extension Fleet {
    /// Nil when the postmaster runs unsandboxed: the daemon is not root, or runs with `--sandbox off`.
    func sandboxLaunch(for record: TenantRecord, name: TenantName, bundle: FleetBundles.Bundle, user: UserIdentity?, environment: [String: String]) -> SandboxLaunch? {
        guard let settings = options.sandbox, let user else { return nil }
        let board = networkBoard
        let limits = limitsBoard
        board[record.name] = record.sandboxNetwork
        let layout = options.layout
        let stateDirectory = layout.sandboxDirectory(name)
        let cgroups = cgroupsReady ? options.cgroups : nil
        let plan: @Sendable () -> SandboxPlan = {
            SandboxPlan(
                bundleDirectory: bundle.directory, tenantDirectory: record.directory, readOnlyPaths: Self.hostLibraryPaths(bundle),
                network: board[record.name], shmSize: Self.shmSize(limits[record.name]),
                tmpSize: SandboxSettings.tmpBytes, hostname: Self.sandboxHostname(name), user: user,
                command: [bundle.postgres, "-D", record.dataDirectory], environment: environment, workingDirectory: record.dataDirectory,
                stateDirectory: stateDirectory, hostLayout: settings.hostLayout, identityMode: settings.identityMode,
                bwrapPath: settings.bwrapPath, extraBinds: Self.vendoredBinds(bundle)
            )
        }
        let uid = user.uid
        // At each start, not for every tenant at the daemon's: its directory for the generated
        // files, and a cluster made before the sandbox must still let the daemon in as the
        // health-check role.
        let prepare: @Sendable () throws -> Void = {
            try Self.prepareSandboxDirectory(layout: layout, name: name)
            try ClusterConfig.ensureSandboxPeerIdent(dataDirectory: record.dataDirectory, owner: user)
        }
        return SandboxLaunch(plan: plan, recordFile: Self.sandboxRecordFile(stateDirectory), prepare: prepare) {
            // The cgroup lists the tenant's processes at once; without one, a scan of /proc by uid.
            cgroups?.processes(of: record.name) ?? ProcFS.processes(ofUID: uid)
        }
    }

    /// The sandbox for one run of `postgres --single` (a new password): the same view as the
    /// postmaster's, so nothing the tenant's superuser left in its configuration (a preloaded
    /// library, say) runs outside it.
    func singleUserSandbox(for record: TenantRecord, name: TenantName, bundle: FleetBundles.Bundle, user: UserIdentity?) -> SandboxPlan? {
        guard let settings = options.sandbox, let user else { return nil }
        return SandboxPlan(
            bundleDirectory: bundle.directory, tenantDirectory: record.directory, readOnlyPaths: Self.hostLibraryPaths(bundle),
            network: .none, shmSize: SandboxSettings.unlimitedShmBytes, tmpSize: SandboxSettings.tmpBytes,
            hostname: Self.sandboxHostname(name), user: user, command: [bundle.postgres], environment: Self.environment(for: bundle),
            workingDirectory: record.dataDirectory, stateDirectory: options.layout.sandboxDirectory(name),
            hostLayout: settings.hostLayout, identityMode: settings.identityMode, bwrapPath: settings.bwrapPath,
            extraBinds: Self.vendoredBinds(bundle)
        )
    }

    /// Runs the tenant's own `postgres` (`-C NAME`, `--single`) as its user, inside its sandbox
    /// when the daemon sandboxes: reading a computed setting such as `shared_memory_size` loads the
    /// tenant's `shared_preload_libraries`, which its superuser may have pointed at a file of its own.
    func runTenantPostgres(
        _ arguments: [String], record: TenantRecord, bundle: FleetBundles.Bundle, owner: UserIdentity?, stdin: [UInt8]? = nil
    ) async throws -> CommandResult {
        guard let name = try? TenantName(validating: record.name), var plan = singleUserSandbox(for: record, name: name, bundle: bundle, user: owner) else {
            return try await Command.run(
                bundle.postgres, arguments, environment: Self.environment(for: bundle), user: owner, stdin: stdin, workingDirectory: record.dataDirectory
            )
        }
        plan.command = [bundle.postgres] + arguments
        try Self.prepareSandboxDirectory(layout: options.layout, name: name)
        return try await Self.run(plan, owner: owner, stdin: stdin, workingDirectory: record.dataDirectory)
    }

    /// Runs `plan.command` in its sandbox and waits for it: its files written, bwrap exec'd as
    /// `owner` where the plan's identity mode says so.
    static func run(_ plan: SandboxPlan, owner: UserIdentity?, stdin: [UInt8]?, workingDirectory: String) async throws -> CommandResult {
        let invocation: SandboxInvocation
        do { invocation = try plan.invocation() } catch { throw FleetError.failed("the sandbox of \(plan.hostname): \(error.description)") }
        for file in invocation.files where (try? String(contentsOfFile: file.hostPath, encoding: .utf8)) != file.contents {
            try Files.write(file.contents, to: file.hostPath, mode: 0o644, sync: false)
        }
        return try await Command.run(
            invocation.executable, Array(invocation.arguments.dropFirst()), environment: invocation.environment,
            user: invocation.switchUserBeforeExec ? owner : nil, stdin: stdin, workingDirectory: workingDirectory
        )
    }

    /// Makes the root-owned directory for the sandbox's generated files (0755: bwrap, running as
    /// the tenant, reads them to bind them).
    static func prepareSandboxDirectory(layout: FleetLayout, name: TenantName) throws {
        try Files.makeDirectory(layout.sandboxesDirectory, mode: 0o711)
        try Files.makeDirectory(layout.sandboxDirectory(name), mode: 0o755)
    }

    func removeSandboxDirectory(_ name: TenantName) {
        networkBoard.remove(name.rawValue)
        try? Files.removeTree(options.layout.sandboxDirectory(name))
    }

    static func sandboxRecordFile(_ stateDirectory: String) -> String { stateDirectory + "/postmaster" }

    /// The running postmaster of a tenant, to adopt instead of starting a second one: one an
    /// earlier pgfleet started unsandboxed (postmaster.pid names its host pid), or a sandboxed one
    /// (postmaster.pid says 2, the pid inside; the daemon's record names it on the host).
    func runningPostmaster(of record: TenantRecord, name: TenantName) -> (pid: pid_t, sandboxed: Bool)? {
        if let lock = PostmasterPID.read(dataDirectory: record.dataDirectory) {
            if lock.pid != SandboxProcesses.postmasterNamespacePID, lock.isLivePostmaster(expectedDataDirectory: record.dataDirectory) {
                return (lock.pid, false)
            }
        } else {
            return nil
        }
        guard options.isolated else { return nil }
        let noted = SandboxRecord.read(Self.sandboxRecordFile(options.layout.sandboxDirectory(name)))
        return SandboxProcesses.adoptable(dataDirectory: record.dataDirectory, uid: uid_t(record.uid), record: noted).map { ($0, true) }
    }

    /// Host libraries the bundle's manifest lists, as real paths: those under /usr are in the
    /// sandbox already; the rest are bound one by one.
    static func hostLibraryPaths(_ bundle: FleetBundles.Bundle) -> [String] {
        var paths: [String] = []
        for library in bundle.manifest.host.libraries {
            guard let resolved = realpath(library.path, nil) else { continue }
            defer { free(resolved) }
            let path = String(cString: resolved)
            if !path.hasPrefix("/usr/"), !paths.contains(path) { paths.append(path) }
        }
        return paths
    }

    /// A vendored bundle's own copies bound where its binaries look for the host's: its time
    /// zones over the compiled-in path (/usr/share/zoneinfo), so no tenant reads the host's tzdata.
    static func vendoredBinds(_ bundle: FleetBundles.Bundle) -> [ReadOnlyBind] {
        guard let zones = bundle.manifest.vendored?.timeZones, !zones.path.hasPrefix("/"), !zones.path.split(separator: "/").contains("..") else { return [] }
        return [ReadOnlyBind(source: bundle.directory + "/" + zones.path, target: zones.compiledPath)]
    }

    /// The tenant's name as the sandbox's hostname (one DNS label: no '-' at its end).
    static func sandboxHostname(_ name: TenantName) -> String {
        var label = name.rawValue
        while label.hasSuffix("-") { label.removeLast() }
        return label.isEmpty ? "tenant" : label
    }
}
