import FleetCore
import FleetHost
import FleetSystem
import Foundation
import Testing

/// Issue 13's sandbox through pgfleet itself: what a tenant's superuser sees from inside
/// (`COPY … FROM PROGRAM`), its network, and re-adoption after `kill -9` of the daemon.
@Suite(.serialized, integrationTrait)
struct SandboxIntegrationTests {
    static let serve = ["--no-system-bundles"]

    /// Runs `shell` inside the tenant, as its superuser can, and returns the lines it printed.
    static func inside(_ harness: Harness, _ tenant: TenantInfo, _ password: String, _ shell: String) async throws -> [String] {
        try await harness.mustQuery(tenant, password: password, "CREATE TABLE IF NOT EXISTS probe(line text)")
        let output = try await harness.mustQuery(
            tenant, password: password, "TRUNCATE probe; COPY probe FROM PROGRAM $probe$\(shell)$probe$; SELECT line FROM probe")
        return output.split(separator: "\n").map(String.init)
    }

    /// The proxy's port, from the daemon's `--listen 127.0.0.1:PORT`.
    static func proxyPort(_ harness: Harness) throws -> Int {
        let listen = try #require(harness.serveArguments.firstIndex(of: "--listen").map { harness.serveArguments[$0 + 1] })
        return try #require(Int(listen.split(separator: ":").last ?? ""))
    }

    static func connect(_ port: Int) -> String {
        "bash -c 'exec 3<>/dev/tcp/127.0.0.1/\(port)' 2>/dev/null && echo connected || echo refused"
    }

    @Test func aTenantSeesOnlyItselfAndReachesNoNetworkUnlessAsked() async throws {
        try await withHarness(extraServeArguments: Self.serve) { harness in
            try await harness.startDaemon()
            try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
            let (alpha, alphaPassword) = try await harness.createTenant("alpha")
            let (beta, betaPassword) = try await harness.createTenant("beta", extra: ["--network", "host"])
            #expect(alpha.sandboxed == true && alpha.network == SandboxNetwork.none)
            #expect(beta.sandboxed == true && beta.network == .host)
            let marker = "pgfleet-sandbox-test-\(UInt32.random(in: 0..<UInt32.max))"
            try Files.write("host\n", to: "/dev/shm/" + marker, mode: 0o644)
            defer { unlink("/dev/shm/" + marker) }

            // Only its own processes, as its own user, with no capability and no way to nest a user namespace.
            let processes = try await Self.inside(harness, alpha, alphaPassword, "ps -e -o pid= -o comm=")
            let commands = Set(processes.compactMap { $0.split(separator: " ").last.map(String.init) })
            #expect(commands.isSubset(of: ["sh", "postgres", "ps"]), "ps -e inside: \(processes)")
            #expect(processes.first?.split(separator: " ").map(String.init) == ["1", "sh"])
            #expect(try await Self.inside(harness, alpha, alphaPassword, "id -un") == [alpha.osUser])
            #expect(try await Self.inside(harness, alpha, alphaPassword, "grep CapEff /proc/self/status | tr -d '\\t'") == ["CapEff:0000000000000000"])
            #expect(try await Self.inside(harness, alpha, alphaPassword, "unshare -U true 2>/dev/null && echo allowed || echo refused") == ["refused"])

            // None of the host's, the daemon's or the neighbour's files.
            let absent = [
                "/etc/shadow", harness.layout.catalogPath, harness.layout.runDirectory, beta.dataDirectory, beta.socketDirectory,
                "/dev/shm/" + marker, "/root", "/home", "/var/log",
            ]
            for path in absent {
                #expect(try await Self.inside(harness, alpha, alphaPassword, "test -e '\(path)' && echo present || echo absent") == ["absent"], "\(path) is visible")
            }
            #expect(try await Self.inside(harness, alpha, alphaPassword, "grep -c . /etc/passwd") == ["3"])
            #expect(try await Self.inside(harness, alpha, alphaPassword, "touch /usr/x 2>/dev/null && echo wrote || echo read-only") == ["read-only"])

            // Network none: not even the proxy on the host's loopback. Host: it is reachable.
            let port = try Self.proxyPort(harness)
            #expect(try await Self.inside(harness, alpha, alphaPassword, Self.connect(port)) == ["refused"])
            #expect(try await Self.inside(harness, beta, betaPassword, Self.connect(port)) == ["connected"])
            // Both still reach their clients through the proxy (the unix socket is shared, nothing else).
            let viaProxy = try await Command.run(
                Harness.psql, ["-XAtq", "-h", "127.0.0.1", "-p", String(port), "-U", "postgres@alpha", "-d", "postgres", "-c", "SELECT 7"],
                environment: SpawnSpec.baseEnvironment.merging(["PGPASSWORD": alphaPassword, "PGSSLMODE": "disable"]) { $1 })
            #expect(viaProxy.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "7", "\(viaProxy.stderr)")

            // A new network takes effect with the restart asked for.
            let changed = try await harness.mustRun(["tenant", "set", "beta", "--network", "none", "--restart"])
            #expect(changed.contains("network none: restarted"), "\(changed)")
            let betaAgain = try await harness.info("beta")
            #expect(betaAgain.network == SandboxNetwork.none && betaAgain.pid != beta.pid)
            #expect(try await Self.inside(harness, betaAgain, betaPassword, Self.connect(port)) == ["refused"])
            let bad = try await harness.cli(["tenant", "set", "beta", "--network", "wide"])
            #expect(!bad.succeeded && bad.stderr.contains("--network must be none"), "\(bad.stderr)")

            // A new password, set in single-user mode inside the sandbox, works.
            let reset = try await harness.cli(["tenant", "password", "alpha", "--password-stdin"], stdin: "fresh-secret\n")
            #expect(reset.succeeded, "\(reset.stderr)")
            #expect(reset.stdout.contains("alpha"), "\(reset.stdout)")
            let alphaAgain = try await harness.waitFor("alpha", state: .running)
            #expect(try await harness.mustQuery(alphaAgain, password: "fresh-secret", "SELECT 8") == "8")
            #expect(alphaAgain.sandboxed == true)
        }
    }

    @Test func aCrashLeavesNoOldBackendBehind() async throws {
        try await withHarness(extraServeArguments: Self.serve) { harness in
            try await harness.startDaemon()
            try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
            let (tenant, password) = try await harness.createTenant("crashy")
            let user = try #require(OSUsers.lookup(tenant.osUser))
            try await harness.mustQuery(tenant, password: password, "CREATE TABLE hold(line text); INSERT INTO hold VALUES ('kept')")
            // A backend asleep, one waiting on a program, and an orphan of the program's shell.
            let sleeper = Task { try await harness.psql(tenant, password: password, "SELECT pg_sleep(600)") }
            let copier = Task { try await harness.psql(tenant, password: password, "COPY hold FROM PROGRAM 'sleep 600'") }
            _ = try await Self.inside(harness, tenant, password, "setsid sleep 601 >/dev/null 2>&1 </dev/null & echo started")
            #expect(try await Harness.eventually {
                ProcFS.processes(ofUID: user.uid).filter { (try? String(contentsOfFile: "/proc/\($0)/comm", encoding: .utf8)) == "sleep\n" }.count == 2
            })
            #expect(try await Harness.eventually { Harness.busyBackends(of: tenant, command: "SELECT") == 1 })
            let before = Set(ProcFS.processes(ofUID: user.uid))

            kill(try #require(tenant.pid), SIGKILL)
            let again = try await harness.waitForRestart("crashy", replacing: tenant.pid!)
            #expect(again.state == .running && again.sandboxed == true)
            // The old PID namespace died with its postmaster: nothing of it writes to the data directory now.
            let survivors = before.intersection(ProcFS.processes(ofUID: user.uid))
            #expect(survivors.isEmpty, "old processes still alive: \(survivors.sorted())")
            #expect(Harness.postmasters(of: tenant.dataDirectory) == [again.pid!])
            #expect(try await harness.mustQuery(again, password: password, "SELECT line FROM hold") == "kept")
            _ = try? await sleeper.value
            _ = try? await copier.value
        }
    }

    @Test func kill9OfTheDaemonReadoptsTheSandboxAndNeverAStranger() async throws {
        try await withHarness(extraServeArguments: Self.serve) { harness in
            try await harness.startDaemon()
            try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
            let (tenant, password) = try await harness.createTenant("kept")
            let pid = try #require(tenant.pid)

            await harness.killDaemon()
            try await harness.startDaemon()
            let adopted = try await harness.waitFor("kept", state: .running)
            #expect(adopted.pid == pid, "re-adopted, not restarted")
            #expect(adopted.sandboxed == true)
            #expect(Harness.postmasters(of: tenant.dataDirectory) == [pid])
            #expect(try await harness.mustQuery(adopted, password: password, "SELECT 1") == "1")

            // The daemon dies, then the postmaster: the record names a pid that a stranger now has.
            await harness.killDaemon()
            let user = try #require(OSUsers.lookup(tenant.osUser))
            kill(pid, SIGKILL)
            #expect(try await Harness.eventually { ProcFS.processes(ofUID: user.uid).isEmpty })
            let stranger = try Spawner.spawn(SpawnSpec(
                executable: "/bin/sleep", arguments: ["600"], workingDirectory: "/",
                user: UserIdentity(name: "nobody", uid: 65534, gid: 65534), newSession: true))
            defer { kill(stranger, SIGKILL) }
            let recordFile = harness.layout.sandboxDirectory(try TenantName(validating: "kept")) + "/postmaster"
            let old = try #require(SandboxRecord.read(recordFile))
            try Files.write(SandboxRecord(pid: stranger, startTime: old.startTime).text, to: recordFile, mode: 0o644)

            try await harness.startDaemon()
            let started = try await harness.waitFor("kept", state: .running)
            #expect(started.pid != nil && started.pid != stranger)
            #expect(ProcFS.isAlive(stranger), "the stranger was signalled")
            #expect(Harness.postmasters(of: tenant.dataDirectory) == [try #require(started.pid)])
            #expect(try await harness.mustQuery(started, password: password, "SELECT 2") == "2")
        }
    }
}
