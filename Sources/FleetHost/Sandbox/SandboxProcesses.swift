import FleetCore
import FleetSystem
import Foundation

/// Parsers of /proc text, pure so they are tested with fixtures.
public enum ProcText {
    /// `/proc/PID/task/PID/children`: space-separated pids, a trailing space.
    public static func children(_ text: String) -> [pid_t] {
        text.split(whereSeparator: { $0 == " " || $0 == "\n" }).compactMap { pid_t($0) }.filter { $0 > 0 }
    }

    /// The `NSpid:` line of /proc/PID/status: the pid in each PID namespace from the reader's
    /// outward-in, so `first` is the host's pid and `last` the pid the process sees itself as.
    /// Nil when there is no such line (kernels before 4.1).
    public static func nsPIDs(status text: String) -> [pid_t]? {
        guard let values = field("NSpid:", in: text) else { return nil }
        let pids = values.compactMap { pid_t($0) }
        return pids.isEmpty || pids.count != values.count ? nil : pids
    }

    /// The real uid from the `Uid:` line of /proc/PID/status.
    public static func realUID(status text: String) -> uid_t? {
        field("Uid:", in: text)?.first.flatMap { uid_t($0) }
    }

    /// The fields of /proc/PID/stat after `comm`, which may itself hold spaces and parentheses,
    /// so the split starts after the last ')'. `fields[0]` is field 3 (state).
    static func statFields(_ text: String) -> [Substring]? {
        guard let close = text.lastIndex(of: ")") else { return nil }
        return text[text.index(after: close)...].split(whereSeparator: { $0 == " " || $0 == "\n" })
    }

    /// Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot. With the
    /// pid it names one process for the whole uptime: a recycled pid has a later start time.
    public static func startTime(stat text: String) -> UInt64? {
        guard let fields = statFields(text), fields.count > 19 else { return nil }
        return UInt64(fields[19])
    }

    /// Field 4 of /proc/PID/stat.
    public static func parent(stat text: String) -> pid_t? {
        guard let fields = statFields(text), fields.count > 1 else { return nil }
        return pid_t(fields[1])
    }

    private static func field(_ name: String, in text: String) -> [Substring]? {
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name) }) else { return nil }
        return line.dropFirst(name.count).split(whereSeparator: { $0 == "\t" || $0 == " " })
    }
}

/// What /proc says about one process, read once, so the decisions about it are pure.
public struct ProcessReading: Sendable, Equatable {
    public var pid: pid_t
    public var parent: pid_t
    public var uid: uid_t
    public var executable: String
    public var workingDirectory: String
    /// Host pid first, the pid inside its innermost PID namespace last.
    public var nsPIDs: [pid_t]
    public var startTime: UInt64

    public init(pid: pid_t, parent: pid_t, uid: uid_t, executable: String, workingDirectory: String, nsPIDs: [pid_t], startTime: UInt64) {
        self.pid = pid
        self.parent = parent
        self.uid = uid
        self.executable = executable
        self.workingDirectory = workingDirectory
        self.nsPIDs = nsPIDs
        self.startTime = startTime
    }

    /// Nil when the process is gone (or half gone: a zombie has no exe or cwd).
    public static func read(_ pid: pid_t, root: HostRoot = .real) -> ProcessReading? {
        let base = "proc/\(pid)"
        guard let status = root.read(base + "/status"), let stat = root.read(base + "/stat"),
              let nsPIDs = ProcText.nsPIDs(status: status), let uid = ProcText.realUID(status: status),
              let parent = ProcText.parent(stat: stat), let start = ProcText.startTime(stat: stat),
              let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: root.resolve(base + "/exe")),
              let cwd = try? FileManager.default.destinationOfSymbolicLink(atPath: root.resolve(base + "/cwd"))
        else { return nil }
        return ProcessReading(pid: pid, parent: parent, uid: uid, executable: exe, workingDirectory: cwd, nsPIDs: nsPIDs, startTime: start)
    }

    /// `exe` of a process whose binary was replaced on disk reads "PATH (deleted)"; it is still
    /// the same process.
    public var executablePath: String {
        executable.hasSuffix(" (deleted)") ? String(executable.dropLast(" (deleted)".count)) : executable
    }
}

/// Why a process is, or is not, a data directory's sandboxed postmaster.
public enum SandboxedPostmasterVerdict: Sendable, Equatable {
    case postmaster
    case notInPIDNamespace
    case namespacePIDDiffers(lockFile: pid_t, process: pid_t)
    case notPostgres(String)
    case otherWorkingDirectory(String)
    case otherDataDirectory(String)
    case otherUser(uid_t)
    case startedAtOtherTime(expected: UInt64, actual: UInt64)
}

/// The postmaster of a sandbox, seen from the host: bwrap B execs in the launcher's child,
/// B's child is the sandbox's pid 1 (the init shell), and its child with namespace pid 2 is the
/// postmaster M. postmaster.pid's first line is M's pid inside (2), never the host's.
public enum SandboxProcesses {
    /// The pid M has inside its namespace: the first child of the sandbox's pid 1.
    public static let postmasterNamespacePID: pid_t = 2

    public static func children(of pid: pid_t, root: HostRoot = .real) -> [pid_t]? {
        root.read("proc/\(pid)/task/\(pid)/children").map(ProcText.children)
    }

    /// The sandbox's pid 1, host pid: B's only child.
    public static func sandboxInit(ofBwrap bwrap: pid_t, root: HostRoot = .real) -> pid_t? {
        children(of: bwrap, root: root)?.first
    }

    /// M's host pid from B's, or nil while the sandbox is still being set up (or is gone). M
    /// is the init's child whose namespace pid is 2; others there are orphans the init reaps.
    public static func postmaster(ofBwrap bwrap: pid_t, root: HostRoot = .real) -> pid_t? {
        guard let initPID = sandboxInit(ofBwrap: bwrap, root: root), let candidates = children(of: initPID, root: root) else { return nil }
        return candidates.first { pid in
            root.read("proc/\(pid)/status").flatMap { ProcText.nsPIDs(status: $0) }?.last == postmasterNamespacePID
        }
    }

    /// Polls until M exists (bwrap sets up its mounts first: about 15 ms here), B exits, or
    /// `timeout` passes. Polling, because nothing tells us when a grandchild appears.
    public static func waitForPostmaster(ofBwrap bwrap: pid_t, timeout: Duration = .seconds(10), root: HostRoot = .real) async -> pid_t? {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            if let pid = postmaster(ofBwrap: bwrap, root: root) { return pid }
            let state = root.read("proc/\(bwrap)/stat").flatMap { ProcText.statFields($0)?.first }
            guard let state, state != "Z" else { return nil }
            try? await Task.sleep(for: .milliseconds(2))
        }
        return nil
    }

    /// Is `process` the sandboxed postmaster of `dataDirectory`, whose postmaster.pid says
    /// `lockFile`? All must hold: it lives in a PID namespace of its own and is the pid the lock
    /// file names there, runs postgres, works in the data directory, runs as the tenant, and (when
    /// the daemon recorded it at start) started at the same tick. A stranger that got the
    /// recorded host pid fails on the start time; any process outside a sandbox on the pid
    /// namespace check.
    public static func verdict(
        _ process: ProcessReading, lockFile: PostmasterLockFile, dataDirectory: String,
        uid: uid_t? = nil, expectedStartTime: UInt64? = nil
    ) -> SandboxedPostmasterVerdict {
        guard process.nsPIDs.count >= 2, let inside = process.nsPIDs.last else { return .notInPIDNamespace }
        guard inside == lockFile.pid else { return .namespacePIDDiffers(lockFile: lockFile.pid, process: inside) }
        guard (process.executablePath as NSString).lastPathComponent == "postgres" else { return .notPostgres(process.executable) }
        let wanted = SandboxPlan.normalized(dataDirectory)
        guard SandboxPlan.normalized(process.workingDirectory) == wanted else { return .otherWorkingDirectory(process.workingDirectory) }
        guard SandboxPlan.normalized(lockFile.dataDirectory) == wanted else { return .otherDataDirectory(lockFile.dataDirectory) }
        if let uid, process.uid != uid { return .otherUser(process.uid) }
        if let expectedStartTime, process.startTime != expectedStartTime {
            return .startedAtOtherTime(expected: expectedStartTime, actual: process.startTime)
        }
        return .postmaster
    }

    /// Re-adoption without a recorded pid: the one process of `uid` that is the sandboxed
    /// postmaster of `dataDirectory`, or nil (no postmaster.pid, none alive, or no match).
    public static func findPostmaster(dataDirectory: String, uid: uid_t, root: HostRoot = .real) -> ProcessReading? {
        guard let text = root.read(SandboxPlan.normalized(dataDirectory) + "/postmaster.pid"),
              let lockFile = PostmasterLockFile.parse(text),
              let entries = try? FileManager.default.contentsOfDirectory(atPath: root.resolve("proc")) else { return nil }
        for entry in entries {
            guard let pid = pid_t(entry), let status = root.read("proc/\(pid)/status"), ProcText.realUID(status: status) == uid,
                  ProcText.nsPIDs(status: status)?.last == lockFile.pid, let reading = ProcessReading.read(pid, root: root)
            else { continue }
            if verdict(reading, lockFile: lockFile, dataDirectory: dataDirectory, uid: uid) == .postmaster { return reading }
        }
        return nil
    }
}

/// postmaster.pid's first lines. Inside a sandbox line 1 is the postmaster's pid in its own
/// namespace (2); the data and socket directories are the host's paths too, because the tenant
/// directory is bound at its own path.
public struct PostmasterLockFile: Sendable, Equatable {
    public var pid: pid_t
    public var dataDirectory: String
    public var socketDirectory: String?

    public init(pid: pid_t, dataDirectory: String, socketDirectory: String? = nil) {
        self.pid = pid
        self.dataDirectory = dataDirectory
        self.socketDirectory = socketDirectory
    }

    public static func parse(_ text: String) -> PostmasterLockFile? {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard lines.count > 1, let pid = pid_t(lines[0].trimmingCharacters(in: .whitespaces)), pid > 0, !lines[1].isEmpty else { return nil }
        return PostmasterLockFile(pid: pid, dataDirectory: lines[1], socketDirectory: lines.count > 4 && !lines[4].isEmpty ? lines[4] : nil)
    }
}

/// How bwrap reports its command's end: as its own exit code, 128 + N when the command was
/// killed by signal N (B itself always exits normally).
public enum SandboxExit {
    public static func commandStatus(fromBwrap status: ExitStatus) -> ExitStatus {
        if case .exited(let code) = status, code > 128, code < 128 + 65 { return .signaled(code - 128) }
        return status
    }
}

extension SandboxHostLayout {
    /// Reads which of /bin, /lib, … exist on this host and whether they are symlinks.
    public static func read(root: HostRoot = .real) -> SandboxHostLayout {
        var entries: [Entry] = []
        for path in rootDirectories {
            let full = root.resolve(path)
            if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: full) {
                entries.append(.symlink(path: path, target: target))
            } else {
                var isDirectory: ObjCBool = false
                if FileManager.default.fileExists(atPath: full, isDirectory: &isDirectory), isDirectory.boolValue {
                    entries.append(.directory(path: path))
                }
            }
        }
        return SandboxHostLayout(entries: entries)
    }
}

/// The daemon's note of the sandboxed postmaster it started: M's host pid and its start time,
/// which together name one process for the whole uptime. Kept root-owned, outside the tenant's reach.
public struct SandboxRecord: Sendable, Equatable {
    public var pid: pid_t
    public var startTime: UInt64

    public init(pid: pid_t, startTime: UInt64) {
        self.pid = pid
        self.startTime = startTime
    }

    public var text: String { "\(pid) \(startTime)\n" }

    public static func parse(_ text: String) -> SandboxRecord? {
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard fields.count == 2, let pid = pid_t(fields[0]), pid > 0, let start = UInt64(fields[1]) else { return nil }
        return SandboxRecord(pid: pid, startTime: start)
    }

    public static func read(_ path: String) -> SandboxRecord? {
        (try? String(contentsOfFile: path, encoding: .utf8)).flatMap(parse)
    }
}

extension SandboxProcesses {
    /// The sandboxed postmaster of `dataDirectory` that is running now, to re-adopt: the recorded
    /// one when it is still that very process and passes `verdict`; with no record (it could not
    /// be written), the one a scan of /proc finds. A record naming anything else (the postmaster
    /// died and its pid was recycled) adopts nothing: the supervisor then starts the tenant, and
    /// refuses to while any process of it is left.
    public static func adoptable(dataDirectory: String, uid: uid_t, record: SandboxRecord?, root: HostRoot = .real) -> pid_t? {
        guard let text = root.read(SandboxPlan.normalized(dataDirectory) + "/postmaster.pid"),
              let lockFile = PostmasterLockFile.parse(text), lockFile.pid == postmasterNamespacePID else { return nil }
        guard let record else { return findPostmaster(dataDirectory: dataDirectory, uid: uid, root: root)?.pid }
        guard let reading = ProcessReading.read(record.pid, root: root),
              verdict(reading, lockFile: lockFile, dataDirectory: dataDirectory, uid: uid, expectedStartTime: record.startTime) == .postmaster
        else { return nil }
        return record.pid
    }
}
