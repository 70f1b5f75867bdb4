/// The size of a tenant's private /dev/shm. PostgreSQL puts dynamic shared memory there
/// (`dynamic_shared_memory_type = posix`): parallel query's shared hash tables, tuple queues and
/// its cumulative statistics. Docker's 64 MB default is the trap of seed 004: a parallel hash join
/// fails with "could not resize shared memory segment … No space left on device". A tmpfs only
/// caps: its pages are allocated when written and charged to the tenant's memory cgroup, so a
/// generous size costs nothing until it is used, and can never hold more than the memory limit.
public enum ShmSizing {
    /// Beside parallel query: the statistics' segments and what an extension may make.
    public static let base: UInt64 = 8 << 20
    /// Without a memory limit, and at least: what the sandbox always gave before (1 GB).
    public static let unlimited: UInt64 = 1 << 30

    /// The most dynamic shared memory parallel query can hold at once with these settings: every
    /// worker (`max_parallel_workers`, within `max_worker_processes`) and the leader of each
    /// query it serves contribute `work_mem × hash_mem_multiplier` to a Parallel Hash, and each
    /// parallel query keeps about 1 MB of queues and state.
    public static func parallelNeed(_ s: MemorySettings) -> UInt64 {
        let workers = max(0, min(s.maxParallelWorkers, s.maxWorkerProcesses))
        let perGather = max(0, min(s.maxParallelWorkersPerGather, workers))
        guard workers > 0, perGather > 0 else { return 0 }
        // At most `workers` queries run in parallel at once (each has a worker), so at most twice
        // that many participants.
        let participants = UInt64(2 * workers)
        let share = UInt64(Double(s.workMem) * max(1, s.hashMemMultiplier))
        return participants * share + UInt64(workers) * (1 << 20)
    }

    public static func need(_ s: MemorySettings) -> UInt64 { parallelNeed(s) + base }

    /// The size given when the tenant names none: its memory limit (the most it could ever hold),
    /// or 1 GB, and never less than its settings need.
    public static func derived(_ s: MemorySettings, memoryLimit: UInt64?) -> UInt64 {
        max(memoryLimit ?? unlimited, need(s))
    }

    /// Why an explicit `--shm` cannot work with these settings, with the arithmetic; nil when it can.
    public static func problem(_ s: MemorySettings, shm: UInt64) -> String? {
        let need = need(s)
        guard shm < need else { return nil }
        let f = ByteSize.format
        let workers = max(0, min(s.maxParallelWorkers, s.maxWorkerProcesses))
        let parallel = parallelNeed(s) == 0
            ? "parallel query is off"
            : "parallel query's hash tables and queues: 2 × \(workers) workers (max_parallel_workers \(s.maxParallelWorkers), max_worker_processes \(s.maxWorkerProcesses)) "
                + "× work_mem \(f(s.workMem)) × hash_mem_multiplier \(formatted(s.hashMemMultiplier)) + \(workers) MB = \(f(parallelNeed(s)))"
        return "--shm \(f(shm)) cannot hold the tenant's dynamic shared memory: \(parallel), + \(f(base)) for statistics and extensions = \(f(need)). "
            + "Give --shm \(f(roundedUp(need))) or more, or lower work_mem or max_parallel_workers_per_gather (0 turns parallel query off)"
    }

    static func roundedUp(_ bytes: UInt64) -> UInt64 { (bytes + (1 << 20) - 1) / (1 << 20) * (1 << 20) }

    static func formatted(_ value: Double) -> String {
        value == value.rounded() ? "\(Int(value))" : "\(value)"
    }
}
