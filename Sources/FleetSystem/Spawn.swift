import CFleetSys
import FleetCore
import Foundation

/// An OS identity a child runs as.
public struct UserIdentity: Sendable, Equatable {
    public var name: String
    public var uid: uid_t
    public var gid: gid_t

    public init(name: String, uid: uid_t, gid: gid_t) {
        self.name = name
        self.uid = uid
        self.gid = gid
    }

    /// Who this process runs as.
    public static var current: UserIdentity {
        let uid = geteuid()
        return UserIdentity(name: OSUsers.name(of: uid) ?? String(uid), uid: uid, gid: getegid())
    }
}

/// Everything about how a child starts, set explicitly: nothing is inherited by accident.
public struct SpawnSpec: Sendable {
    public var executable: String
    public var arguments: [String]
    public var environment: [String: String]
    public var workingDirectory: String?
    /// Nil: run as the daemon's own user. Otherwise the child drops all supplementary groups and
    /// takes exactly this uid/gid.
    public var user: UserIdentity?
    /// A new session: the child is not in the daemon's process group or terminal, so Ctrl-C or a
    /// `kill -9` of the daemon never reaches it.
    public var newSession: Bool
    public var oomScoreAdjust: Int32?
    public var fileLimit: Int?
    /// Lowest CPU and I/O priority: for work nobody is waiting for (the ready pool's initdb).
    public var background: Bool
    /// `cgroup.procs` files the child joins before it does anything else (one per hierarchy).
    public var cgroupProcsFiles: [String] = []

    public init(
        executable: String, arguments: [String] = [], environment: [String: String] = SpawnSpec.baseEnvironment,
        workingDirectory: String? = nil, user: UserIdentity? = nil, newSession: Bool = false,
        oomScoreAdjust: Int32? = nil, fileLimit: Int? = nil, background: Bool = false
    ) {
        self.background = background
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.user = user
        self.newSession = newSession
        self.oomScoreAdjust = oomScoreAdjust
        self.fileLimit = fileLimit
    }

    /// What every child gets unless told otherwise: a fixed PATH and no locale from the caller.
    public static let baseEnvironment: [String: String] = [
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LC_ALL": "C.UTF-8",
    ]
}

public struct SpawnError: Error, CustomStringConvertible, Sendable {
    public var executable: String
    public var step: String?
    public var errno: Int32
    /// The file a step failed on, when there is one (a cgroup's `cgroup.procs`).
    public var path: String? = nil

    public var description: String {
        let reason = String(cString: strerror(errno))
        if let path { return "could not start \(executable): \(step ?? "opening") \(path) failed: \(reason)" }
        if let step, step != "exec" { return "could not start \(executable): \(step) failed: \(reason)" }
        return "could not start \(executable): \(reason)"
    }
}

public enum Spawner {
    /// Starts the child; `stdin`/`stdout`/`stderr` are descriptors to hand it (-1: /dev/null).
    public static func spawn(_ spec: SpawnSpec, stdin: Int32 = -1, stdout: Int32 = -1, stderr: Int32 = -1) throws(SpawnError) -> pid_t {
        // Opened here, so a missing cgroup is named in the error; the child only writes its pid.
        var cgroupFDs: [Int32] = []
        defer { for fd in cgroupFDs { close(fd) } }
        for path in spec.cgroupProcsFiles {
            let fd = open(path, O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else { throw SpawnError(executable: spec.executable, step: "opening", errno: Glibc.errno, path: path) }
            cgroupFDs.append(fd)
        }
        let argv = [spec.executable] + spec.arguments
        let envp = spec.environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        var pid: pid_t = 0
        var failedStep: UnsafePointer<CChar>? = nil
        let result: Int32 = withCStrings(argv) { argvPointer in
            withCStrings(envp) { envPointer in
                spec.executable.withCString { path in
                    withOptionalCString(spec.workingDirectory) { cwd in
                        var options = pgf_spawn_options()
                        options.path = path
                        options.argv = argvPointer
                        options.envp = envPointer
                        options.cwd = cwd
                        options.stdin_fd = stdin
                        options.stdout_fd = stdout
                        options.stderr_fd = stderr
                        if let user = spec.user {
                            options.switch_user = 1
                            options.uid = user.uid
                            options.gid = user.gid
                        }
                        options.new_session = spec.newSession ? 1 : 0
                        if let adjust = spec.oomScoreAdjust {
                            options.set_oom_score_adj = 1
                            options.oom_score_adj = adjust
                        }
                        options.nofile_limit = spec.fileLimit ?? 0
                        options.background = spec.background ? 1 : 0
                        return cgroupFDs.withUnsafeBufferPointer { fds in
                            options.cgroup_fds = fds.baseAddress
                            options.cgroup_fd_count = Int32(fds.count)
                            return pgf_spawn(&options, &pid, &failedStep)
                        }
                    }
                }
            }
        }
        if result != 0 {
            throw SpawnError(executable: spec.executable, step: failedStep.map { String(cString: $0) }, errno: result)
        }
        return pid
    }
}

private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for pointer in pointers { free(pointer) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}

private func withOptionalCString<R>(_ string: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let string else { return body(nil) }
    return string.withCString { body($0) }
}
