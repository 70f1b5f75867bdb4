import FleetCatalog
import FleetCore
import FleetSystem
import Foundation

extension Fleet {
    /// The size of the tenant's private /dev/shm at a start: its own `--shm`, or its memory limit
    /// (tmpfs pages are charged to its memory cgroup, so it could never hold more), or 1 GB.
    /// `checkShm` has made sure, when the limits were set, that this holds what the settings need.
    static func shmSize(_ limits: TenantLimits) -> UInt64 {
        limits.shmBytes ?? limits.memoryBytes.map { max($0, ShmSizing.base) } ?? ShmSizing.unlimited
    }

    /// Refuses a /dev/shm (given, or derived from the memory limit) that cannot hold the dynamic
    /// shared memory the tenant's settings can ask for (parallel query's hash tables: seed 004).
    func checkShm(_ limits: TenantLimits, settings: MemorySettings) throws {
        guard options.sandbox != nil else { return }
        if let shm = limits.shmBytes, let problem = ShmSizing.problem(settings, shm: shm) {
            throw FleetError.invalidRequest(problem)
        }
        if limits.shmBytes == nil, let memory = limits.memoryBytes, memory < ShmSizing.need(settings),
           let problem = ShmSizing.problem(settings, shm: memory) {
            throw FleetError.invalidRequest(problem.replacingOccurrences(of: "--shm \(ByteSize.format(memory)) cannot", with: "a /dev/shm of the memory limit (--memory \(ByteSize.format(memory))) cannot"))
        }
    }

    /// Bytes in the running tenant's /dev/shm and its size, read through its postmaster's root
    /// (the tmpfs lives in the sandbox's mount namespace); nil unsandboxed.
    static func shmUsage(postmaster pid: Int32) -> (used: UInt64, size: UInt64)? {
        // Exactly there: an exited postmaster's path must not fall back to an ancestor's filesystem.
        FilesystemSpace.at("/proc/\(pid)/root/dev/shm").map { ($0.used, $0.size) }
    }
}
