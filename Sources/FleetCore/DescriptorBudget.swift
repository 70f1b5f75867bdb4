import Foundation

/// The settings that decide how many files a tenant's PostgreSQL may hold open (read with
/// `postgres -C` from the tenant's own configuration, as `MemorySettings` are).
public struct DescriptorSettings: Sendable, Equatable {
    public var maxConnections: Int
    public var autovacuumMaxWorkers: Int
    public var maxWorkerProcesses: Int
    public var maxWalSenders: Int
    public var maxFilesPerProcess: Int

    /// The settings PostgreSQL is read for, by name.
    public static let names = ["max_connections", "autovacuum_max_workers", "max_worker_processes", "max_wal_senders", "max_files_per_process"]

    /// PostgreSQL's max_files_per_process and pgfleet.conf's process counts: what a tenant has
    /// until its own settings have been read.
    public static let tenantDefaults = DescriptorSettings(
        maxConnections: 40, autovacuumMaxWorkers: 3, maxWorkerProcesses: 2, maxWalSenders: 2, maxFilesPerProcess: 1000
    )

    public init(maxConnections: Int, autovacuumMaxWorkers: Int, maxWorkerProcesses: Int, maxWalSenders: Int, maxFilesPerProcess: Int) {
        self.maxConnections = maxConnections
        self.autovacuumMaxWorkers = autovacuumMaxWorkers
        self.maxWorkerProcesses = maxWorkerProcesses
        self.maxWalSenders = maxWalSenders
        self.maxFilesPerProcess = maxFilesPerProcess
    }

    /// From `postgres -C NAME` answers; throws naming a value it cannot read.
    public init(values: [String: String]) throws {
        func count(_ name: String) throws -> Int {
            let text = values[name]?.trimmingCharacters(in: .whitespaces) ?? ""
            guard let value = Int(text), value >= 0 else { throw FleetError.failed("cannot read \(name) = \(text.debugClipped)") }
            return value
        }
        self.init(
            maxConnections: try count("max_connections"), autovacuumMaxWorkers: try count("autovacuum_max_workers"),
            maxWorkerProcesses: try count("max_worker_processes"), maxWalSenders: try count("max_wal_senders"),
            maxFilesPerProcess: try count("max_files_per_process")
        )
    }
}

/// The RLIMIT_NOFILE a tenant's postmaster is started with, and what its processes may hold at
/// most. RLIMIT_NOFILE is a limit per process, inherited by every backend: each PostgreSQL
/// process keeps up to max_files_per_process open (fd.c probes the limit at start and stays
/// below both), so the limit each needs is that plus what it holds outside fd.c's count. The
/// product over its processes is the tenant's worst-case share of the kernel's file table.
public struct DescriptorBudget: Sendable, Equatable {
    /// Descriptors a PostgreSQL process holds besides the files fd.c counts: the ones it
    /// inherits and opens at start (stdio, the postmaster's sockets and pipes, its latch's epoll
    /// and signal descriptors) and fd.c's NUM_RESERVED_FDS (10) for system() and dlopen();
    /// about 20 in a PostgreSQL 15 backend, so 64 leaves room for extensions.
    public static let margin = 64

    /// Every process the postmaster may run at once: its backend slots and its own processes.
    public var processes: Int
    /// What one process may need: max_files_per_process + `margin`.
    public var perProcess: Int
    /// `processes` × `perProcess`.
    public var worstCase: Int
    /// The limit to give: `perProcess`, or less when the daemon's hard limit is lower (raising a
    /// hard limit needs CAP_SYS_RESOURCE, which a container often lacks, even as root).
    public var limit: Int
    /// Set when `limit` is below `perProcess`: what the tenant loses, and the fix.
    public var note: String?

    public init(_ settings: DescriptorSettings, hardLimit: Int) {
        processes = settings.maxConnections + settings.autovacuumMaxWorkers + settings.maxWorkerProcesses + settings.maxWalSenders
            + LimitFit.auxiliaryProcesses
        perProcess = settings.maxFilesPerProcess + Self.margin
        worstCase = processes * perProcess
        limit = max(1, min(perProcess, hardLimit))
        note = limit < perProcess
            ? "the daemon's hard descriptor limit (RLIMIT_NOFILE) is \(hardLimit), below the \(perProcess) each of the tenant's "
                + "\(processes) processes may need (max_files_per_process \(settings.maxFilesPerProcess) + \(Self.margin) of PostgreSQL's own); "
                + "its postmaster runs with \(limit) and PostgreSQL keeps fewer files open per backend (more reopening on many tables). "
                + "Raise the daemon's hard limit to at least \(perProcess) (LimitNOFILE= in its systemd unit, or `ulimit -Hn` before `pgfleet serve`) "
                + "or lower max_files_per_process to \(max(1, limit - Self.margin))"
            : nil
    }
}
