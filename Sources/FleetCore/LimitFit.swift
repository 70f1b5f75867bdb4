import Foundation

/// The PostgreSQL settings that decide how much memory and how many processes a cluster needs,
/// in bytes and counts (read with `postgres -C` from the tenant's own configuration).
public struct MemorySettings: Sendable, Equatable {
    public var sharedBuffers: UInt64
    /// -1 in postgresql.conf is "1/32 of shared_buffers, 64kB to 16MB": resolved by `init`.
    public var walBuffers: UInt64
    public var maxConnections: Int
    public var autovacuumMaxWorkers: Int
    public var maxWorkerProcesses: Int
    public var maxWalSenders: Int
    public var maxPreparedTransactions: Int
    public var maxLocksPerTransaction: Int
    public var workMem: UInt64
    public var hashMemMultiplier: Double
    public var maintenanceWorkMem: UInt64
    /// Nil: autovacuum uses maintenance_work_mem.
    public var autovacuumWorkMem: UInt64?
    public var blockSize: UInt64
    /// Parallel query's workers: they share the hash tables and queues of a query in dynamic
    /// shared memory, which lives in /dev/shm (`ShmSizing`).
    public var maxParallelWorkers: Int
    public var maxParallelWorkersPerGather: Int

    /// The settings PostgreSQL is read for, by name.
    public static let names = [
        "shared_buffers", "wal_buffers", "max_connections", "autovacuum_max_workers", "max_worker_processes", "max_wal_senders",
        "max_prepared_transactions", "max_locks_per_transaction", "work_mem", "hash_mem_multiplier", "maintenance_work_mem",
        "autovacuum_work_mem", "block_size", "max_parallel_workers", "max_parallel_workers_per_gather",
    ]

    public init(
        sharedBuffers: UInt64 = 128 << 20, walBuffers: UInt64? = nil, maxConnections: Int = 100, autovacuumMaxWorkers: Int = 3,
        maxWorkerProcesses: Int = 8, maxWalSenders: Int = 10, maxPreparedTransactions: Int = 0, maxLocksPerTransaction: Int = 64,
        workMem: UInt64 = 4 << 20, hashMemMultiplier: Double = 2, maintenanceWorkMem: UInt64 = 64 << 20, autovacuumWorkMem: UInt64? = nil,
        blockSize: UInt64 = 8192, maxParallelWorkers: Int = 8, maxParallelWorkersPerGather: Int = 2
    ) {
        self.maxParallelWorkers = maxParallelWorkers
        self.maxParallelWorkersPerGather = maxParallelWorkersPerGather
        self.sharedBuffers = sharedBuffers
        self.walBuffers = walBuffers ?? min(max(sharedBuffers / 32, 64 << 10), 16 << 20)
        self.maxConnections = maxConnections
        self.autovacuumMaxWorkers = autovacuumMaxWorkers
        self.maxWorkerProcesses = maxWorkerProcesses
        self.maxWalSenders = maxWalSenders
        self.maxPreparedTransactions = maxPreparedTransactions
        self.maxLocksPerTransaction = maxLocksPerTransaction
        self.workMem = workMem
        self.hashMemMultiplier = hashMemMultiplier
        self.maintenanceWorkMem = maintenanceWorkMem
        self.autovacuumWorkMem = autovacuumWorkMem
        self.blockSize = blockSize
    }

    /// From `postgres -C NAME` answers, which are in each setting's base unit ("16384" 8 kB blocks
    /// of shared_buffers, "4096" kB of work_mem, "-1" for automatic); SHOW's "128MB" is read too.
    /// Throws naming a value it cannot read.
    public init(values: [String: String]) throws {
        func text(_ name: String) throws -> String {
            guard let value = values[name]?.trimmingCharacters(in: .whitespaces), !value.isEmpty else {
                throw FleetError.failed("PostgreSQL did not report \(name)")
            }
            return value
        }
        guard let blockSize = UInt64(try text("block_size")), blockSize > 0 else { throw FleetError.failed("cannot read block_size") }
        func bytes(_ name: String) throws -> UInt64? {
            let value = try text(name)
            if value == "-1" { return nil }
            let unit: UInt64 = ["shared_buffers", "wal_buffers"].contains(name) ? blockSize : 1024
            if let raw = UInt64(value) {
                let (bytes, overflow) = raw.multipliedReportingOverflow(by: unit)
                if !overflow { return bytes }
            } else if let bytes = PostgresUnits.bytes(value) {
                return bytes
            }
            throw FleetError.failed("cannot read \(name) = \(value.debugClipped)")
        }
        func count(_ name: String) throws -> Int {
            guard let value = Int(try text(name)) else { throw FleetError.failed("cannot read \(name) = \(try text(name).debugClipped)") }
            return value
        }
        guard let multiplier = Double(try text("hash_mem_multiplier")) else { throw FleetError.failed("cannot read hash_mem_multiplier") }
        guard let sharedBuffers = try bytes("shared_buffers"), let workMem = try bytes("work_mem"),
              let maintenance = try bytes("maintenance_work_mem") else {
            throw FleetError.failed("shared_buffers, work_mem and maintenance_work_mem must have values")
        }
        self.init(
            sharedBuffers: sharedBuffers, walBuffers: try bytes("wal_buffers"), maxConnections: try count("max_connections"),
            autovacuumMaxWorkers: try count("autovacuum_max_workers"), maxWorkerProcesses: try count("max_worker_processes"),
            maxWalSenders: try count("max_wal_senders"), maxPreparedTransactions: try count("max_prepared_transactions"),
            maxLocksPerTransaction: try count("max_locks_per_transaction"), workMem: workMem, hashMemMultiplier: multiplier,
            maintenanceWorkMem: maintenance, autovacuumWorkMem: try bytes("autovacuum_work_mem"), blockSize: blockSize,
            maxParallelWorkers: try count("max_parallel_workers"), maxParallelWorkersPerGather: try count("max_parallel_workers_per_gather")
        )
    }

    /// Every process slot PostgreSQL reserves shared memory for (its MaxBackends, plus the launcher).
    public var processSlots: Int { maxConnections + autovacuumMaxWorkers + 1 + maxWorkerProcesses + maxWalSenders }
}

/// Whether a tenant's settings fit its limits: the arithmetic behind `--memory` and `--pids`.
public enum LimitFit {
    /// A backend's own memory before it runs a query (catalog caches, its stack): about 1.5 to
    /// 2.5 MB for an idle PostgreSQL 15 backend's private pages; the larger figure is taken.
    public static let backendBaseline: UInt64 = 2 << 20
    /// The postmaster's own processes besides backends: checkpointer, background writer, WAL
    /// writer, autovacuum launcher, logical replication launcher, the postmaster itself.
    public static let auxiliaryProcesses = 6

    /// Shared memory as PostgreSQL allocates it at start-up, a little over rather than under:
    /// the manuals' old table ("PostgreSQL Shared Memory Usage": 208 bytes per buffer, 270 per
    /// lock) is too low for today's servers, so the figures are fitted to what PostgreSQL 15
    /// itself reports (`postgres -C shared_memory_size`): 143 MB for its defaults (this gives 145),
    /// 21 for pgfleet's tenant defaults (21), 1074 for shared_buffers = 1GB (1088), 38 for 400
    /// connections (40), 35 for max_locks_per_transaction = 640 (36). Per shared buffer: the block
    /// and 320 bytes of descriptor, hash and checkpoint entries; per process slot 25 kB and 390
    /// bytes per lock it may hold; per prepared transaction the locks; 2 MB fixed.
    public static func sharedMemory(_ s: MemorySettings) -> UInt64 {
        let locks = UInt64(max(0, s.maxLocksPerTransaction))
        let slots = UInt64(max(0, s.processSlots)) * (25 * 1024 + 390 * locks)
        let prepared = UInt64(max(0, s.maxPreparedTransactions)) * (1024 + 390 * locks)
        let buffers = (s.sharedBuffers / s.blockSize) * (s.blockSize + 320)
        let wal = (s.walBuffers / s.blockSize) * (s.blockSize + 8)
        return slots + prepared + buffers + wal + (2 << 20)
    }

    public struct Memory: Sendable, Equatable {
        public var shared: UInt64
        public var auxiliary: UInt64
        public var oneQuery: UInt64
        public var maintenance: UInt64
        public var needed: UInt64 { shared + auxiliary + oneQuery + maintenance }
        /// Connections each running one sort or hash that fit beside the rest.
        public var busyConnections: Int
    }

    /// What the cluster needs at the least to run in `limit`: its shared memory, its own
    /// processes, one query's work_mem (× hash_mem_multiplier) and one VACUUM's maintenance memory.
    public static func memory(_ s: MemorySettings, limit: UInt64) -> Memory {
        let query = UInt64(Double(s.workMem) * max(1, s.hashMemMultiplier))
        var memory = Memory(
            shared: sharedMemory(s), auxiliary: UInt64(auxiliaryProcesses) * backendBaseline, oneQuery: query,
            maintenance: s.autovacuumWorkMem ?? s.maintenanceWorkMem, busyConnections: 0
        )
        let left = limit > memory.needed ? limit - memory.needed + query : 0
        memory.busyConnections = Int(left / (backendBaseline + query))
        return memory
    }

    /// Nil when the settings fit in `limit`; otherwise why not, with the arithmetic.
    public static func memoryProblem(_ s: MemorySettings, limit: UInt64) -> String? {
        let m = memory(s, limit: limit)
        guard m.needed > limit else { return nil }
        let f = ByteSize.format
        let megabyte: UInt64 = 1 << 20
        let excess = m.needed - limit
        // What to lower: the largest of the terms a setting moves (not always shared_buffers).
        let maintenanceName = s.autovacuumWorkMem == nil ? "maintenance_work_mem" : "autovacuum_work_mem"
        let advice: String
        if s.sharedBuffers >= m.maintenance && s.sharedBuffers >= m.oneQuery {
            let suggestion = max(UInt64(128) << 10, limit / 4 / megabyte * megabyte)
            advice = "lower shared_buffers (e.g. shared_buffers=\(f(suggestion)), a quarter of the limit)"
        } else if m.maintenance >= m.oneQuery, m.maintenance > excess + megabyte {
            advice = "lower \(maintenanceName) (e.g. \(maintenanceName)=\(f((m.maintenance - excess) / megabyte * megabyte)))"
        } else if m.oneQuery > excess + megabyte {
            let workMem = UInt64(Double(m.oneQuery - excess) / max(1, s.hashMemMultiplier)) / megabyte * megabyte
            advice = "lower work_mem (e.g. work_mem=\(f(max(megabyte, workMem))))"
        } else {
            advice = "lower shared_buffers, \(maintenanceName) or work_mem"
        }
        return "the memory limit \(f(limit)) is too small for these settings, which need \(f(m.needed)): "
            + "shared memory \(f(m.shared)) (shared_buffers \(f(s.sharedBuffers)), wal_buffers \(f(s.walBuffers)), \(s.processSlots) process slots) "
            + "+ \(auxiliaryProcesses) background processes × \(f(backendBaseline)) "
            + "+ one query's work_mem \(f(s.workMem)) × hash_mem_multiplier \(formatted(s.hashMemMultiplier)) = \(f(m.oneQuery)) "
            + "+ one vacuum's \(s.autovacuumWorkMem == nil ? "maintenance_work_mem" : "autovacuum_work_mem") \(f(m.maintenance)); "
            + "\(advice) with `pgfleet tenant set`, or give a limit of at least \(f((m.needed + megabyte - 1) / megabyte * megabyte))"
    }

    /// A note when the limit leaves room for fewer busy connections than max_connections allows.
    public static func memoryNote(_ s: MemorySettings, limit: UInt64) -> String? {
        let m = memory(s, limit: limit)
        guard m.needed <= limit, m.busyConnections < s.maxConnections else { return nil }
        return "the memory limit \(ByteSize.format(limit)) leaves room for about \(m.busyConnections) of max_connections \(s.maxConnections) "
            + "connections each running a sort (\(ByteSize.format(backendBaseline)) + \(ByteSize.format(m.oneQuery)) each); "
            + "beyond that the kernel ends the largest backend inside the tenant, and the postmaster recovers"
    }

    /// Processes PostgreSQL may run at once with these settings.
    public static func processes(_ s: MemorySettings) -> Int { s.processSlots + auxiliaryProcesses }

    /// Nil when `pids` leaves room for every process PostgreSQL may start, and a few more for
    /// `COPY … TO PROGRAM` and archive commands.
    public static func pidsProblem(_ s: MemorySettings, pids: Int) -> String? {
        let needed = processes(s) + 4
        guard pids < needed else { return nil }
        return "the process limit \(pids) is too small: PostgreSQL may run \(processes(s)) processes (max_connections \(s.maxConnections) "
            + "+ autovacuum_max_workers \(s.autovacuumMaxWorkers) + max_worker_processes \(s.maxWorkerProcesses) "
            + "+ max_wal_senders \(s.maxWalSenders) + \(auxiliaryProcesses + 1) of its own), and 4 more are kept for programs it runs; "
            + "give at least --pids \(needed) or lower max_connections"
    }

    private static func formatted(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(value)
    }
}

/// PostgreSQL's memory units as `postgres -C` and `SHOW` print them: `kB`, `MB`, `GB`, `TB`
/// (of 1024), and a bare number of bytes.
public enum PostgresUnits {
    public static func bytes(_ text: String) -> UInt64? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let digits = trimmed.prefix { $0.isNumber }
        guard let number = UInt64(digits) else { return nil }
        let shift: UInt64
        switch trimmed.dropFirst(digits.count) {
        case "", "B": shift = 0
        case "kB": shift = 10
        case "MB": shift = 20
        case "GB": shift = 30
        case "TB": shift = 40
        default: return nil
        }
        let (value, overflow) = number.multipliedReportingOverflow(by: 1 << shift)
        return overflow ? nil : value
    }
}
