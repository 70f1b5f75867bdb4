import FleetCore
import FleetHost
import FleetSystem
import Foundation
import Logging

/// How one tenant's postmaster is started.
public struct PostmasterLaunch: Sendable {
    public var postgres: String
    public var dataDirectory: String
    public var socketDirectory: String
    public var logFile: String
    /// Nil when the daemon is not root: the postmaster then runs as the daemon's user.
    public var user: UserIdentity?
    public var environment: [String: String]
    /// The tenant's cgroups, joined by the postmaster before it execs.
    public var cgroup: CgroupPlacement?
    /// The postmaster's OOM score: -1000 so that an OOM kill inside the tenant takes a backend
    /// (its children reset theirs to 0 through PG_OOM_ADJUST_FILE) and the postmaster recovers.
    public var oomScoreAdjust: Int32?
    /// The postmaster's sandbox; nil: it runs with the host's view (no root, or `--sandbox off`).
    public var sandbox: SandboxLaunch?
    /// Run before each spawn: what this start is given (its huge pages), as settings for the
    /// postmaster's command line (`-c huge_pages=…`); throws when the start must not happen.
    public var startSettings: (@Sendable () async throws -> [String])?
    /// The postmaster's RLIMIT_NOFILE at each start (nil: the daemon's own); bwrap passes it on.
    public var fileLimit: @Sendable () -> Int? = { nil }

    public init(
        postgres: String, dataDirectory: String, socketDirectory: String, logFile: String, user: UserIdentity?,
        environment: [String: String] = SpawnSpec.baseEnvironment, cgroup: CgroupPlacement? = nil, oomScoreAdjust: Int32? = nil,
        sandbox: SandboxLaunch? = nil, startSettings: (@Sendable () async throws -> [String])? = nil
    ) {
        self.startSettings = startSettings
        self.sandbox = sandbox
        self.cgroup = cgroup
        self.oomScoreAdjust = oomScoreAdjust
        self.environment = environment
        self.postgres = postgres
        self.dataDirectory = dataDirectory
        self.socketDirectory = socketDirectory
        self.logFile = logFile
        self.user = user
    }
}

/// Where a tenant's processes belong: the `cgroup.procs` file of each of its cgroups.
public struct CgroupPlacement: Sendable {
    public var procsFiles: [String]
    /// Makes the cgroups again, with the tenant's limits, when they are gone (a start after a
    /// reboot, or someone removed them); throws when that cannot be done, and the start fails.
    public var ensure: @Sendable () throws -> Void

    public init(procsFiles: [String], ensure: @escaping @Sendable () throws -> Void) {
        self.procsFiles = procsFiles
        self.ensure = ensure
    }
}

/// How a sandboxed postmaster is started: bwrap B (the launcher's child) → the sandbox's pid 1
/// (an init shell) → the postmaster M. The supervisor signals M and learns of its end from B's
/// exit status, which carries M's.
public struct SandboxLaunch: Sendable {
    /// The sandbox at this start (its network may have changed since the last one).
    public var plan: @Sendable () -> SandboxPlan
    /// Where M's host pid and start time are kept for re-adoption (`SandboxRecord`).
    public var recordFile: String
    /// Processes left of the tenant (in its cgroups, or of its OS user). A start is refused while
    /// there are any: a postmaster in a new PID and IPC namespace would not see backends of an
    /// earlier one (postmaster.pid says 2 to every sandboxed postmaster, which PostgreSQL takes
    /// for its own pid, and System V shared memory is per namespace), and two would write one
    /// data directory.
    public var leftovers: @Sendable () -> [pid_t]
    /// Run before each start: what the sandbox needs on the host besides its plan.
    public var prepare: @Sendable () throws -> Void

    public init(
        plan: @escaping @Sendable () -> SandboxPlan, recordFile: String, prepare: @escaping @Sendable () throws -> Void = {},
        leftovers: @escaping @Sendable () -> [pid_t]
    ) {
        self.prepare = prepare
        self.plan = plan
        self.recordFile = recordFile
        self.leftovers = leftovers
    }
}

/// What the rest of the daemon sees of a supervised tenant.
public struct SupervisorSnapshot: Sendable, Equatable {
    public var state: TenantState
    public var desired: DesiredState
    public var pid: Int32?
    public var restarts: Int
    public var runningSince: Date?
    public var failureReason: String?
    /// Whether the postmaster (when there is one) runs in its sandbox.
    public var sandboxed: Bool?
}

/// Runs one tenant's postmaster as a foreground child in its own session and carries out what
/// `SupervisorMachine` decides. All I/O for supervision happens here.
public actor TenantSupervisor {
    public let name: TenantName
    private let launch: PostmasterLaunch
    private let probe: HealthProbe
    private let logger: Logger
    private let clock = ContinuousClock()
    private let epoch: ContinuousClock.Instant
    private var machine: SupervisorMachine
    private var runningSince: Date?
    private var reportedState: TenantState = .stopped
    private var waiters: [(id: Int, until: @Sendable (SupervisorMachine) -> Bool, continuation: CheckedContinuation<Void, Never>)] = []
    private var nextWaiterID = 0
    private let onFailureChange: @Sendable (TenantName, String?) async -> Void
    private let onStateChange: @Sendable () async -> Void
    private let running: RunningTenants?
    private let board: SnapshotBoard<SupervisorSnapshot>?

    public init(
        name: TenantName, launch: PostmasterLaunch, policy: RestartPolicy, probe: HealthProbe, logger: Logger,
        failureReason: String? = nil,
        running: RunningTenants? = nil,
        board: SnapshotBoard<SupervisorSnapshot>? = nil,
        onFailureChange: @escaping @Sendable (TenantName, String?) async -> Void,
        onStateChange: @escaping @Sendable () async -> Void
    ) {
        self.running = running
        self.board = board
        self.name = name
        self.launch = launch
        self.probe = probe
        var logger = logger
        logger[metadataKey: "tenant"] = "\(name)"
        self.logger = logger
        self.machine = SupervisorMachine(policy: policy)
        self.epoch = clock.now
        self.onFailureChange = onFailureChange
        self.onStateChange = onStateChange
        self.initialFailure = failureReason
        // What `snapshot` says of a new machine (stopped), spelled out: an initialiser cannot read it.
        board?.claim(name, by: ObjectIdentifier(self), SupervisorSnapshot(
            state: .stopped, desired: .stopped, pid: nil, restarts: 0, runningSince: nil, failureReason: failureReason, sandboxed: nil
        ))
    }

    private let initialFailure: String?

    private var now: Duration { clock.now - epoch }

    /// What is left of the tenant's processes, where the sandbox can tell (nil: not sandboxed).
    public nonisolated func sandboxLeftovers() -> [pid_t]? { launch.sandbox?.leftovers() }

    /// The postmaster's unix socket.
    public nonisolated var socketPath: String { "\(launch.socketDirectory)/.s.PGSQL.\(FleetLayout.tenantPort)" }

    public var snapshot: SupervisorSnapshot {
        var reason: String? = nil
        if case .failed(let why) = machine.phase { reason = why }
        return SupervisorSnapshot(
            state: machine.state, desired: machine.desired, pid: machine.pid, restarts: machine.restarts,
            runningSince: machine.state == .running ? runningSince : nil,
            failureReason: reason ?? (machine.state == .stopped ? initialFailure : machine.lastProblem),
            sandboxed: machine.pid == nil ? nil : pidIsSandboxed
        )
    }

    /// Whether the current postmaster was started in (or adopted from) a sandbox.
    private var pidIsSandboxed = false

    /// Starts (or keeps) the postmaster and returns once it is running or has failed.
    @discardableResult
    public func start() async -> SupervisorSnapshot {
        apply(machine.startRequested(now: now))
        await wait { $0.state == .running || $0.state == .failed || $0.desired == .stopped }
        return snapshot
    }

    /// Fast shutdown; returns once the postmaster is gone.
    @discardableResult
    public func stop() async -> SupervisorSnapshot {
        apply(machine.stopRequested(now: now))
        await wait { $0.state == .stopped || $0.state == .failed }
        return snapshot
    }

    /// Asks for a fast shutdown without waiting for it: a `start()` waiting meanwhile returns.
    public func requestStop() {
        apply(machine.stopRequested(now: now))
    }

    public func restart() async -> SupervisorSnapshot {
        await stop()
        return await start()
    }

    /// Shuts a running postmaster down cleanly for idleness; returns once it is gone (or, if it
    /// was not running, at once).
    @discardableResult
    public func suspend() async -> SupervisorSnapshot {
        apply(machine.suspendRequested(now: now))
        await wait { $0.isSettled }
        return snapshot
    }

    /// Starts a suspended tenant for a waiting connection; returns at the first outcome: running,
    /// or a failed start (the supervisor keeps retrying with back-off), or stopped meanwhile.
    public func wake() async -> SupervisorSnapshot {
        apply(machine.startRequested(now: now))
        await wait { [.running, .failed, .backoff, .stopped].contains($0.state) }
        return snapshot
    }

    /// Marks a tenant that was suspended when the previous daemon stopped: no postmaster until woken.
    public func restoreSuspended() {
        machine.restoredSuspended()
        apply([])
    }

    /// Takes over a postmaster left running by an earlier daemon; `sandboxed`: found in a
    /// sandbox (one an older pgfleet started without runs unsandboxed until its next start).
    @discardableResult
    public func adopt(pid: Int32, sandboxed: Bool = false) async -> SupervisorSnapshot {
        logger.info("re-adopting running postmaster", metadata: ["pid": "\(pid)", "sandboxed": "\(sandboxed)"])
        if !sandboxed && launch.sandbox != nil {
            logger.warning("this postmaster was started without a sandbox; it gets one at its next start (`pgfleet tenant restart`)", metadata: ["pid": "\(pid)"])
        }
        pidIsSandboxed = sandboxed
        apply(machine.adopted(pid: pid, now: now))
        watchExit(pid: pid, isChild: false)
        await wait { $0.state == .running || $0.state == .failed || $0.state == .backoff }
        return snapshot
    }

    private func wait(until predicate: @escaping @Sendable (SupervisorMachine) -> Bool) async {
        if predicate(machine) { return }
        let id = nextWaiterID
        nextWaiterID += 1
        await withCheckedContinuation { continuation in
            waiters.append((id, predicate, continuation))
        }
    }

    /// Carries out what the machine decided. Callers mutate the machine first (the actions are
    /// its answer), so state changes are detected against `reportedState`, not a local copy.
    private func apply(_ actions: [SupervisorMachine.Action]) {
        for action in actions {
            switch action {
            case .spawn:
                spawn()
            case .probe(let pid, let delay):
                Task {
                    if delay > .zero { try? await Task.sleep(for: delay) }
                    let outcome = await probe.check(socketDirectory: launch.socketDirectory)
                    probeFinished(pid: pid, outcome: outcome)
                }
            case .signal(let pid, let signal):
                logger.info("signalling postmaster", metadata: ["pid": "\(pid)", "signal": "\(signal)"])
                kill(pid, signal.rawValue)
            case .wake(let at):
                let delay = at - now
                Task {
                    if delay > .zero { try? await Task.sleep(for: delay) }
                    tick()
                }
            case .recordFailure(let reason):
                if let reason { logger.error("tenant failed", metadata: ["reason": "\(reason)"]) }
                let name = name
                let callback = onFailureChange
                Task { await callback(name, reason) }
            }
        }
        if machine.state != reportedState {
            if machine.state == .running { runningSince = Date() }
            logger.debug("state changed", metadata: ["from": "\(reportedState)", "to": "\(machine.state)"])
            reportedState = machine.state
            // Synchronously, so the proxy never routes to a postmaster that is going away.
            running?.set(name, socketPath: machine.state == .running ? socketPath : nil)
            let callback = onStateChange
            Task { await callback() }
        }
        // After every event, not only state changes: the pid, restarts and desired state move too.
        board?.publish(name, by: ObjectIdentifier(self), snapshot)
        resumeWaiters()
    }

    private func resumeWaiters() {
        var remaining: [(id: Int, until: @Sendable (SupervisorMachine) -> Bool, continuation: CheckedContinuation<Void, Never>)] = []
        for waiter in waiters {
            if waiter.until(machine) { waiter.continuation.resume() } else { remaining.append(waiter) }
        }
        waiters = remaining
    }

    private func spawn() {
        guard let startSettings = launch.startSettings else {
            spawn(settings: [])
            return
        }
        Task {
            let settings: [String]
            do {
                settings = try await startSettings()
            } catch FleetError.invalidRequest(let reason) {
                logger.error("postmaster not started", metadata: ["error": "\(reason)"])
                apply(machine.spawnRefused(reason: reason))
                return
            } catch {
                let reason = (error as? FleetError)?.description ?? "\(error)"
                logger.error("could not start postmaster", metadata: ["error": "\(reason)"])
                apply(machine.spawnFailed(reason: reason, now: now))
                return
            }
            spawn(settings: settings)
        }
    }

    private func spawn(settings: [String]) {
        if let sandbox = launch.sandbox {
            spawnSandboxed(sandbox, settings: settings)
            return
        }
        let result: Result<pid_t, FleetError>
        do {
            let logFD = try Files.openLog(launch.logFile, mode: 0o600, owner: launch.user)
            defer { close(logFD) }
            try launch.cgroup?.ensure()
            var spec = SpawnSpec(
                executable: launch.postgres, arguments: ["-D", launch.dataDirectory] + settings, environment: launch.environment,
                workingDirectory: launch.dataDirectory, user: launch.user, newSession: true, oomScoreAdjust: launch.oomScoreAdjust
            )
            spec.fileLimit = launch.fileLimit()
            spec.cgroupProcsFiles = launch.cgroup?.procsFiles ?? []
            result = .success(try Spawner.spawn(spec, stdout: logFD, stderr: logFD))
        } catch let error as SpawnError {
            result = .failure(.failed(error.description))
        } catch {
            result = .failure((error as? FleetError) ?? .failed("\(error)"))
        }
        switch result {
        case .success(let pid):
            logger.info("started postmaster", metadata: ["pid": "\(pid)"])
            pidIsSandboxed = false
            watchExit(pid: pid, isChild: true)
            apply(machine.spawned(pid: pid, now: now))
        case .failure(let error):
            logger.error("could not start postmaster", metadata: ["error": "\(error)"])
            apply(machine.spawnFailed(reason: error.description, now: now))
        }
    }

    /// Execs bwrap B in the tenant's cgroups as its user; the postmaster M appears a few
    /// milliseconds later as B's grandchild (`sandboxStarted`).
    private func spawnSandboxed(_ sandbox: SandboxLaunch, settings: [String]) {
        let bwrap: pid_t
        do {
            let left = sandbox.leftovers()
            guard left.isEmpty else {
                throw FleetError.failed(
                    "processes of an earlier postmaster of this tenant are still running (pids \(left.prefix(8).map(String.init).joined(separator: ", "))); "
                        + "a second postmaster is not started on the same data directory until they are gone. They end with their "
                        + "sandbox; the supervisor tries again after its back-off. If they linger, kill them (kill -9 PID) and run `pgfleet tenant start`"
                )
            }
            try sandbox.prepare()
            let invocation: SandboxInvocation
            var plan = sandbox.plan()
            plan.command += settings
            do { invocation = try plan.invocation() } catch { throw FleetError.failed("the sandbox: \(error.description)") }
            for file in invocation.files { try Files.write(file.contents, to: file.hostPath, mode: 0o644, sync: false) }
            let logFD = try Files.openLog(launch.logFile, mode: 0o600, owner: launch.user)
            defer { close(logFD) }
            try launch.cgroup?.ensure()
            var spec = SpawnSpec(
                executable: invocation.executable, arguments: Array(invocation.arguments.dropFirst()), environment: invocation.environment,
                workingDirectory: launch.dataDirectory, user: invocation.switchUserBeforeExec ? launch.user : nil, newSession: true,
                oomScoreAdjust: launch.oomScoreAdjust
            )
            spec.fileLimit = launch.fileLimit()
            spec.cgroupProcsFiles = launch.cgroup?.procsFiles ?? []
            bwrap = try Spawner.spawn(spec, stdout: logFD, stderr: logFD)
        } catch {
            let reason = (error as? SpawnError)?.description ?? (error as? FleetError)?.description ?? "\(error)"
            logger.error("could not start postmaster", metadata: ["error": "\(reason)"])
            apply(machine.spawnFailed(reason: reason, now: now))
            return
        }
        Task { await sandboxStarted(bwrap: bwrap, sandbox: sandbox) }
    }

    private func sandboxStarted(bwrap: pid_t, sandbox: SandboxLaunch) async {
        guard let postmaster = await SandboxProcesses.waitForPostmaster(ofBwrap: bwrap) else {
            // B ended before M appeared (bwrap could not make the sandbox, or postgres exited at
            // once), or it hangs: whatever it left is killed, and the start failed.
            if ProcFS.isAlive(bwrap) {
                kill(bwrap, SIGKILL)
                for pid in sandbox.leftovers() { kill(pid, SIGKILL) }
            }
            let status = SandboxExit.commandStatus(fromBwrap: await ProcessWatcher.shared.waitForExit(pid: bwrap, isChild: true))
            let tail = Files.tail(launch.logFile, lines: 5)
            let reason = "the sandbox exited (\(status)) before its postmaster started" + (tail.isEmpty ? "" : "; last log lines:\n" + tail.joined(separator: "\n"))
            logger.error("could not start postmaster", metadata: ["error": "\(reason)"])
            apply(machine.spawnFailed(reason: reason, now: now))
            return
        }
        if let reading = ProcessReading.read(postmaster) {
            do {
                try Files.write(SandboxRecord(pid: postmaster, startTime: reading.startTime).text, to: sandbox.recordFile, mode: 0o644, sync: false)
            } catch {
                logger.warning("could not record the postmaster's pid; a new daemon finds it by a scan of /proc", metadata: ["error": "\(error)"])
            }
        }
        logger.info("started postmaster", metadata: ["pid": "\(postmaster)", "sandbox": "\(bwrap)"])
        pidIsSandboxed = true
        Task {
            let status = await ProcessWatcher.shared.waitForExit(pid: bwrap, isChild: true)
            exited(pid: postmaster, status: SandboxExit.commandStatus(fromBwrap: status))
        }
        apply(machine.spawned(pid: postmaster, now: now))
    }

    private func watchExit(pid: Int32, isChild: Bool) {
        Task {
            let status = await ProcessWatcher.shared.waitForExit(pid: pid, isChild: isChild)
            exited(pid: pid, status: status)
        }
    }

    private func exited(pid: Int32, status: ExitStatus) {
        let expected = machine.state == .stopping
        if expected {
            logger.info("postmaster stopped", metadata: ["pid": "\(pid)", "status": "\(status)"])
        } else {
            logger.warning("postmaster exited", metadata: ["pid": "\(pid)", "status": "\(status)"])
        }
        let tail = expected ? [] : Files.tail(launch.logFile, lines: 5)
        apply(machine.exited(pid: pid, status: status, logTail: tail, now: now))
    }

    private func probeFinished(pid: Int32, outcome: HealthProbe.Outcome) {
        switch outcome {
        case .ready:
            apply(machine.probeSucceeded(pid: pid, now: now))
        case .notReady(let why):
            logger.trace("not ready yet", metadata: ["why": "\(why)"])
            apply(machine.probeFailed(pid: pid, now: now))
        }
    }

    private func tick() {
        apply(machine.tick(now: now))
    }
}
