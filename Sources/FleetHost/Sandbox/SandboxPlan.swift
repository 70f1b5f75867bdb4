import FleetCore
import FleetSystem


/// How the sandbox becomes the tenant's user.
public enum SandboxIdentityMode: String, Sendable, Equatable {
    /// The launcher switches to the tenant's uid/gid first and execs bwrap unprivileged, which
    /// makes a user namespace mapping that uid to itself. The only mode that can refuse nested
    /// user namespaces (`--disable-userns` needs `--unshare-user`), so the default.
    case userNamespace
    /// Fallback for hosts without unprivileged user namespaces (`user.max_user_namespaces = 0`,
    /// Ubuntu's AppArmor restriction): bwrap runs as root and `setpriv` drops to the tenant inside.
    /// The tenant can still create user namespaces of its own here: weaker, say so when used.
    case rootThenSetpriv
}

/// What a host's root looks like beside /usr: on merged-/usr hosts /bin, /lib, … are symlinks
/// into /usr and become the same symlinks in the sandbox; elsewhere they are bound read-only.
public struct SandboxHostLayout: Sendable, Equatable {
    public enum Entry: Sendable, Equatable {
        case symlink(path: String, target: String)
        case directory(path: String)
    }

    public var entries: [Entry]

    public init(entries: [Entry]) {
        self.entries = entries
    }

    /// The top-level directories programs and the dynamic loader look in outside /usr.
    public static let rootDirectories = ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"]

    /// Debian 12 and every merged-/usr distribution.
    public static let mergedUsr = SandboxHostLayout(entries: [
        .symlink(path: "/bin", target: "usr/bin"), .symlink(path: "/sbin", target: "usr/sbin"),
        .symlink(path: "/lib", target: "usr/lib"), .symlink(path: "/lib64", target: "usr/lib64"),
    ])
}

/// A host file or directory bound read-only at a path of the caller's choice (`target` may
/// differ from `source`: a bundle's vendored time zones over /usr/share/zoneinfo).
public struct ReadOnlyBind: Sendable, Equatable {
    public var source: String
    public var target: String

    public init(source: String, target: String) {
        self.source = source
        self.target = target
    }

    public init(_ path: String) {
        self.init(source: path, target: path)
    }
}

/// What of the host a sandbox sees.
public enum SandboxHostView: Sendable, Equatable {
    /// The host's /usr read-only and its root directories (what tenants get: `COPY … PROGRAM`
    /// finds the host's tools).
    case hostUsr
    /// Nothing of the host but these binds (a bundle's declared host files): what `bundle
    /// verify` proves a bundle with. The host layout's symlinks (/lib → usr/lib) are still made,
    /// and a target beneath one is bound at its resolved path, so the ELF interpreter
    /// (/lib64/ld-linux-x86-64.so.2) and the loader's default directories exist inside.
    case only(binds: [ReadOnlyBind])
}

/// A file the caller writes (root-owned, mode 0644) before exec, for the sandbox to bind read-only.
public struct SandboxFile: Sendable, Equatable {
    public var hostPath: String
    public var sandboxPath: String
    public var contents: String
}

/// What to exec: `executable` with `arguments` (argv[0] included) and `environment`, after
/// writing `files`. `switchUserBeforeExec`: the launcher takes the tenant's uid/gid (no
/// supplementary groups) before exec, as it does today for an unsandboxed postmaster.
public struct SandboxInvocation: Sendable, Equatable {
    public var executable: String
    public var arguments: [String]
    public var environment: [String: String]
    public var files: [SandboxFile]
    public var switchUserBeforeExec: Bool
}

public struct SandboxPlanError: Error, Equatable, CustomStringConvertible, Sendable {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// The tenant's sandbox as a value: its inputs → the exact bwrap argv. Pure: no file is read or
/// written here (the host's layout comes in as `hostLayout`, the generated files go out as
/// `SandboxInvocation.files`).
///
/// The sandbox holds: /usr (read-only: /bin/sh and the common tools for `COPY … PROGRAM`, and the
/// host libraries the bundle links), the bundle and `readOnlyPaths` (read-only, at their own
/// paths), the tenant directory (read-write at its own path, so postmaster.pid and the socket
/// path mean the same inside and out), a private /tmp and /dev/shm of bounded size, bwrap's
/// minimal /dev, a /proc of its own PID namespace, and in /etc only generated passwd/group and
/// a few non-secret files. The root itself is remounted read-only.
public struct SandboxPlan: Sendable, Equatable {
    public var bwrapPath: String
    public var bundleDirectory: String
    public var tenantDirectory: String
    /// Further host files or directories (libraries outside /usr that the manifest lists).
    public var readOnlyPaths: [String]
    public var network: SandboxNetwork
    public var shmSize: UInt64
    public var tmpSize: UInt64
    public var hostname: String
    public var user: UserIdentity
    /// argv of the postmaster (or `postgres --single`), `command[0]` an absolute path.
    public var command: [String]
    /// The command's environment. Passed as bwrap's own environment, which bwrap hands on
    /// unchanged: argv is world-readable in /proc/PID/cmdline, environ is not.
    public var environment: [String: String]
    public var workingDirectory: String?
    /// A root-owned directory outside the tenant's reach where the generated /etc files go.
    public var stateDirectory: String
    public var hostLayout: SandboxHostLayout
    public var identityMode: SandboxIdentityMode
    /// The sandbox's pid 1: waits for the command and reaps orphans; when it exits the kernel
    /// kills whatever else is left in the PID namespace before bwrap sees the exit.
    public var initShell: String
    public var setprivPath: String
    /// What of the host is in the sandbox besides the bundle and `readOnlyPaths`.
    public var hostView: SandboxHostView
    /// Read-only binds of a source at another path, after everything else (a bundle's vendored
    /// time zones over the compiled-in /usr/share/zoneinfo).
    public var extraBinds: [ReadOnlyBind]
    /// bwrap's `--die-with-parent`: for short runs (`bundle verify`) whose timeout kills bwrap
    /// and must take the sandbox with it. Never for a postmaster, which outlives the daemon.
    public var dieWithParent: Bool

    public init(
        bundleDirectory: String, tenantDirectory: String, readOnlyPaths: [String] = [], network: SandboxNetwork = .none,
        shmSize: UInt64, tmpSize: UInt64, hostname: String, user: UserIdentity, command: [String],
        environment: [String: String] = SpawnSpec.baseEnvironment, workingDirectory: String? = nil,
        stateDirectory: String, hostLayout: SandboxHostLayout = .mergedUsr,
        identityMode: SandboxIdentityMode = .userNamespace, bwrapPath: String = "/usr/bin/bwrap",
        initShell: String = "/bin/sh", setprivPath: String = "/usr/bin/setpriv", hostView: SandboxHostView = .hostUsr,
        extraBinds: [ReadOnlyBind] = [], dieWithParent: Bool = false
    ) {
        self.hostView = hostView
        self.extraBinds = extraBinds
        self.dieWithParent = dieWithParent
        self.bwrapPath = bwrapPath
        self.bundleDirectory = bundleDirectory
        self.tenantDirectory = tenantDirectory
        self.readOnlyPaths = readOnlyPaths
        self.network = network
        self.shmSize = shmSize
        self.tmpSize = tmpSize
        self.hostname = hostname
        self.user = user
        self.command = command
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.stateDirectory = stateDirectory
        self.hostLayout = hostLayout
        self.identityMode = identityMode
        self.initShell = initShell
        self.setprivPath = setprivPath
    }

    /// Host /etc files bound when present: none is a secret. `alternatives` because Debian's
    /// awk, editor, pager … are symlinks through it.
    public static let etcFiles = [
        "/etc/ld.so.cache", "/etc/localtime", "/etc/hosts", "/etc/nsswitch.conf", "/etc/alternatives",
    ]
    /// Only what a client on the host's network needs (postgres_fdw to another server).
    public static let hostNetworkEtcFiles = [
        "/etc/resolv.conf", "/etc/host.conf", "/etc/gai.conf", "/etc/services", "/etc/protocols",
        "/etc/ssl/certs", "/etc/ssl/openssl.cnf",
    ]

    /// The sandbox's /etc/passwd and /etc/group: root and nobody (what a user namespace shows for
    /// unmapped ids) and the tenant, whose home is its own directory. Never the host's files,
    /// which name every other tenant's user.
    public var files: [SandboxFile] {
        let base = stateDirectory.hasSuffix("/") ? String(stateDirectory.dropLast()) : stateDirectory
        let passwd = """
            root:x:0:0:root:/nonexistent:/usr/sbin/nologin
            \(user.name):x:\(user.uid):\(user.gid):pgfleet tenant:\(tenantDirectory):/bin/sh
            nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin

            """
        let group = """
            root:x:0:
            \(user.name):x:\(user.gid):
            nogroup:x:65534:

            """
        return [
            SandboxFile(hostPath: base + "/passwd", sandboxPath: "/etc/passwd", contents: passwd),
            SandboxFile(hostPath: base + "/group", sandboxPath: "/etc/group", contents: group),
        ]
    }

    public func invocation() throws(SandboxPlanError) -> SandboxInvocation {
        try validate()
        return SandboxInvocation(
            executable: bwrapPath, arguments: arguments(), environment: environment, files: files,
            switchUserBeforeExec: identityMode == .userNamespace
        )
    }

    /// The full argv, argv[0] = bwrapPath. Call `validate()` first (or use `invocation()`).
    public func arguments() -> [String] {
        var argv = [bwrapPath]
        switch identityMode {
        case .userNamespace: argv += ["--unshare-user", "--disable-userns"]
        case .rootThenSetpriv: break
        }
        argv += ["--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
        if network == .none { argv.append("--unshare-net") }
        // No --die-with-parent for tenants: a `kill -9` of the daemon must leave every tenant running.
        if dieWithParent { argv.append("--die-with-parent") }
        argv += ["--hostname", hostname, "--new-session"]
        if identityMode == .userNamespace { argv += ["--cap-drop", "ALL"] }
        for mount in mounts() { argv += mount.arguments }
        // Last, so everything above could still create its mount points: nothing new can be
        // written at / (it would be memory of the root tmpfs, outside the tmpfs size limits).
        argv += ["--remount-ro", "/", "--chdir", workingDirectory ?? tenantDirectory, "--as-pid-1", "--"]
        if identityMode == .rootThenSetpriv {
            argv += [
                setprivPath, "--reuid", String(user.uid), "--regid", String(user.gid), "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
            ]
        }
        // `; exit $?` keeps the shell from exec-ing the command in its place: it must stay pid 1.
        argv += [initShell, "-c", "\"$@\"; exit $?", "sh"] + command
        return argv
    }

    enum Mount: Equatable {
        case readOnly(source: String, target: String, optional: Bool)
        case readWrite(String)
        case symlink(target: String, path: String)
        case proc(String), dev(String), dir(String)
        case tmpfs(String, size: UInt64)

        var path: String {
            switch self {
            case .readOnly(_, let target, _): target
            case .readWrite(let path), .proc(let path), .dev(let path), .dir(let path), .tmpfs(let path, _): path
            case .symlink(_, let path): path
            }
        }

        var arguments: [String] {
            switch self {
            case .readOnly(let source, let target, let optional): [optional ? "--ro-bind-try" : "--ro-bind", source, target]
            case .readWrite(let path): ["--bind", path, path]
            case .symlink(let target, let path): ["--symlink", target, path]
            case .proc(let path): ["--proc", path]
            case .dev(let path): ["--dev", path]
            case .dir(let path): ["--dir", path]
            case .tmpfs(let path, let size): ["--size", String(size), "--tmpfs", path]
            }
        }
    }

    /// Every mount, parents before children (bwrap applies them in order, and a bind beneath
    /// /tmp must come after the private /tmp, not vanish under it).
    func mounts() -> [Mount] {
        var list: [Mount] = []
        var covered: [String] = []
        switch hostView {
        case .hostUsr:
            list.append(.readOnly(source: "/usr", target: "/usr", optional: false))
            for entry in hostLayout.entries {
                switch entry {
                case .symlink(let path, let target): list.append(.symlink(target: target, path: path))
                case .directory(let path): list.append(.readOnly(source: path, target: path, optional: false))
                }
            }
            covered = ["/usr"] + hostLayout.entries.compactMap { if case .directory(let path) = $0 { path } else { nil } }
        case .only(let binds):
            // Only the symlinks of the layout: a directory of it (a non-merged /lib) would bring the host in.
            for case .symlink(let path, let target) in hostLayout.entries { list.append(.symlink(target: target, path: path)) }
            var targets: [String] = []
            for bind in binds {
                let target = resolvedTarget(bind.target)
                guard !targets.contains(target) else { continue }
                targets.append(target)
                list.append(.readOnly(source: SandboxPlan.normalized(bind.source), target: target, optional: false))
            }
            covered = targets
        }
        list += [.proc("/proc"), .dev("/dev"), .tmpfs("/dev/shm", size: shmSize), .tmpfs("/tmp", size: tmpSize), .dir("/etc")]
        for file in files { list.append(.readOnly(source: file.hostPath, target: file.sandboxPath, optional: false)) }
        if hostView == .hostUsr {
            let etc = SandboxPlan.etcFiles + (network == .host ? SandboxPlan.hostNetworkEtcFiles : [])
            for path in etc { list.append(.readOnly(source: path, target: path, optional: true)) }
        }
        for path in [bundleDirectory] + readOnlyPaths {
            let clean = SandboxPlan.normalized(path)
            if covered.contains(where: { SandboxPlan.isSameOrBeneath(clean, $0) }) { continue }
            covered.append(clean)
            list.append(.readOnly(source: clean, target: clean, optional: false))
        }
        list.append(.readWrite(SandboxPlan.normalized(tenantDirectory)))
        let sorted = list.enumerated().sorted { lhs, rhs in
            let (l, r) = (SandboxPlan.depth(lhs.element.path), SandboxPlan.depth(rhs.element.path))
            return l != r ? l < r : lhs.offset < rhs.offset
        }.map(\.element)
        // Last whatever their depth: each covers what a bind above put at its target.
        return sorted + extraBinds.map { .readOnly(source: SandboxPlan.normalized($0.source), target: resolvedTarget($0.target), optional: false) }
    }

    /// `path` with a leading symlink of the host layout replaced by its target (/bin/sh →
    /// /usr/bin/sh on merged /usr): bwrap cannot make a mount point through a symlink whose
    /// target does not exist yet.
    func resolvedTarget(_ path: String) -> String {
        let clean = SandboxPlan.normalized(path)
        for case .symlink(let link, let target) in hostLayout.entries where SandboxPlan.isSameOrBeneath(clean, link) && link != "/" {
            let base = target.hasPrefix("/") ? target : "/" + target
            return SandboxPlan.normalized(base + clean.dropFirst(link.count))
        }
        return clean
    }

    /// Refuses what would make a sandbox that is not one: relative or odd paths, a tenant
    /// directory that would cover the system, root as the tenant, names that break passwd.
    public func validate() throws(SandboxPlanError) {
        var named: [(String, String)] = [("bwrap", bwrapPath), ("bundle directory", bundleDirectory), ("tenant directory", tenantDirectory),
                                         ("state directory", stateDirectory), ("init shell", initShell)]
        named += readOnlyPaths.map { ("read-only path", $0) }
        for bind in extraBinds + hostViewBinds { named += [("bind source", bind.source), ("bind target", bind.target)] }
        for (what, path) in named {
            guard SandboxPlan.isCleanAbsolute(path) else { throw SandboxPlanError("\(what) must be a clean absolute path: \(path)") }
        }
        if let workingDirectory, !SandboxPlan.isCleanAbsolute(workingDirectory) {
            throw SandboxPlanError("working directory must be a clean absolute path: \(workingDirectory)")
        }
        let tenant = SandboxPlan.normalized(tenantDirectory)
        let system = ["/usr", "/etc", "/proc", "/dev", "/sys"] + SandboxHostLayout.rootDirectories
        if ["/", "/tmp"].contains(tenant) || system.contains(where: { SandboxPlan.isSameOrBeneath(tenant, $0) }) {
            throw SandboxPlanError("tenant directory \(tenantDirectory) overlaps a system directory")
        }
        if SandboxPlan.isSameOrBeneath(SandboxPlan.normalized(stateDirectory), tenant) {
            throw SandboxPlanError("state directory must not be inside the tenant directory (the tenant could rewrite its passwd)")
        }
        guard user.uid != 0, user.gid != 0 else { throw SandboxPlanError("the sandbox never runs as root (PostgreSQL refuses euid 0)") }
        guard !user.name.isEmpty, user.name.utf8.count <= 32,
              user.name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "_-.".contains($0)) }) else {
            throw SandboxPlanError("user name not fit for /etc/passwd: \(user.name)")
        }
        guard !hostname.isEmpty, hostname.utf8.count <= 63, hostname.first != "-", hostname.last != "-",
              hostname.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) else {
            throw SandboxPlanError("hostname must be one DNS label (letters, digits, '-'): \(hostname)")
        }
        guard shmSize > 0, tmpSize > 0 else { throw SandboxPlanError("/dev/shm and /tmp need a size") }
        guard let executable = command.first, SandboxPlan.isCleanAbsolute(executable) else {
            throw SandboxPlanError("the command must start with an absolute path")
        }
        for argument in command where argument.contains("\0") { throw SandboxPlanError("a command argument holds a NUL byte") }
        for (key, value) in environment where key.isEmpty || key.contains("=") || key.contains("\0") || value.contains("\0") {
            throw SandboxPlanError("bad environment variable name: \(key)")
        }
    }

    private var hostViewBinds: [ReadOnlyBind] {
        if case .only(let binds) = hostView { binds } else { [] }
    }

    static func isCleanAbsolute(_ path: String) -> Bool {
        guard path.hasPrefix("/"), !path.contains("\0"), !path.contains("\n") else { return false }
        return !path.split(separator: "/").contains { $0 == "." || $0 == ".." }
    }

    static func normalized(_ path: String) -> String {
        "/" + path.split(separator: "/").joined(separator: "/")
    }

    static func isSameOrBeneath(_ path: String, _ ancestor: String) -> Bool {
        ancestor == "/" || path == ancestor || path.hasPrefix(ancestor + "/")
    }

    static func depth(_ path: String) -> Int {
        path.split(separator: "/").count
    }
}
