import ArgumentParser
import FleetAPI
import FleetCatalog
import FleetCore
import FleetHost
import FleetProxy
import FleetSupervisor
import FleetSystem
import Foundation
import Hummingbird
import Logging
import Metrics
import Prometheus
import ServiceLifecycle

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the pgfleet daemon: catalog, supervisor and HTTP API.",
        discussion: """
            Serves the API on ROOT/run/api.sock (mode 0600) and supervises every tenant. Stop it with \
            SIGTERM or Ctrl-C: tenants get a fast shutdown and are started again by the next `serve`. \
            If the daemon is killed, tenants keep running and the next `serve` re-adopts them.
            """
    )

    @OptionGroup var rootOptions: RootOptions
    @OptionGroup(title: "Proxy") var proxyOptions: ProxyOptions
    @OptionGroup(title: "Default limits") var defaultLimits: DefaultLimitOptions

    @Option(help: "Prefix of the OS user names created for tenants (root only).")
    var userPrefix = "pgf-"

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    @Flag(inversion: .prefixedNo, help: "Register installed PostgreSQL versions (/usr/lib/postgresql/N) as bundles at start-up.")
    var systemBundles = true

    @Option(help: "Seconds before the first restart after a crash; doubles with each crash in a row.")
    var restartBackoff: Double = 0.5

    @Option(help: "Crashes in a row before a tenant is marked failed instead of restarted.")
    var maxCrashes = 5

    @Option(help: "Seconds a starting postmaster has to answer a query.")
    var startTimeout: Double = 60

    @Option(help: ArgumentHelp(
        "Suspend a tenant after this long without a client (e.g. 30s, 10m, 1h), unless the tenant says otherwise; 0 never.",
        valueName: "duration"
    ))
    var suspendAfter = "0"

    @Option(help: ArgumentHelp(
        "Initialised clusters kept ready per bundle, so that `tenant create` only claims and starts one; 0 turns the pool off.",
        valueName: "n"
    ))
    var poolSize = 2

    @Option(help: ArgumentHelp(
        "Clusters kept ready per bundle inside their own disk images, for `tenant create --disk` (root, loop-image quotas); default: --pool-size when --default-disk is given, else 0.",
        valueName: "n"
    ))
    var poolDisks: Int?

    @Option(help: ArgumentHelp(
        "on: every postmaster runs in a sandbox of its own (bubblewrap: its own mount, PID, IPC and network namespaces; root only); off: with the host's view.",
        valueName: "on|off"
    ))
    var sandbox = "on"

    @Flag(help: ArgumentHelp(
        "Grow vm.nr_hugepages to the huge pages the tenants need and shrink it back (never below what the host had; restored at shutdown). Root only."
    ))
    var hugePagesPool = false

    func validate() throws {
        guard userPrefix.range(of: "^[a-z_][a-z0-9_-]{0,7}$", options: .regularExpression) != nil else {
            throw ValidationError("--user-prefix must be 1-8 characters of a-z, 0-9, '_' or '-', starting with a letter or '_'")
        }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of: \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard DurationText.seconds(suspendAfter) != nil else {
            throw ValidationError("--suspend-after must be a duration such as 30s, 10m, 1h or 0 (never)")
        }
        guard ["on", "off"].contains(sandbox) else {
            throw ValidationError("--sandbox must be on or off")
        }
        if let poolDisks, !(0...100).contains(poolDisks) {
            throw ValidationError("--pool-disks must be between 0 (none) and 100")
        }
        guard (0...100).contains(poolSize) else {
            throw ValidationError("--pool-size must be between 0 (no pool) and 100")
        }
        guard restartBackoff > 0, maxCrashes >= 1, startTimeout > 0 else {
            throw ValidationError("--restart-backoff and --start-timeout must be positive and --max-crashes at least 1")
        }
    }

    func run() async throws {
        let layout = rootOptions.layout
        let isRoot = geteuid() == 0
        // Nothing the daemon creates is readable by others unless it says so (bundles, tenants/).
        umask(0o077)

        let logger = bootstrapLogging(label: "pgfleet", level: logLevel)
        let descriptors = raiseFileLimit(logger: logger)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))

        do {
            try prepareRoot(layout, logger: logger)
        } catch {
            printError(error)
            throw ExitCode(1)
        }
        let lock: Int32
        do {
            lock = try acquireLock(layout)
        } catch {
            printError(error)
            throw ExitCode(1)
        }
        defer {
            unlink(layout.pidFile)
            close(lock)
        }
        if !isRoot {
            logger.warning(
                "not running as root: every tenant runs as \(UserIdentity.current.name) and tenants are NOT isolated from each other"
            )
        }

        let catalog = try Catalog(path: layout.catalogPath)
        let policy = RestartPolicy(
            initialBackoff: .milliseconds(Int64(restartBackoff * 1000)), maxConsecutiveCrashes: maxCrashes,
            startTimeout: .milliseconds(Int64(startTimeout * 1000))
        )
        var fleetOptions = FleetOptions(
            layout: layout, isolated: isRoot, userPrefix: userPrefix, policy: policy, registerSystemBundles: systemBundles,
            proxy: try proxyOptions.endpoint(), defaultSuspendAfter: DurationText.seconds(suspendAfter) ?? 0,
            poolSize: poolSize
        )
        fleetOptions.defaultLimits = try defaultLimits.limits()
        fleetOptions.managesHugePagePool = hugePagesPool && isRoot
        if hugePagesPool && !isRoot { logger.warning("--huge-pages-pool needs root: the host's huge page pool is left as it is") }
        fleetOptions.cgroups = isRoot ? hostCgroups(layout: layout, logger: logger) : nil
        if isRoot {
            // XFS project quotas where the root's filesystem has them, a loop image per area elsewhere.
            let kind = DiskBackendKind.detect(for: layout.root)
            fleetOptions.disk = kind == .xfsProject ? XFSProjectDisk(layout: layout) : LoopImageDisk(layout: layout)
            fleetOptions.poolDisks = poolDisks ?? (fleetOptions.defaultLimits.diskBytes != nil ? poolSize : 0)
            logger.info("tenant disk quotas", metadata: ["backend": "\(kind.rawValue)"])
        }
        if isRoot && sandbox == "on" {
            let settings = try await hostSandbox(logger: logger)
            fleetOptions.sandbox = settings
        }
        if isRoot && !fleetOptions.canProtectPostmaster {
            logger.notice("no CAP_SYS_RESOURCE: postmasters keep their OOM score and their backends raise theirs to 500 instead of -1000 and 0")
        }
        let fleet = Fleet(options: fleetOptions, catalog: catalog, logger: logger)
        await fleet.removeLeftovers()
        // `pgfleet doctor`'s checks, each one that is not ok as a warning: never a reason not to start.
        await fleet.logDoctorChecks()
        if systemBundles { await fleet.registerSystemBundles() }

        let router = buildRouter(fleet: fleet, metrics: registry, logger: logger)
        let app = buildApplication(router: router, socketPath: layout.apiSocketPath, logger: logger)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: FleetService(fleet: fleet, logger: logger)), .init(service: app),
        ]
        if proxyOptions.enabled {
            let proxy: ProxyServer
            do {
                proxy = ProxyServer(
                    configuration: try proxyOptions.configuration(), routes: fleet,
                    tls: try proxyOptions.tlsContext(root: layout.root), logger: logger,
                    group: proxyOptions.eventLoopGroup(), descriptors: descriptors
                )
                // Bound now, so a port in use is an error at start-up, not a failed service later.
                _ = try await proxy.bind()
                await fleet.setProxyConnections(
                    clients: { [proxy] tenant in proxy.connections(of: tenant) },
                    serverSessions: { [proxy] tenant in proxy.pooledServerConnections(of: tenant) },
                    prepare: { [proxy] tenant, socketPath in proxy.prepare(tenant: tenant, socketPath: socketPath) }
                )
            } catch {
                printError(error)
                throw ExitCode(1)
            }
            services.append(.init(service: proxy))
        }
        let group = ServiceGroup(
            configuration: .init(
                services: services,
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        logger.info("pgfleet serve started", metadata: ["root": "\(layout.root)", "api": "\(layout.apiSocketPath)", "pid": "\(getpid())"])
        try await group.run()
        logger.info("pgfleet serve stopped")
    }

    private func prepareRoot(_ layout: FleetLayout, logger: Logger) throws {
        try Files.makeDirectory(layout.root, mode: 0o711)
        try Files.makeDirectory(layout.runDirectory, mode: 0o700)
        try Files.makeDirectory(layout.bundlesDirectory, mode: 0o755)
        try Files.makeDirectory(layout.tenantsDirectory, mode: 0o711)
        if geteuid() == 0, let blocked = Files.firstUnsearchableAncestor(of: layout.tenantsDirectory) {
            throw FleetError.invalidRequest(
                "\(blocked) is not searchable by other users, so tenant OS users could not reach their data under "
                    + "\(layout.root). Run `chmod o+x \(blocked)` or choose another --root."
            )
        }
    }

    /// One daemon per root: a second one would start every tenant twice.
    private func acquireLock(_ layout: FleetLayout) throws -> Int32 {
        let path = layout.runDirectory + "/serve.lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FleetError.failed("cannot open \(path): \(String(cString: strerror(errno)))") }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let other = (try? String(contentsOfFile: layout.pidFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            close(fd)
            throw FleetError.conflict("another pgfleet serve is already running for \(layout.root)" + (other.map { " (pid \($0))" } ?? ""))
        }
        try Files.write("\(getpid())\n", to: layout.pidFile, mode: 0o644)
        return fd
    }
}

/// Log lines go to stderr at `level` (validated by the command); returns the command's logger.
func bootstrapLogging(label: String, level: String) -> Logger {
    let level = Logger.Level(rawValue: level) ?? .info
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = level
        return handler
    }
    return Logger(label: label)
}

func printError(_ error: any Error) {
    FileHandle.standardError.write(Data("error: \(error)\n".utf8))
}
