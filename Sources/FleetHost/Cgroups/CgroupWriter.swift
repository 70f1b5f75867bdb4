import FleetCore
import Foundation

/// What each limit is on cgroup v2 and on v1: the one place that knows the files.
enum CgroupWriter {
    /// The CFS period both versions use: quota = cores × period.
    static let period = 100_000

    static func cpu(_ millicores: Int?, version: CgroupHierarchy.Version, directory: String) throws {
        let quota = millicores.map { $0 * period / 1000 }
        switch version {
        case .v2:
            try CgroupFiles.write(quota.map { "\($0) \(period)" } ?? "max \(period)", to: directory + "/cpu.max")
        case .v1:
            try CgroupFiles.write(String(period), to: directory + "/cpu.cfs_period_us")
            try CgroupFiles.write(quota.map(String.init) ?? "-1", to: directory + "/cpu.cfs_quota_us")
        }
    }

    /// The limit is of RAM: no swap beside it where the kernel accounts swap (v2's
    /// memory.swap.max = 0; v1's memory.memsw.limit_in_bytes equal to the limit).
    static func memory(_ bytes: UInt64?, version: CgroupHierarchy.Version, directory: String) throws {
        switch version {
        case .v2:
            try CgroupFiles.write(bytes.map(String.init) ?? "max", to: directory + "/memory.max")
            let swap = directory + "/memory.swap.max"
            if FileManager.default.fileExists(atPath: swap) { try CgroupFiles.write(bytes == nil ? "max" : "0", to: swap) }
        case .v1:
            let limit = directory + "/memory.limit_in_bytes"
            let memsw = directory + "/memory.memsw.limit_in_bytes"
            let value = bytes.map(String.init) ?? "-1"
            guard FileManager.default.fileExists(atPath: memsw) else {
                try CgroupFiles.write(value, to: limit)
                return
            }
            // The kernel keeps memsw >= limit at every step: raise memsw first, lower it last.
            let current = CgroupFiles.number(limit) ?? UInt64.max
            if bytes == nil || bytes! > current {
                try CgroupFiles.write(value, to: memsw)
                try CgroupFiles.write(value, to: limit)
            } else {
                try CgroupFiles.write(value, to: limit)
                try CgroupFiles.write(value, to: memsw)
            }
        }
    }

    static func pids(_ count: Int?, directory: String) throws {
        try CgroupFiles.write(count.map(String.init) ?? "max", to: directory + "/pids.max")
    }

    /// v2 `io.weight` takes 1–10000 (100 is the default share); v1's `blkio.weight` (or
    /// `blkio.bfq.weight`) takes 10–1000 with 500 the default, so the v2 weight is scaled by 5
    /// around the defaults and clamped. Returns a note when the kernel offers no weight here
    /// (on v1 the files exist only with the CFQ or BFQ I/O scheduler).
    static func ioWeight(_ weight: Int, version: CgroupHierarchy.Version, directory: String) throws -> String? {
        switch version {
        case .v2:
            for file in ["io.weight", "io.bfq.weight"] where FileManager.default.fileExists(atPath: directory + "/" + file) {
                try CgroupFiles.write(file == "io.weight" ? "default \(weight)" : String(weight), to: directory + "/" + file)
                return nil
            }
        case .v1:
            let scaled = min(1000, max(10, weight * 5))
            for file in ["blkio.weight", "blkio.bfq.weight"] where FileManager.default.fileExists(atPath: directory + "/" + file) {
                try CgroupFiles.write(String(scaled), to: directory + "/" + file)
                return nil
            }
        }
        return "--io-weight is not enforced: this kernel offers no I/O weight in the \(version == .v2 ? "io" : "blkio") controller "
            + "(it needs the BFQ I/O scheduler on the tenants' disk\(version == .v1 ? ", or CFQ" : ""))"
    }
}

/// Reading and writing cgroup control files; every failure names the file and the value.
extension CgroupWriter {
    /// Huge pages of one size: the usage limit and the reservation limit, both to `bytes`. The
    /// reservation limit is what makes an over-commit fail at mmap (PostgreSQL's `try` then
    /// falls back to normal pages) rather than in SIGBUS at the first touch of a page.
    static func hugetlb(_ bytes: UInt64, sizeName: String, version: CgroupHierarchy.Version, directory: String) throws {
        switch version {
        case .v2:
            // The reservation limit first: lowering the usage limit under a live reservation fails.
            try CgroupFiles.write(String(bytes), to: directory + "/hugetlb.\(sizeName).rsvd.max")
            try CgroupFiles.write(String(bytes), to: directory + "/hugetlb.\(sizeName).max")
        case .v1:
            try CgroupFiles.write(String(bytes), to: directory + "/hugetlb.\(sizeName).rsvd.limit_in_bytes")
            try CgroupFiles.write(String(bytes), to: directory + "/hugetlb.\(sizeName).limit_in_bytes")
        }
    }

    static func hugetlbUsage(sizeName: String, version: CgroupHierarchy.Version, directory: String) -> (used: UInt64?, limit: UInt64?) {
        switch version {
        case .v2:
            let limit = (try? String(contentsOfFile: directory + "/hugetlb.\(sizeName).rsvd.max", encoding: .utf8))
                .flatMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            return (CgroupFiles.number(directory + "/hugetlb.\(sizeName).current"), limit)
        case .v1:
            return (
                CgroupFiles.number(directory + "/hugetlb.\(sizeName).usage_in_bytes"),
                CgroupFiles.number(directory + "/hugetlb.\(sizeName).rsvd.limit_in_bytes")
            )
        }
    }
}

enum CgroupFiles {
    static func write(_ value: String, to path: String) throws {
        // O_TRUNC as a shell's `echo >` does: cgroupfs ignores it; a plain file (a test's) needs it.
        let fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC)
        guard fd >= 0 else { throw failure("open", path, value) }
        defer { close(fd) }
        let written = value.withCString { pointer in Glibc.write(fd, pointer, strlen(pointer)) }
        guard written >= 0 else { throw failure("write", path, value) }
    }

    private static func failure(_ what: String, _ path: String, _ value: String) -> FleetError {
        let code = errno
        var reason = String(cString: strerror(code))
        if code == EBUSY && path.hasSuffix("limit_in_bytes") { reason += " (the tenant uses more than that now)" }
        return FleetError.failed("cgroup: cannot \(what) \(path) (writing \"\(value)\"): \(reason)")
    }

    static func makeDirectory(_ path: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw FleetError.failed("cgroup: cannot create \(path): \(error.localizedDescription)")
        }
    }

    static func number(_ path: String) -> UInt64? {
        (try? String(contentsOfFile: path, encoding: .utf8)).flatMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// The value of `key` in a flat-keyed file (`oom_kill 3`, `usage_usec 123`).
    static func keyed(_ path: String, _ key: String) -> UInt64? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, parts[0] == key { return UInt64(parts[1]) }
        }
        return nil
    }

    static func processes(in directory: String) -> [pid_t] {
        ((try? String(contentsOfFile: directory + "/cgroup.procs", encoding: .utf8)) ?? "").split(separator: "\n").compactMap { pid_t($0) }
    }
}
