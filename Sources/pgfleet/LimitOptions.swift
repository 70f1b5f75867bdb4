import ArgumentParser
import FleetCore

/// `--cpu`, `--memory`, `--pids`, `--io-weight`, `--disk`, `--shm`, `--huge-pages`: the same options on `tenant create`
/// and `tenant set`; `none` removes a limit.
struct LimitOptions: ParsableArguments {
    @Option(help: ArgumentHelp("CPU cores the tenant may use, e.g. 0.5 or 2 (none: no limit).", valueName: "cores"))
    var cpu: String?

    @Option(help: ArgumentHelp("Memory for all of the tenant's processes, e.g. 256MB or 2GB (none: no limit).", valueName: "size"))
    var memory: String?

    @Option(help: ArgumentHelp("Processes the tenant may run at once (none: no limit).", valueName: "n"))
    var pids: String?

    @Option(help: ArgumentHelp("Relative I/O weight, 1 to 10000 (100: the default share), where the kernel allows it.", valueName: "n"))
    var ioWeight: String?

    @Option(help: ArgumentHelp("Disk the tenant may fill: data, WAL, temporary files and logs, e.g. 10GB.", valueName: "size"))
    var disk: String?

    @Option(help: ArgumentHelp(
        "The size of the tenant's private /dev/shm, e.g. 256MB (none: its memory limit, or 1GB); refused when its parallel-query settings cannot fit.",
        valueName: "size"))
    var shm: String?

    @Option(help: ArgumentHelp(
        "Huge pages for the tenant's shared memory: off, try (when the host's pool has every page it needs) or on (refuse to start without).",
        valueName: "off|try|on"))
    var hugePages: String?

    /// The change, checked here with the daemon's own parser so a typo fails before anything is sent.
    func change() throws -> LimitsChange? {
        let change = LimitsChange(cpu: cpu, memory: memory, pids: pids, ioWeight: ioWeight, disk: disk, shm: shm, hugePages: hugePages)
        if change.isEmpty { return nil }
        _ = try change.applied(to: .none)
        return change
    }
}

/// `serve --default-cpu …`: the limits of every tenant that has none of its own.
struct DefaultLimitOptions: ParsableArguments {
    @Option(name: .customLong("default-cpu"), help: ArgumentHelp("CPU cores for each tenant without a --cpu of its own.", valueName: "cores"))
    var cpu: String?

    @Option(name: .customLong("default-memory"), help: ArgumentHelp("Memory for each tenant without a --memory of its own.", valueName: "size"))
    var memory: String?

    @Option(name: .customLong("default-pids"), help: ArgumentHelp("Processes for each tenant without a --pids of its own.", valueName: "n"))
    var pids: String?

    @Option(name: .customLong("default-io-weight"), help: ArgumentHelp("I/O weight for each tenant without an --io-weight of its own.", valueName: "n"))
    var ioWeight: String?

    @Option(name: .customLong("default-disk"), help: ArgumentHelp("Disk for each tenant without a --disk of its own.", valueName: "size"))
    var disk: String?

    @Option(name: .customLong("default-shm"), help: ArgumentHelp("/dev/shm for each tenant without a --shm of its own.", valueName: "size"))
    var shm: String?

    @Option(
        name: .customLong("default-huge-pages"),
        help: ArgumentHelp("Huge pages for each tenant without a --huge-pages of its own (default: try).", valueName: "off|try|on"))
    var hugePages: String?

    func limits() throws -> TenantLimits {
        do {
            return try LimitsChange(cpu: cpu, memory: memory, pids: pids, ioWeight: ioWeight, disk: disk, shm: shm, hugePages: hugePages).applied(to: .none)
        } catch let error as FleetError {
            // The daemon's own spelling: --default-memory, not --memory.
            throw ValidationError(error.description.replacingOccurrences(of: "--", with: "--default-"))
        }
    }

    func validate() throws { _ = try limits() }
}
