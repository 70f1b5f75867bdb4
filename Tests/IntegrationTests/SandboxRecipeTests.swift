import FleetCore
import FleetHost
import FleetSystem
import Foundation
import Testing

/// The sandbox recipe proved against Debian's PostgreSQL 15: a throwaway OS user and cluster,
/// the postmaster started through `SandboxPlan`'s argv, probed from inside with `COPY … FROM
/// PROGRAM` as its superuser and from the host with psql over the unix socket.
@Suite(.serialized, integrationTrait)
struct SandboxRecipeTests {
    static let bin = "/usr/lib/postgresql/15/bin"

    @Test func tenantSeesOnlyItselfAndDiesWhole() async throws {
        let fixture = try await SandboxFixture()
        defer { fixture.tearDown() }
        let listener = try LoopbackListener()
        defer { listener.close() }

        // Q4: the same cluster started plainly, then sandboxed, in one run.
        let plainStart = ContinuousClock.now
        let plainDate = Date()
        let plain = try Spawner.spawn(
            SpawnSpec(executable: Self.bin + "/postgres", arguments: ["-D", fixture.data], workingDirectory: fixture.data,
                      user: fixture.user, newSession: true),
            stdout: fixture.log, stderr: fixture.log)
        try await fixture.waitUntilReady(watching: plain, since: plainDate)
        let plainReady = ContinuousClock.now - plainStart
        kill(plain, SIGINT)
        #expect(await ProcessWatcher.shared.waitForExit(pid: plain, isChild: true) == .exited(0))

        let plan = fixture.plan(network: .none)
        let sandboxStart = ContinuousClock.now
        let sandboxDate = Date()
        let bwrap = try fixture.start(plan)
        let postmaster = try #require(await SandboxProcesses.waitForPostmaster(ofBwrap: bwrap), "no postmaster under bwrap \(bwrap)")
        let postmasterFound = ContinuousClock.now - sandboxStart
        try await fixture.waitUntilReady(watching: bwrap, since: sandboxDate)
        let sandboxReady = ContinuousClock.now - sandboxStart
        print("sandbox timing: unsandboxed ready \(plainReady), sandboxed: postmaster found \(postmasterFound), ready \(sandboxReady)")

        // Host pids: B (bwrap), I (the init shell, pid 1 inside), M (the postmaster, pid 2 inside).
        let initPID = try #require(SandboxProcesses.sandboxInit(ofBwrap: bwrap))
        let reading = try #require(ProcessReading.read(postmaster))
        #expect(reading.nsPIDs == [postmaster, 2])
        #expect(reading.parent == initPID)
        #expect(ProcessReading.read(initPID)?.nsPIDs == [initPID, 1])
        #expect(ProcessReading.read(bwrap)?.nsPIDs == [bwrap])

        // Q5: postmaster.pid names M as the sandbox sees it; the paths are the host's paths.
        let lockText = try String(contentsOfFile: fixture.data + "/postmaster.pid", encoding: .utf8)
        let lockFile = try #require(PostmasterLockFile.parse(lockText))
        #expect(lockFile == PostmasterLockFile(pid: 2, dataDirectory: fixture.data, socketDirectory: fixture.socketDirectory))
        #expect(SandboxProcesses.verdict(reading, lockFile: lockFile, dataDirectory: fixture.data, uid: fixture.user.uid,
                                         expectedStartTime: reading.startTime) == .postmaster)
        #expect(SandboxProcesses.findPostmaster(dataDirectory: fixture.data, uid: fixture.user.uid)?.pid == postmaster)
        // FleetSystem's unsandboxed check would take pid 2 as a host pid: it must not say yes.
        #expect(PostmasterPID.read(dataDirectory: fixture.data)?.isLivePostmaster(expectedDataDirectory: fixture.data) != true)

        // What the tenant's superuser sees.
        let ps = try await fixture.inside("ps -e -o pid= -o comm=")
        let commands = Set(ps.compactMap { $0.split(separator: " ").last.map(String.init) })
        #expect(commands.isSubset(of: ["sh", "postgres", "ps"]), "ps -e inside: \(ps)")
        #expect(ps.first?.split(separator: " ").map(String.init) == ["1", "sh"])
        #expect(try await fixture.inside("id -un; id -u") == [fixture.user.name, String(fixture.user.uid)])
        let absent = [
            "/etc/shadow", fixture.otherTenant, fixture.daemonFile, "/dev/shm/\(fixture.hostShmMarker)", "/root", "/work", "/var",
        ]
        for path in absent {
            #expect(try await fixture.inside("test -e '\(path)' && echo present || echo absent") == ["absent"], "\(path) is visible")
        }
        #expect(try await fixture.inside("test -S '\(fixture.socketDirectory)/.s.PGSQL.5432' && echo present") == ["present"])
        #expect(try await fixture.inside("df -k --output=size /dev/shm | tail -1 | tr -d ' '") == [String(plan.shmSize / 1024)])
        #expect(try await fixture.inside("df -k --output=size /tmp | tail -1 | tr -d ' '") == [String(plan.tmpSize / 1024)])
        #expect(try await fixture.inside("touch /newfile 2>/dev/null && echo wrote || echo read-only") == ["read-only"])
        #expect(try await fixture.inside("touch /usr/newfile 2>/dev/null && echo wrote || echo read-only") == ["read-only"])
        #expect(try await fixture.inside("unshare -U true 2>/dev/null && echo allowed || echo refused") == ["refused"])
        #expect(try await fixture.inside("grep CapEff /proc/self/status | tr -d '\\t'") == ["CapEff:0000000000000000"])
        #expect(try await fixture.inside("hostname") == [plan.hostname])
        // Network none: the host's listener is unreachable from inside, reachable from the host.
        let connect = "bash -c 'exec 3<>/dev/tcp/127.0.0.1/\(listener.port)' 2>/dev/null && echo connected || echo refused"
        #expect(try await fixture.inside(connect) == ["refused"])
        #expect(try await Command.run("/bin/sh", ["-c", connect]).stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "connected")

        // Q3: SIGKILL of M while a backend sleeps, a backend waits on a program, and an orphan
        // lives under pid 1: by the time B has exited, no process of the tenant is left.
        let sleeper = try fixture.backgroundQuery("select pg_sleep(600)")
        // Into a table of its own: the probes truncate `probe`, which this COPY would keep locked.
        _ = try await fixture.sql("create table hold(line text)")
        let copier = try fixture.backgroundQuery("copy hold from program 'sleep 600'")
        _ = try await fixture.inside("setsid sleep 601 >/dev/null 2>&1 < /dev/null & echo started")
        #expect(try await eventually { fixture.commands(ofUID: fixture.user.uid).filter { $0 == "sleep" }.count == 2 })
        #expect(try await eventually {
            try await fixture.sql("select count(*) from pg_stat_activity where query = 'select pg_sleep(600)'") == ["1"]
        })
        kill(postmaster, SIGKILL)
        let status = await ProcessWatcher.shared.waitForExit(pid: bwrap, isChild: true)
        let survivors = ProcFS.processes(ofUID: fixture.user.uid)
        #expect(survivors.isEmpty, "left after B exited: \(fixture.commands(ofUID: fixture.user.uid))")
        #expect(status == .exited(137))
        #expect(SandboxExit.commandStatus(fromBwrap: status) == .signaled(SIGKILL))
        _ = await ProcessWatcher.shared.waitForExit(pid: sleeper, isChild: true)
        _ = await ProcessWatcher.shared.waitForExit(pid: copier, isChild: true)

        // Restart after the crash (recovery), then SIGINT to M: a clean fast shutdown.
        let againDate = Date()
        let again = try fixture.start(plan)
        let postmasterAgain = try #require(await SandboxProcesses.waitForPostmaster(ofBwrap: again))
        try await fixture.waitUntilReady(watching: again, since: againDate)
        let stopAsked = ContinuousClock.now
        kill(postmasterAgain, SIGINT)
        let stopped = await ProcessWatcher.shared.waitForExit(pid: again, isChild: true)
        #expect(stopped == .exited(0), "\(stopped): \(Files.tail(fixture.base + "/postgres.log", lines: 15).joined(separator: "\n"))")
        print("sandbox timing: SIGINT to M until B exited \(ContinuousClock.now - stopAsked)")
        #expect(ProcFS.processes(ofUID: fixture.user.uid).isEmpty)
    }

    @Test func killingTheDaemonLeavesTheTenantRunning() async throws {
        let fixture = try await SandboxFixture()
        defer { fixture.tearDown() }
        let plan = fixture.plan(network: .none)
        let invocation = try plan.invocation()
        try fixture.writeFiles(invocation)
        // A stand-in daemon: it starts B (as the launcher would: tenant uid, own session) and waits.
        let pidFile = fixture.base + "/bwrap.pid"
        let script = "setsid setpriv --reuid \(fixture.user.uid) --regid \(fixture.user.gid) --clear-groups -- \"$@\" "
            + ">>'\(fixture.base)/postgres.log' 2>&1 </dev/null & echo $! > '\(pidFile)'; wait"
        let daemonDate = Date()
        let daemon = try Spawner.spawn(
            SpawnSpec(executable: "/bin/sh", arguments: ["-c", script, "sh"] + invocation.arguments, environment: invocation.environment,
                      newSession: true))
        #expect(try await eventually { (try? String(contentsOfFile: pidFile, encoding: .utf8))?.isEmpty == false })
        let bwrap = try #require(pid_t(try String(contentsOfFile: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        let postmaster = try #require(await SandboxProcesses.waitForPostmaster(ofBwrap: bwrap))
        try await fixture.waitUntilReady(watching: bwrap, since: daemonDate)

        kill(daemon, SIGKILL)
        #expect(await ProcessWatcher.shared.waitForExit(pid: daemon, isChild: true) == .signaled(SIGKILL))
        #expect(try await fixture.sql("select 1") == ["1"])
        #expect(ProcFS.isAlive(postmaster) && ProcFS.isAlive(bwrap))
        // Re-adoption finds it from the data directory alone.
        #expect(SandboxProcesses.findPostmaster(dataDirectory: fixture.data, uid: fixture.user.uid)?.pid == postmaster)

        kill(postmaster, SIGINT)
        _ = await ProcessWatcher.shared.waitForExit(pid: bwrap, isChild: false)
        #expect(try await eventually { ProcFS.processes(ofUID: fixture.user.uid).isEmpty })
    }

    @Test func hostNetworkReachesTheHost() async throws {
        let fixture = try await SandboxFixture(initdb: false)
        defer { fixture.tearDown() }
        let listener = try LoopbackListener()
        defer { listener.close() }
        let connect = "exec 3<>/dev/tcp/127.0.0.1/\(listener.port) && echo connected"
        for (network, expected) in [(SandboxNetwork.host, true), (.none, false)] {
            var plan = fixture.plan(network: network)
            plan.command = ["/bin/bash", "-c", connect]
            let invocation = try plan.invocation()
            try fixture.writeFiles(invocation)
            let result = try await Command.run(
                invocation.executable, Array(invocation.arguments.dropFirst()), environment: invocation.environment, user: fixture.user)
            #expect(result.succeeded == expected, "network \(network): \(result.status) \(result.stderr)")
            #expect(result.stdout.contains("connected") == expected)
        }
    }
}

private func eventually(timeout: Duration = .seconds(30), _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(20))
    }
    return false
}

/// A throwaway OS user, its cluster in a temp directory, and things it must not see.
final class SandboxFixture: @unchecked Sendable {
    let base: String
    let user: UserIdentity
    let tenantDirectory: String
    let data: String
    let socketDirectory: String
    let stateDirectory: String
    let otherTenant: String
    let daemonFile: String
    let hostShmMarker: String
    let log: Int32

    init(initdb: Bool = true) async throws {
        try #require(geteuid() == 0, "the sandbox tests create OS users and need root (or set PGFLEET_SKIP_INTEGRATION=1)")
        let tag = String(UInt32.random(in: 0..<UInt32.max), radix: 36)
        base = "/tmp/pgfleet-sandbox-\(tag)"
        let name = "pgfsbx\(tag)"
        tenantDirectory = base + "/tenants/acme"
        data = tenantDirectory + "/data"
        socketDirectory = tenantDirectory + "/run"
        stateDirectory = base + "/state"
        otherTenant = base + "/tenants/other"
        daemonFile = base + "/catalog.sqlite"
        hostShmMarker = "pgfleet-sandbox-\(tag)"
        try Files.makeDirectory(base, mode: 0o711)
        try Files.makeDirectory(base + "/tenants", mode: 0o711)
        try Files.makeDirectory(stateDirectory, mode: 0o755)
        try Files.makeDirectory(otherTenant, mode: 0o755)
        try Files.write("not yours\n", to: otherTenant + "/secret", mode: 0o644)
        try Files.write("catalog\n", to: daemonFile, mode: 0o644)
        try Files.write("host\n", to: "/dev/shm/" + hostShmMarker, mode: 0o644)
        log = try Files.openLog(base + "/postgres.log", mode: 0o644, owner: nil)
        try await Command.run("/usr/sbin/useradd", ["-M", "-d", tenantDirectory, "-s", "/usr/sbin/nologin", name]).check("useradd")
        user = try #require(OSUsers.lookup(name))
        try Files.makeDirectory(tenantDirectory, mode: 0o700, owner: user)
        try Files.makeDirectory(socketDirectory, mode: 0o700, owner: user)
        guard initdb else { return }
        try await Command.run(SandboxRecipeTests.bin + "/initdb", ["-D", data, "-U", "postgres", "--auth=trust", "-N"], user: user)
            .check("initdb")
        let conf = "listen_addresses = ''\nunix_socket_directories = '\(socketDirectory)'\nshared_buffers = 16MB\nfsync = off\n"
        let handle = try #require(FileHandle(forWritingAtPath: data + "/postgresql.conf"))
        handle.seekToEndOfFile()
        handle.write(Data(conf.utf8))
        try handle.close()
    }

    func plan(network: SandboxNetwork) -> SandboxPlan {
        SandboxPlan(
            bundleDirectory: "/usr/lib/postgresql/15", tenantDirectory: tenantDirectory, network: network,
            shmSize: 32 << 20, tmpSize: 16 << 20, hostname: "acme", user: user,
            command: [SandboxRecipeTests.bin + "/postgres", "-D", data], workingDirectory: tenantDirectory,
            stateDirectory: stateDirectory, hostLayout: SandboxHostLayout.read()
        )
    }

    func writeFiles(_ invocation: SandboxInvocation) throws {
        for file in invocation.files { try Files.write(file.contents, to: file.hostPath, mode: 0o644, sync: false) }
    }

    /// Starts B as the launcher will: tenant uid/gid, no supplementary groups, its own session.
    func start(_ plan: SandboxPlan) throws -> pid_t {
        let invocation = try plan.invocation()
        try writeFiles(invocation)
        return try Spawner.spawn(
            SpawnSpec(executable: invocation.executable, arguments: Array(invocation.arguments.dropFirst()),
                      environment: invocation.environment, user: invocation.switchUserBeforeExec ? user : nil, newSession: true),
            stdout: log, stderr: log)
    }

    /// Ready when postmaster.pid's status line says so (PostgreSQL writes "ready" once it accepts
    /// connections) in a file written by a postmaster started since `since`: a SIGKILLed one
    /// leaves its "ready" file behind.
    func waitUntilReady(watching pid: pid_t, since: Date) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        let earliest = Int(since.timeIntervalSince1970)
        while ContinuousClock.now < deadline {
            if let text = try? String(contentsOfFile: data + "/postmaster.pid", encoding: .utf8) {
                let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
                if lines.count > 7, lines[7] == "ready", let started = Int(lines[2]), started >= earliest { return }
            }
            guard ProcFS.isAlive(pid), ProcFS.stat(of: pid)?.state != "Z" else {
                throw HarnessError("postgres exited at start-up:\n" + Files.tail(base + "/postgres.log", lines: 20).joined(separator: "\n"))
            }
            try await Task.sleep(for: .milliseconds(2))
        }
        throw HarnessError("postgres not ready within 60 s")
    }

    func sql(_ statement: String) async throws -> [String] {
        let result = try await Command.run(
            SandboxRecipeTests.bin + "/psql", ["-h", socketDirectory, "-U", "postgres", "-d", "postgres", "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", statement])
        try result.check("psql \(statement)")
        return result.stdout.split(separator: "\n").map(String.init)
    }

    /// Runs `shell` inside the sandbox as PostgreSQL runs a program for its superuser and returns its output lines.
    func inside(_ shell: String) async throws -> [String] {
        _ = try await sql("create table if not exists probe(line text)")
        return try await sql("truncate probe; copy probe from program $probe$\(shell)$probe$; select line from probe")
    }

    func backgroundQuery(_ statement: String) throws -> pid_t {
        try Spawner.spawn(SpawnSpec(
            executable: SandboxRecipeTests.bin + "/psql", arguments: ["-h", socketDirectory, "-U", "postgres", "-d", "postgres", "-XAtq", "-c", statement],
            newSession: true))
    }

    func commands(ofUID uid: uid_t) -> [String] {
        ProcFS.processes(ofUID: uid).compactMap {
            (try? String(contentsOfFile: "/proc/\($0)/comm", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    func tearDown() {
        for pid in ProcFS.processes(ofUID: user.uid) { kill(pid, SIGKILL) }
        for _ in 0..<500 where !ProcFS.processes(ofUID: user.uid).isEmpty { usleep(10_000) }
        close(log)
        // userdel waited for on this thread: a semaphore waiting for a task would block one of
        // the few cooperative threads, and two fixtures torn down at once would wait forever.
        if let pid = try? Spawner.spawn(SpawnSpec(executable: "/usr/sbin/userdel", arguments: [user.name])) {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
        try? Files.removeTree(base)
        unlink("/dev/shm/" + hostShmMarker)
    }
}

/// A TCP listener on 127.0.0.1 in the test's network namespace.
struct LoopbackListener {
    let fd: Int32
    let port: Int

    init() throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let fd = self.fd
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Bool in
                bind(fd, pointer, length) == 0 && listen(fd, 16) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard bound else { throw HarnessError("cannot listen on 127.0.0.1") }
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    func close() { _ = Glibc.close(fd) }
}
