import CFleetSys
import Foundation

/// What /proc says about a process.
public enum ProcFS {
    public static func isAlive(_ pid: pid_t) -> Bool {
        pid > 0 && (kill(pid, 0) == 0 || errno == EPERM)
    }

    public static func executable(of pid: pid_t) -> String? {
        try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")
    }

    public static func workingDirectory(of pid: pid_t) -> String? {
        try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd")
    }

    /// The parent pid and state letter from /proc/PID/stat.
    public static func stat(of pid: pid_t) -> (state: Character, parent: pid_t)? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 2, let state = fields[0].first, let parent = pid_t(fields[1]) else { return nil }
        return (state, parent)
    }

    /// Whether this process holds a capability (`CapEff` of /proc/self/status), e.g. 24,
    /// CAP_SYS_RESOURCE, which lowering an OOM score needs.
    public static func hasCapability(_ bit: Int) -> Bool {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }),
              let mask = UInt64(line.dropFirst("CapEff:".count).trimmingCharacters(in: .whitespaces), radix: 16) else { return false }
        return mask & (1 << UInt64(bit)) != 0
    }

    /// Pids of processes whose real uid is `uid`.
    public static func processes(ofUID uid: uid_t) -> [pid_t] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return entries.compactMap { entry -> pid_t? in
            guard let pid = pid_t(entry),
                  let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
                  let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Uid:") }) else { return nil }
            let ids = line.split(whereSeparator: { $0 == "\t" || $0 == " " })
            return ids.count > 1 && ids[1] == String(uid) ? pid : nil
        }
    }
}

/// A data directory's `postmaster.pid`, which tells whether a postmaster owns it.
public struct PostmasterPID: Sendable, Equatable {
    public var pid: pid_t
    public var dataDirectory: String
    public var socketDirectory: String?

    public static func read(dataDirectory: String) -> PostmasterPID? {
        guard let text = try? String(contentsOfFile: dataDirectory + "/postmaster.pid", encoding: .utf8) else { return nil }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let first = lines.first, let pid = pid_t(first.trimmingCharacters(in: .whitespaces)), pid > 0 else { return nil }
        return PostmasterPID(
            pid: pid,
            dataDirectory: lines.count > 1 ? lines[1] : dataDirectory,
            socketDirectory: lines.count > 4 ? lines[4] : nil
        )
    }

    /// True when `pid` really is this data directory's postmaster: alive, running a postgres
    /// binary, with the data directory as its working directory (the postmaster chdirs there).
    /// A recycled pid that now belongs to something else fails this.
    public func isLivePostmaster(expectedDataDirectory: String) -> Bool {
        guard ProcFS.isAlive(pid), let exe = ProcFS.executable(of: pid), exe.hasSuffix("/postgres"),
              let cwd = ProcFS.workingDirectory(of: pid) else { return false }
        let expected = (expectedDataDirectory as NSString).resolvingSymlinksInPath
        return cwd == expected || cwd == expectedDataDirectory
    }
}

public enum ResourceLimits {
    /// A proxy holds two descriptors per client: the default soft limit of 1024 would cap it at
    /// about 500 clients. Raises the soft limit to the hard one and returns it.
    @discardableResult
    public static func raiseFileLimit() -> Int { pgf_raise_nofile() }

    /// This process's RLIMIT_NOFILE (RLIM_INFINITY, all ones, reads as Int.max).
    public static func fileLimits() -> (soft: Int, hard: Int) {
        var limits = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limits) == 0 else { return (Int.max, Int.max) }
        func value(_ limit: rlim_t) -> Int { limit > rlim_t(Int.max) ? Int.max : Int(limit) }
        return (value(limits.rlim_cur), value(limits.rlim_max))
    }

    /// Descriptors this process has open. Linux 6.2 and later report the count as the size of
    /// /proc/self/fd (one stat, no listing); older kernels report 0 and the directory is counted.
    public static func openDescriptors() -> Int? {
        var info = stat()
        if stat("/proc/self/fd", &info) == 0, info.st_size > 0 { return Int(info.st_size) }
        guard let directory = opendir("/proc/self/fd") else { return nil }
        defer { closedir(directory) }
        var count = -1  // the listing's own descriptor
        while let entry = readdir(directory) {
            if withUnsafeBytes(of: entry.pointee.d_name, { $0.first }) != UInt8(ascii: ".") { count += 1 }
        }
        return max(0, count)
    }
}
