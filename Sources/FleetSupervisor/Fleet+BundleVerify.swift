import FleetBundles
import FleetCatalog
import FleetCore
import FleetHost
import FleetSystem
import Foundation
import Synchronization

// `bundle verify`: the bundle run in a sandbox holding only it and its declared host files.
extension Fleet {
    /// The user the verification runs as: the probe user imports already run bundles' programs as.
    static let verifyUser = "nobody"

    public func verifyBundle(id: String, progress: @escaping ProgressReporter) async throws -> BundleInfo {
        guard let record = try catalog.bundle(id: id) else { throw FleetError.bundleNotFound(id.debugClipped) }
        var bundle = try bundles.load(id: id)
        let verification = try await runVerification(bundle, progress: progress)
        // Loaded again: a concurrent verify may have written in between; the last one wins whole.
        bundle = try bundles.load(id: id)
        bundle.manifest.verification = verification
        let path = bundle.directory + "/" + BundleManifest.fileName
        try Files.write(String(decoding: try bundle.manifest.encoded(), as: UTF8.self), to: path, mode: 0o644)
        loadedBundles[id] = nil
        pool.wake()
        diskPool.wake()
        return try info(for: record)
    }

    /// Why a new tenant (or the ready pool) may not use this bundle, or nil.
    func verificationRefusal(bundleID: String) -> String? {
        guard let bundle = try? loadBundle(id: bundleID) else { return nil }
        return BundleVerification.refusal(bundle.manifest)
    }

    private func runVerification(_ bundle: FleetBundles.Bundle, progress: @escaping ProgressReporter) async throws -> BundleManifest.Verification {
        guard geteuid() == 0 else {
            throw FleetError.conflict("bundle verify runs the bundle in a sandbox, which needs the daemon to run as root; start `pgfleet serve` as root")
        }
        guard let user = OSUsers.lookup(Self.verifyUser), user.uid != 0 else {
            throw FleetError.failed("bundle verify runs the bundle as the user \(Self.verifyUser), which this host lacks; create it (`useradd -r \(Self.verifyUser)`)")
        }
        let started = ContinuousClock.now
        var checks: [BundleManifest.Verification.Check] = []

        await progress(.progress("verifying \(bundle.id): checking the files against the manifest"))
        let problems = try await bundles.verify(id: bundle.id) { _ in }
        let hostProblems = problems.filter { $0.hasPrefix("host library ") || $0.hasPrefix("the host's ") }
        let fileProblems = problems.filter { !hostProblems.contains($0) }
        checks.append(.init(name: BundleVerification.checksumsCheck, passed: fileProblems.isEmpty, detail: Self.joined(fileProblems)))
        checks.append(.init(name: "host libraries as at import", passed: hostProblems.isEmpty, detail: Self.joined(hostProblems)))

        let settings = options.sandbox ?? SandboxSettings(hostLayout: SandboxHostLayout.read())
        guard access(settings.bwrapPath, X_OK) == 0 else {
            throw FleetError.conflict("bundle verify needs bubblewrap at \(settings.bwrapPath) for its sandbox; install it (`apt-get install bubblewrap`)")
        }
        let token = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let work = options.layout.root + "/.verify-" + token
        let state = options.layout.sandboxesDirectory + "/.verify-" + token
        defer {
            try? Files.removeTree(work)
            try? Files.removeTree(state)
        }
        try Files.makeDirectory(options.layout.sandboxesDirectory, mode: 0o711)
        try Files.makeDirectory(state, mode: 0o755)
        try Files.makeDirectory(work, mode: 0o700, owner: user)
        let run = VerifyRun(
            bundle: bundle, user: user, work: work, state: state, settings: settings,
            binds: BundleVerification.declaredBinds(bundle.manifest, bundleDirectory: bundle.directory) { FileManager.default.fileExists(atPath: $0) },
            progress: progress
        )
        checks += await run.sandboxChecks()

        let passed = checks.allSatisfy(\.passed)
        let took = ContinuousClock.now - started
        logger.info("verified bundle", metadata: [
            "bundle": "\(bundle.id)", "passed": "\(passed)", "took": "\(took)",
            "failed": "\(checks.filter { !$0.passed }.map(\.name).joined(separator: ", "))",
        ])
        let seconds = Double(took.components.seconds) + Double(took.components.attoseconds) / 1e18
        await progress(.progress("verified \(bundle.id) in \(String(format: "%.1f", seconds)) s: \(passed ? "every check passed" : "\(checks.filter { !$0.passed }.count) of \(checks.count) checks failed")"))
        return BundleManifest.Verification(
            verifiedAt: Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down)), passed: passed,
            pgfleetVersion: PGFleetVersion.current, checks: checks
        )
    }

    static func joined(_ problems: [String]) -> String? {
        guard !problems.isEmpty else { return nil }
        let shown = problems.prefix(10).joined(separator: "; ")
        return problems.count > 10 ? shown + "; and \(problems.count - 10) more" : shown
    }
}

/// One verification's sandbox runs, each bounded in time.
private struct VerifyRun: Sendable {
    typealias Check = BundleManifest.Verification.Check

    var bundle: FleetBundles.Bundle
    var user: UserIdentity
    var work: String
    var state: String
    var settings: SandboxSettings
    var binds: [ReadOnlyBind]
    var progress: ProgressReporter

    var data: String { work + "/data" }

    func plan(_ command: [String]) -> SandboxPlan {
        SandboxPlan(
            bundleDirectory: bundle.directory, tenantDirectory: work, network: .none, shmSize: SandboxSettings.unlimitedShmBytes,
            tmpSize: SandboxSettings.tmpBytes, hostname: "verify", user: user, command: command,
            environment: Fleet.environment(for: bundle), workingDirectory: work, stateDirectory: state,
            hostLayout: settings.hostLayout, identityMode: settings.identityMode, bwrapPath: settings.bwrapPath,
            hostView: .only(binds: binds), extraBinds: Fleet.vendoredBinds(bundle), dieWithParent: true
        )
    }

    /// Runs `command` in the sandbox; nil when it outlived `timeout` (then bwrap is ended, and
    /// with it, through --die-with-parent, everything in the sandbox).
    func run(_ command: [String], timeout: Duration, stdin: [UInt8]? = nil) async -> Result<CommandResult, any Error>? {
        let plan = plan(command)
        let (user, work) = (user, work)
        return await withTaskGroup(of: Result<CommandResult, any Error>?.self) { group in
            group.addTask {
                do { return .success(try await Fleet.run(plan, owner: user, stdin: stdin, workingDirectory: work)) } catch { return .failure(error) }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }

    /// A check from one bounded run: passed when it exits 0 and `accept` (if any) takes its output.
    func check(
        _ name: String, _ command: [String], timeout: Duration, stdin: [UInt8]? = nil,
        accept: ((CommandResult) -> String?)? = nil
    ) async -> (Check, CommandResult?) {
        await progress(.progress(name))
        guard let outcome = await run(command, timeout: timeout, stdin: stdin) else {
            return (Check(name: name, passed: false, detail: "did not finish within \(timeout.components.seconds) s; ended"), nil)
        }
        switch outcome {
        case .failure(let error):
            return (Check(name: name, passed: false, detail: "could not run: \(error)"), nil)
        case .success(let result):
            guard result.succeeded else {
                return (Check(name: name, passed: false, detail: await explain(result)), result)
            }
            if let accept, let problem = accept(result) { return (Check(name: name, passed: false, detail: problem), result) }
            return (Check(name: name, passed: true), result)
        }
    }

    /// A failed run in the user's terms: the loader's words and which file needed the library.
    func explain(_ result: CommandResult) async -> String {
        let output = result.stderr + "\n" + result.stdout
        let tail = BundleVerification.tail(output)
        let missing = BundleVerification.missingLibraries(in: output)
        guard !missing.isEmpty else { return "\(result.status)" + (tail.isEmpty ? "" : ": " + tail) }
        let needed = await neededLibraries()
        return BundleVerification.describeMissing(missing, needed: needed, bundleDirectory: bundle.directory, failing: output) + " — " + tail
    }

    /// NEEDED of every ELF file of the bundle and of its declared host libraries, from readelf
    /// (run as the verify user: the files are the archive's). Only asked when a library is missing.
    func neededLibraries() async -> [String: [String]] {
        var files = bundle.manifest.files.filter { file in
            guard !file.isSymlink, let mode = file.mode else { return false }
            return mode & 0o111 != 0 || file.path.hasSuffix(".so") || file.path.contains(".so.")
        }.map { bundle.directory + "/" + $0.path }
        files += binds.map(\.source).filter { $0.contains(".so") }
        guard !files.isEmpty, let result = try? await Command.run("/usr/bin/readelf", ["-d", "-W"] + files, user: user) else { return [:] }
        return BundleVerification.neededByFile(readelf: result.stdout, files: files)
    }

    func psql(_ sql: String) -> [String] {
        [bundle.binary("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", work, "-p", "5432", "-U", user.name, "-d", "postgres", "-c", sql]
    }

    func sandboxChecks() async -> [Check] {
        var checks: [Check] = []
        let (initdb, _) = await check("initdb", [
            bundle.initdb, "--pgdata=\(data)", "--username=\(user.name)", "--auth-local=peer", "--auth-host=reject",
            "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions", "--no-sync", "--wal-segsize=1",
        ], timeout: .seconds(120))
        checks.append(initdb)
        let (upgrade, _) = await check("pg_upgrade --help", [bundle.binary("pg_upgrade"), "--help"], timeout: .seconds(20))
        guard initdb.passed else {
            return checks + [upgrade] + Self.skipped(["server start", "timezone Europe/Berlin", "text sort", "extensions", "pg_dump", "server stop"], after: "initdb")
        }

        await progress(.progress("starting the server (unix socket only)"))
        let server = ServerRun(Task {
            await run([bundle.postgres, "-D", data, "-k", work, "-c", "listen_addresses=", "-c", "port=5432", "-c", "huge_pages=off",
                       "-c", "fsync=off", "-c", "max_connections=10", "-c", "shared_buffers=16MB"], timeout: .seconds(600))
        })
        let start = await waitUntilReady(server: server)
        checks.append(start)
        guard start.passed else {
            await stop(server)
            return checks + [upgrade] + Self.skipped(["timezone Europe/Berlin", "text sort", "extensions", "pg_dump", "server stop"], after: "server start")
        }

        let (zone, _) = await check("timezone Europe/Berlin", psql(BundleVerification.zoneQuery), timeout: .seconds(30)) { result in
            let got = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").last.map(String.init) ?? ""
            return got == BundleVerification.zoneExpected ? nil : "'2026-07-01 12:00+00' in Europe/Berlin gave \(got.debugClipped), expected 2026-07-01 14:00:00"
        }
        checks.append(zone)
        let (sort, _) = await check("text sort", psql(BundleVerification.sortQuery), timeout: .seconds(30)) { result in
            let lines = result.stdout.split(separator: "\n").map(String.init)
            guard lines.count == 2 else { return "unexpected output: \(result.stdout.debugClipped)" }
            let note = "COLLATE \"C\": \(lines[0]); default (C.UTF-8): \(lines[1])"
            return lines[0] == BundleVerification.sortExpected && lines[1] == BundleVerification.sortExpected ? nil : note + "; expected \(BundleVerification.sortExpected) for both"
        }
        checks.append(sort.passed ? Check(name: sort.name, passed: true, detail: "COLLATE \"C\" and default: \(BundleVerification.sortExpected)") : sort)

        let names = BundleVerification.extensionNames(bundle.manifest)
        await progress(.progress("CREATE EXTENSION … CASCADE for \(names.count) extensions"))
        if let outcome = await run(psql(BundleVerification.extensionsScript(names)), timeout: .seconds(120)), case .success(let result) = outcome {
            var extensionChecks = BundleVerification.extensionChecks(names: names, output: result.stderr + "\n" + result.stdout)
            for index in extensionChecks.indices where !extensionChecks[index].passed {
                let detail = extensionChecks[index].detail ?? ""
                let missing = BundleVerification.missingLibraries(in: detail)
                if !missing.isEmpty {
                    let needed = await neededLibraries()
                    extensionChecks[index].detail = BundleVerification.describeMissing(missing, needed: needed, bundleDirectory: bundle.directory) + " — " + detail
                }
            }
            checks += extensionChecks
        } else {
            checks.append(Check(name: "extensions", passed: false, detail: "CREATE EXTENSION of the \(names.count) extensions did not finish within 120 s"))
        }

        let (dump, _) = await check("pg_dump", [bundle.binary("pg_dump"), "-h", work, "-p", "5432", "-U", user.name, "-d", "postgres", "-f", work + "/dump.sql"], timeout: .seconds(60))
        checks.append(dump)
        checks.append(upgrade)
        checks.append(await stop(server))
        return checks
    }

    static func skipped(_ names: [String], after: String) -> [Check] {
        names.map { Check(name: $0, passed: false, detail: "not run: \(after) failed") }
    }

    /// Until postmaster.pid says "ready", the server exits, or 60 s pass.
    func waitUntilReady(server: ServerRun) async -> Check {
        let name = "server start"
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if server.exited.isSet {
                let detail: String
                switch await server.task.value {
                case .success(let result)?: detail = "the server exited: " + (await explain(result))
                case .failure(let error)?: detail = "could not run postgres: \(error)"
                case nil: detail = "the server did not start"
                }
                return Check(name: name, passed: false, detail: detail)
            }
            if let text = try? String(contentsOfFile: data + "/postmaster.pid", encoding: .utf8), text.contains("\nready") {
                return Check(name: name, passed: true)
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return Check(name: name, passed: false, detail: "the server was not ready within 60 s")
    }

    /// A fast shutdown (SIGINT to the postmaster), then SIGQUIT, then bwrap ended: bounded, and
    /// nothing of the sandbox is left whatever the server does.
    @discardableResult
    func stop(_ server: ServerRun) async -> Check {
        let name = "server stop"
        await progress(.progress("stopping the server"))
        guard let postmaster = SandboxProcesses.findPostmaster(dataDirectory: data, uid: user.uid) else {
            server.task.cancel()
            _ = await server.task.value
            return Check(name: name, passed: false, detail: "no running postmaster found to stop")
        }
        kill(postmaster.pid, SIGINT)
        let stopped = await server.finished(within: .seconds(30))
        if !stopped {
            kill(postmaster.pid, SIGQUIT)
            if !(await server.finished(within: .seconds(5))) { server.task.cancel() }
        }
        let outcome = await server.task.value
        guard stopped else { return Check(name: name, passed: false, detail: "a fast shutdown did not finish within 30 s; ended with SIGQUIT") }
        if case .success(let result)? = outcome, !result.succeeded {
            return Check(name: name, passed: false, detail: "the server exited \(result.status): " + BundleVerification.tail(result.stderr))
        }
        return Check(name: name, passed: true)
    }
}

/// The server's run and whether it has ended, readable without waiting for it.
private struct ServerRun: Sendable {
    let task: Task<Result<CommandResult, any Error>?, Never>
    let exited = ExitFlag()

    init(_ task: Task<Result<CommandResult, any Error>?, Never>) {
        self.task = task
        let exited = exited
        Task {
            _ = await task.value
            exited.set()
        }
    }

    func finished(within timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !exited.isSet, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        return exited.isSet
    }
}

/// Set once, read from anywhere.
private final class ExitFlag: Sendable {
    private let flag = Mutex(false)
    func set() { flag.withLock { $0 = true } }
    var isSet: Bool { flag.withLock { $0 } }
}
