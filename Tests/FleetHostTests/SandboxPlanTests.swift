import FleetCore
import FleetHost
import FleetSystem
import Foundation
import Testing

private let tenantUser = UserIdentity(name: "pgf-acme", uid: 2_000_000_001, gid: 2_000_000_001)

private func plan(network: SandboxNetwork = .none, mode: SandboxIdentityMode = .userNamespace) -> SandboxPlan {
    SandboxPlan(
        bundleDirectory: "/var/lib/pgfleet/bundles/pg15", tenantDirectory: "/var/lib/pgfleet/tenants/acme",
        readOnlyPaths: ["/usr/lib/x86_64-linux-gnu/libicuuc.so.72", "/opt/icu/lib"], network: network,
        shmSize: 64 << 20, tmpSize: 128 << 20, hostname: "acme", user: tenantUser,
        command: ["/var/lib/pgfleet/bundles/pg15/bin/postgres", "-D", "/var/lib/pgfleet/tenants/acme/data"],
        environment: ["PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"],
        workingDirectory: "/var/lib/pgfleet/tenants/acme/data",
        stateDirectory: "/var/lib/pgfleet/run/sandbox/acme", identityMode: mode
    )
}

@Test func argvForOneTenantWithNetworkNone() throws {
    let invocation = try plan().invocation()
    #expect(invocation.executable == "/usr/bin/bwrap")
    #expect(invocation.switchUserBeforeExec)
    #expect(invocation.environment == ["PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"])
    #expect(invocation.arguments == [
        "/usr/bin/bwrap", "--unshare-user", "--disable-userns", "--unshare-ipc", "--unshare-pid", "--unshare-uts",
        "--unshare-cgroup-try", "--unshare-net", "--hostname", "acme", "--new-session", "--cap-drop", "ALL",
        // Depth 1 first, in the order written, then deeper paths: parents before children.
        "--ro-bind", "/usr", "/usr",
        "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin", "--symlink", "usr/lib", "/lib",
        "--symlink", "usr/lib64", "/lib64",
        "--proc", "/proc", "--dev", "/dev", "--size", "134217728", "--tmpfs", "/tmp", "--dir", "/etc",
        "--size", "67108864", "--tmpfs", "/dev/shm",
        "--ro-bind", "/var/lib/pgfleet/run/sandbox/acme/passwd", "/etc/passwd",
        "--ro-bind", "/var/lib/pgfleet/run/sandbox/acme/group", "/etc/group",
        "--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache", "--ro-bind-try", "/etc/localtime", "/etc/localtime",
        "--ro-bind-try", "/etc/hosts", "/etc/hosts", "--ro-bind-try", "/etc/nsswitch.conf", "/etc/nsswitch.conf",
        "--ro-bind-try", "/etc/alternatives", "/etc/alternatives",
        "--ro-bind", "/opt/icu/lib", "/opt/icu/lib",
        "--ro-bind", "/var/lib/pgfleet/bundles/pg15", "/var/lib/pgfleet/bundles/pg15",
        "--bind", "/var/lib/pgfleet/tenants/acme", "/var/lib/pgfleet/tenants/acme",
        "--remount-ro", "/", "--chdir", "/var/lib/pgfleet/tenants/acme/data", "--as-pid-1", "--",
        "/bin/sh", "-c", "\"$@\"; exit $?", "sh",
        "/var/lib/pgfleet/bundles/pg15/bin/postgres", "-D", "/var/lib/pgfleet/tenants/acme/data",
    ])
}

@Test func neverDiesWithTheDaemonAndNeverSharesTheHostNamespacesByDefault() throws {
    let argv = try plan().invocation().arguments
    #expect(!argv.contains("--die-with-parent"))
    #expect(!argv.contains("--share-net"))
    #expect(!argv.contains("--bind-try") && !argv.contains("/etc/shadow") && !argv.contains("/etc/resolv.conf"))
    // The environment is bwrap's own, not --setenv: argv is world-readable in /proc.
    #expect(!argv.contains("--setenv") && !argv.contains("--clearenv"))
}

@Test func hostNetworkKeepsTheNetworkAndBindsResolverFiles() throws {
    let argv = try plan(network: .host).invocation().arguments
    #expect(!argv.contains("--unshare-net"))
    #expect(argv.contains("/etc/resolv.conf") && argv.contains("/etc/ssl/certs"))
    #expect(argv.contains("--unshare-pid") && argv.contains("--unshare-ipc"))
}

@Test func parentsAreMountedBeforeWhatLiesBeneathThem() throws {
    var beneathTmp = plan()
    beneathTmp.tenantDirectory = "/tmp/pgfleet-test/acme"
    beneathTmp.workingDirectory = nil
    let argv = try beneathTmp.invocation().arguments
    let tmpfs = try #require(argv.firstIndex(of: "/tmp"))
    let bind = try #require(argv.firstIndex(of: "/tmp/pgfleet-test/acme"))
    #expect(tmpfs < bind)
    #expect(argv[argv.firstIndex(of: "--chdir")! + 1] == "/tmp/pgfleet-test/acme")
}

@Test func pathsAlreadyUnderUsrAreNotBoundTwice() throws {
    var debian = plan()
    debian.bundleDirectory = "/usr/lib/postgresql/15"
    let argv = try debian.invocation().arguments
    #expect(!argv.contains("/usr/lib/postgresql/15"))
    #expect(!argv.contains("/usr/lib/x86_64-linux-gnu/libicuuc.so.72"))
}

@Test func nonMergedHostsBindTheirRootDirectories() throws {
    var old = plan()
    old.hostLayout = SandboxHostLayout(entries: [.directory(path: "/bin"), .directory(path: "/lib"), .symlink(path: "/lib64", target: "/lib")])
    let argv = try old.invocation().arguments.joined(separator: " ")
    #expect(argv.contains("--ro-bind /bin /bin"))
    #expect(argv.contains("--ro-bind /lib /lib"))
    #expect(argv.contains("--symlink /lib /lib64"))
}

@Test func rootFallbackDropsToTheTenantWithSetprivInside() throws {
    let invocation = try plan(mode: .rootThenSetpriv).invocation()
    #expect(!invocation.switchUserBeforeExec)
    let argv = invocation.arguments
    #expect(!argv.contains("--unshare-user") && !argv.contains("--disable-userns") && !argv.contains("--cap-drop"))
    let setpriv = try #require(argv.firstIndex(of: "/usr/bin/setpriv"))
    #expect(Array(argv[setpriv...].prefix(11)) == [
        "/usr/bin/setpriv", "--reuid", "2000000001", "--regid", "2000000001", "--clear-groups",
        "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--", "/bin/sh",
    ])
}

@Test func generatedPasswdNamesOnlyRootTheTenantAndNobody() {
    let files = plan().files
    #expect(files.map(\.hostPath) == ["/var/lib/pgfleet/run/sandbox/acme/passwd", "/var/lib/pgfleet/run/sandbox/acme/group"])
    #expect(files[0].contents == """
        root:x:0:0:root:/nonexistent:/usr/sbin/nologin
        pgf-acme:x:2000000001:2000000001:pgfleet tenant:/var/lib/pgfleet/tenants/acme:/bin/sh
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin

        """)
    #expect(files[1].contents == "root:x:0:\npgf-acme:x:2000000001:\nnogroup:x:65534:\n")
}

@Test func refusesPlansThatAreNoSandbox() {
    func refused(_ change: (inout SandboxPlan) -> Void) -> Bool {
        var candidate = plan()
        change(&candidate)
        return (try? candidate.invocation()) == nil
    }
    #expect(!refused { _ in })
    #expect(refused { $0.tenantDirectory = "/" })
    #expect(refused { $0.tenantDirectory = "/tmp" })
    #expect(refused { $0.tenantDirectory = "/usr/local/acme" })
    #expect(refused { $0.tenantDirectory = "/etc" })
    #expect(refused { $0.tenantDirectory = "var/lib/acme" })
    #expect(refused { $0.tenantDirectory = "/var/lib/pgfleet/tenants/../acme" })
    #expect(refused { $0.stateDirectory = "/var/lib/pgfleet/tenants/acme/etc" })
    #expect(refused { $0.user = UserIdentity(name: "root", uid: 0, gid: 0) })
    #expect(refused { $0.user.name = "evil:x:0:0::/:/bin/sh\nx" })
    #expect(refused { $0.hostname = "a.b" })
    #expect(refused { $0.hostname = "" })
    #expect(refused { $0.shmSize = 0 })
    #expect(refused { $0.command = ["postgres"] })
    #expect(refused { $0.command = [] })
    #expect(refused { $0.environment["A=B"] = "x" })
    #expect(refused { $0.readOnlyPaths = ["relative/lib"] })
}

// MARK: - /proc parsers, with text as the kernel writes it

@Test func parsesChildrenWithTheirTrailingSpace() {
    #expect(ProcText.children("15947 ") == [15947])
    #expect(ProcText.children("3212 3631 \n") == [3212, 3631])
    #expect(ProcText.children("") == [])
}

private let postmasterStatus = """
    Name:\tpostgres
    Umask:\t0077
    State:\tS (sleeping)
    Tgid:\t15951
    Ngid:\t0
    Pid:\t15951
    PPid:\t15947
    TracerPid:\t0
    Uid:\t2000000001\t2000000001\t2000000001\t2000000001
    Gid:\t2000000001\t2000000001\t2000000001\t2000000001
    NStgid:\t15951\t2
    NSpid:\t15951\t2
    NSpgid:\t15947\t1
    NSsid:\t15947\t1

    """

@Test func parsesNSpidAndUid() {
    #expect(ProcText.nsPIDs(status: postmasterStatus) == [15951, 2])
    #expect(ProcText.nsPIDs(status: "NSpid:\t15942\n") == [15942])
    #expect(ProcText.nsPIDs(status: "Name:\tx\n") == nil)
    #expect(ProcText.nsPIDs(status: "NSpid:\t12\tx\n") == nil)
    #expect(ProcText.realUID(status: postmasterStatus) == 2_000_000_001)
}

@Test func parsesStartTimeEvenWhenTheCommandNameHasSpacesAndParentheses() {
    let stat = "15951 (postgres) S 15947 15947 15947 0 -1 4194560 1392 0 0 0 1 3 0 0 20 0 1 0 775629 226324480 7316 18446744073709551615 1 1 0 0 0 0 0 4194304 24064 0 0 0 17 1 0 0 0 0 0\n"
    #expect(ProcText.startTime(stat: stat) == 775629)
    #expect(ProcText.parent(stat: stat) == 15947)
    let odd = "42 (a) b) (c) R 7 42 42 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 123 0 0\n"
    #expect(ProcText.startTime(stat: odd) == 123)
    #expect(ProcText.parent(stat: odd) == 7)
    #expect(ProcText.startTime(stat: "garbage") == nil)
}

@Test func parsesPostmasterPidAsWrittenInsideTheSandbox() {
    let text = "2\n/var/lib/pgfleet/tenants/acme/data\n1796294440\n5432\n/var/lib/pgfleet/tenants/acme/run\n\n 16228723         0\nready   \n"
    #expect(PostmasterLockFile.parse(text) == PostmasterLockFile(
        pid: 2, dataDirectory: "/var/lib/pgfleet/tenants/acme/data", socketDirectory: "/var/lib/pgfleet/tenants/acme/run"))
    #expect(PostmasterLockFile.parse("-1\n/x\n") == nil)
    #expect(PostmasterLockFile.parse("") == nil)
}

@Test func bwrapReportsASignalledCommandAs128PlusTheSignal() {
    #expect(SandboxExit.commandStatus(fromBwrap: .exited(0)) == .exited(0))
    #expect(SandboxExit.commandStatus(fromBwrap: .exited(1)) == .exited(1))
    #expect(SandboxExit.commandStatus(fromBwrap: .exited(137)) == .signaled(9))
    #expect(SandboxExit.commandStatus(fromBwrap: .exited(139)) == .signaled(11))
    #expect(SandboxExit.commandStatus(fromBwrap: .signaled(9)) == .signaled(9))
}

// MARK: - re-adoption: never a stranger with a recycled pid

private let dataDirectory = "/var/lib/pgfleet/tenants/acme/data"
private let lockFile = PostmasterLockFile(pid: 2, dataDirectory: dataDirectory)
private let postmaster = ProcessReading(
    pid: 15951, parent: 15947, uid: 2_000_000_001, executable: "/var/lib/pgfleet/bundles/pg15/bin/postgres",
    workingDirectory: dataDirectory, nsPIDs: [15951, 2], startTime: 775629)

@Test func adoptsOnlyTheSandboxedPostmasterOfThisDataDirectory() {
    func verdict(_ change: (inout ProcessReading) -> Void, start: UInt64? = 775629) -> SandboxedPostmasterVerdict {
        var reading = postmaster
        change(&reading)
        return SandboxProcesses.verdict(reading, lockFile: lockFile, dataDirectory: dataDirectory, uid: 2_000_000_001, expectedStartTime: start)
    }
    #expect(verdict { _ in } == .postmaster)
    #expect(verdict({ _ in }, start: nil) == .postmaster)
    #expect(verdict { $0.executable += " (deleted)" } == .postmaster)
    #expect(verdict { $0.nsPIDs = [15951] } == .notInPIDNamespace)
    #expect(verdict { $0.nsPIDs = [15951, 7] } == .namespacePIDDiffers(lockFile: 2, process: 7))
    #expect(verdict { $0.executable = "/usr/bin/sleep" } == .notPostgres("/usr/bin/sleep"))
    #expect(verdict { $0.workingDirectory = "/var/lib/pgfleet/tenants/other/data" } == .otherWorkingDirectory("/var/lib/pgfleet/tenants/other/data"))
    #expect(verdict { $0.uid = 2_000_000_002 } == .otherUser(2_000_000_002))
    #expect(verdict { $0.startTime = 999_999 } == .startedAtOtherTime(expected: 775629, actual: 999_999))
    // Another tenant's postmaster is pid 2 in its own sandbox too: the data directory tells them apart.
    let other = PostmasterLockFile(pid: 2, dataDirectory: "/var/lib/pgfleet/tenants/other/data")
    #expect(SandboxProcesses.verdict(postmaster, lockFile: other, dataDirectory: dataDirectory) == .otherDataDirectory(other.dataDirectory))
}

// MARK: - the same readings from a fake /proc tree

@Test func findsThePostmasterFromBwrapInAFakeProc() throws {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("sandbox-proc-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: root) }
    func process(_ pid: pid_t, status: String, stat: String, children: String, exe: String, cwd: String) throws {
        let dir = "\(root)/proc/\(pid)"
        try FileManager.default.createDirectory(atPath: "\(dir)/task/\(pid)", withIntermediateDirectories: true)
        try status.write(toFile: "\(dir)/status", atomically: false, encoding: .utf8)
        try stat.write(toFile: "\(dir)/stat", atomically: false, encoding: .utf8)
        try children.write(toFile: "\(dir)/task/\(pid)/children", atomically: false, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: "\(dir)/exe", withDestinationPath: exe)
        try FileManager.default.createSymbolicLink(atPath: "\(dir)/cwd", withDestinationPath: cwd)
    }
    let uidLine = "Uid:\t2000000001\t2000000001\t2000000001\t2000000001\n"
    try process(100, status: uidLine + "NSpid:\t100\n", stat: "100 (bwrap) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 500 0 0\n",
                children: "101 ", exe: "/usr/bin/bwrap", cwd: "/")
    try process(101, status: uidLine + "NSpid:\t101\t1\n", stat: "101 (sh) S 100 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 501 0 0\n",
                children: "140 102 ", exe: "/usr/bin/dash", cwd: dataDirectory)
    try process(140, status: uidLine + "NSpid:\t140\t40\n", stat: "140 (sleep) S 101 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 900 0 0\n",
                children: "", exe: "/usr/bin/sleep", cwd: dataDirectory)
    try process(102, status: uidLine + "NSpid:\t102\t2\n", stat: "102 (postgres) S 101 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 502 0 0\n",
                children: "103 ", exe: "/var/lib/pgfleet/bundles/pg15/bin/postgres", cwd: dataDirectory)
    try FileManager.default.createDirectory(atPath: root + dataDirectory, withIntermediateDirectories: true)
    try "2\n\(dataDirectory)\n1796294440\n5432\n/var/lib/pgfleet/tenants/acme/run\n".write(
        toFile: root + dataDirectory + "/postmaster.pid", atomically: false, encoding: .utf8)

    let host = HostRoot(root)
    #expect(SandboxProcesses.sandboxInit(ofBwrap: 100, root: host) == 101)
    #expect(SandboxProcesses.postmaster(ofBwrap: 100, root: host) == 102)
    #expect(SandboxProcesses.postmaster(ofBwrap: 999, root: host) == nil)
    let reading = try #require(ProcessReading.read(102, root: host))
    #expect(reading == ProcessReading(
        pid: 102, parent: 101, uid: 2_000_000_001, executable: "/var/lib/pgfleet/bundles/pg15/bin/postgres",
        workingDirectory: dataDirectory, nsPIDs: [102, 2], startTime: 502))
    #expect(SandboxProcesses.findPostmaster(dataDirectory: dataDirectory, uid: 2_000_000_001, root: host)?.pid == 102)
    #expect(SandboxProcesses.findPostmaster(dataDirectory: dataDirectory, uid: 2_000_000_002, root: host) == nil)

    // Re-adoption by the daemon's record: only the very process it names (same start time).
    let uid: uid_t = 2_000_000_001
    #expect(SandboxProcesses.adoptable(dataDirectory: dataDirectory, uid: uid, record: SandboxRecord(pid: 102, startTime: 502), root: host) == 102)
    #expect(SandboxProcesses.adoptable(dataDirectory: dataDirectory, uid: uid, record: SandboxRecord(pid: 102, startTime: 400), root: host) == nil)
    #expect(SandboxProcesses.adoptable(dataDirectory: dataDirectory, uid: uid, record: SandboxRecord(pid: 140, startTime: 900), root: host) == nil)
    #expect(SandboxProcesses.adoptable(dataDirectory: dataDirectory, uid: uid, record: SandboxRecord(pid: 777, startTime: 502), root: host) == nil)
    #expect(SandboxProcesses.adoptable(dataDirectory: dataDirectory, uid: uid, record: nil, root: host) == 102, "no record: found by a scan")
    #expect(SandboxProcesses.adoptable(dataDirectory: "/var/lib/pgfleet/tenants/other/data", uid: uid, record: nil, root: host) == nil)
}

@Test func theRecordOfASandboxedPostmasterRoundTripsAndRefusesGarbage() {
    #expect(SandboxRecord.parse(SandboxRecord(pid: 4242, startTime: 775_629).text) == SandboxRecord(pid: 4242, startTime: 775_629))
    for bad in ["", "4242", "4242 x", "-1 5", "0 5", "1 2 3", "4242 775629 extra"] {
        #expect(SandboxRecord.parse(bad) == nil, "\(bad)")
    }
}

@Test func readsTheHostLayout() throws {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("sandbox-layout-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: root) }
    try FileManager.default.createDirectory(atPath: root + "/usr/bin", withIntermediateDirectories: true)
    try FileManager.default.createDirectory(atPath: root + "/lib", withIntermediateDirectories: true)
    try FileManager.default.createSymbolicLink(atPath: root + "/bin", withDestinationPath: "usr/bin")
    #expect(SandboxHostLayout.read(root: HostRoot(root)) == SandboxHostLayout(entries: [
        .symlink(path: "/bin", target: "usr/bin"), .directory(path: "/lib"),
    ]))
}

// MARK: - a sandbox holding only the bundle (`bundle verify`)

@Test func bundleOnlyViewBindsNothingOfTheHostButItsBinds() throws {
    var only = plan()
    only.readOnlyPaths = []
    only.hostView = .only(binds: [
        ReadOnlyBind("/lib/x86_64-linux-gnu/libc.so.6"), ReadOnlyBind("/lib64/ld-linux-x86-64.so.2"),
        ReadOnlyBind("/usr/lib/locale/C.utf8"), ReadOnlyBind(source: "/var/lib/pgfleet/bundles/pg15/vendor/bin/sh", target: "/bin/sh"),
        ReadOnlyBind("/lib/x86_64-linux-gnu/libc.so.6"),
    ])
    only.extraBinds = [ReadOnlyBind(source: "/var/lib/pgfleet/bundles/pg15/vendor/zoneinfo", target: "/usr/share/zoneinfo")]
    only.dieWithParent = true
    #expect(try only.invocation().arguments == [
        "/usr/bin/bwrap", "--unshare-user", "--disable-userns", "--unshare-ipc", "--unshare-pid", "--unshare-uts",
        "--unshare-cgroup-try", "--unshare-net", "--die-with-parent", "--hostname", "acme", "--new-session", "--cap-drop", "ALL",
        // The layout's symlinks, then each bind at its path resolved through them.
        "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin", "--symlink", "usr/lib", "/lib",
        "--symlink", "usr/lib64", "/lib64",
        "--proc", "/proc", "--dev", "/dev", "--size", "134217728", "--tmpfs", "/tmp", "--dir", "/etc",
        "--size", "67108864", "--tmpfs", "/dev/shm",
        "--ro-bind", "/var/lib/pgfleet/run/sandbox/acme/passwd", "/etc/passwd",
        "--ro-bind", "/var/lib/pgfleet/run/sandbox/acme/group", "/etc/group",
        "--ro-bind", "/lib64/ld-linux-x86-64.so.2", "/usr/lib64/ld-linux-x86-64.so.2",
        "--ro-bind", "/var/lib/pgfleet/bundles/pg15/vendor/bin/sh", "/usr/bin/sh",
        "--ro-bind", "/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "--ro-bind", "/usr/lib/locale/C.utf8", "/usr/lib/locale/C.utf8",
        "--ro-bind", "/var/lib/pgfleet/bundles/pg15", "/var/lib/pgfleet/bundles/pg15",
        "--bind", "/var/lib/pgfleet/tenants/acme", "/var/lib/pgfleet/tenants/acme",
        "--ro-bind", "/var/lib/pgfleet/bundles/pg15/vendor/zoneinfo", "/usr/share/zoneinfo",
        "--remount-ro", "/", "--chdir", "/var/lib/pgfleet/tenants/acme/data", "--as-pid-1", "--",
        "/bin/sh", "-c", "\"$@\"; exit $?", "sh",
        "/var/lib/pgfleet/bundles/pg15/bin/postgres", "-D", "/var/lib/pgfleet/tenants/acme/data",
    ])
}

@Test func bundleOnlyViewNeverBindsTheHostsUsrEtcOrNonMergedRootDirectories() throws {
    var only = plan()
    only.hostLayout = SandboxHostLayout(entries: [.directory(path: "/lib"), .symlink(path: "/lib64", target: "/lib")])
    only.hostView = .only(binds: [ReadOnlyBind("/lib64/ld-linux-x86-64.so.2")])
    let argv = try only.invocation().arguments
    #expect(!argv.contains("/usr") && !argv.contains("/etc/ld.so.cache") && !argv.contains("/etc/alternatives"))
    let joined = argv.joined(separator: " ")
    #expect(!joined.contains("--ro-bind /lib /lib"))
    #expect(joined.contains("--symlink /lib /lib64"))
    #expect(joined.contains("--ro-bind /lib64/ld-linux-x86-64.so.2 /lib/ld-linux-x86-64.so.2"))
    // The bundle and readOnlyPaths are still there.
    #expect(joined.contains("--ro-bind /opt/icu/lib /opt/icu/lib"))
    #expect(joined.contains("--ro-bind /var/lib/pgfleet/bundles/pg15 /var/lib/pgfleet/bundles/pg15"))
}

@Test func extraBindsComeAfterTheHostsUsrForTenantsToo() throws {
    var tenant = plan()
    tenant.extraBinds = [ReadOnlyBind(source: "/var/lib/pgfleet/bundles/pg15/vendor/zoneinfo", target: "/usr/share/zoneinfo")]
    let argv = try tenant.invocation().arguments
    let usr = try #require(argv.firstIndex(of: "/usr"))
    let zones = try #require(argv.firstIndex(of: "/usr/share/zoneinfo"))
    #expect(usr < zones)
    #expect(Array(argv[(zones - 2)...zones]) == ["--ro-bind", "/var/lib/pgfleet/bundles/pg15/vendor/zoneinfo", "/usr/share/zoneinfo"])
    #expect(!argv.contains("--die-with-parent"))
    var relative = tenant
    relative.extraBinds = [ReadOnlyBind(source: "vendor/zoneinfo", target: "/usr/share/zoneinfo")]
    #expect((try? relative.invocation()) == nil)
    var escaping = plan()
    escaping.hostView = .only(binds: [ReadOnlyBind(source: "/lib/../etc/shadow", target: "/x")])
    #expect((try? escaping.invocation()) == nil)
}
