/// How hard the supervisor tries to keep a postmaster up, and how patient it is.
public struct RestartPolicy: Sendable, Equatable {
    /// Back-off before the first restart; it doubles after each crash in a row.
    public var initialBackoff: Duration
    public var maxBackoff: Duration
    /// This many crashes in a row and the tenant is `failed` instead of restarted again.
    public var maxConsecutiveCrashes: Int
    /// A postmaster that ran this long before crashing starts a fresh count.
    public var stableAfter: Duration
    /// A postmaster that does not answer a query within this long counts as crashed.
    public var startTimeout: Duration
    /// After SIGINT (fast shutdown), how long before SIGQUIT (immediate); the same again before SIGKILL.
    public var stopTimeout: Duration
    /// Pause between readiness probes while starting.
    public var probeInterval: Duration

    public init(
        initialBackoff: Duration = .milliseconds(500), maxBackoff: Duration = .seconds(30),
        maxConsecutiveCrashes: Int = 5, stableAfter: Duration = .seconds(30), startTimeout: Duration = .seconds(60),
        stopTimeout: Duration = .seconds(30), probeInterval: Duration = .milliseconds(5)
    ) {
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.maxConsecutiveCrashes = maxConsecutiveCrashes
        self.stableAfter = stableAfter
        self.startTimeout = startTimeout
        self.stopTimeout = stopTimeout
        self.probeInterval = probeInterval
    }

    /// The pause before restart number `crashes` (1-based).
    public func backoff(afterCrashes crashes: Int) -> Duration {
        var delay = initialBackoff
        for _ in 1..<max(crashes, 1) {
            delay = delay * 2
            if delay >= maxBackoff { return maxBackoff }
        }
        return min(delay, maxBackoff)
    }
}

public enum StopSignal: Int32, Sendable, Equatable {
    /// PostgreSQL's fast shutdown: roll back sessions, checkpoint, exit.
    case interrupt = 2
    /// Immediate shutdown: exit now, recover on the next start.
    case quit = 3
    /// Last resort.
    case kill = 9

    var next: StopSignal? {
        switch self {
        case .interrupt: .quit
        case .quit: .kill
        case .kill: nil
        }
    }
}

/// The supervision decisions for one tenant, free of I/O and of real time: every event carries
/// `now` (a monotonic offset), and every effect is returned as an `Action` for the caller to run.
public struct SupervisorMachine: Sendable, Equatable {
    public enum Phase: Sendable, Equatable {
        case stopped
        /// `pid` is nil while a spawn is in flight. `signalled` is set once a start that overran
        /// its deadline is being put down.
        case starting(pid: Int32?, deadline: Duration, signalled: StopSignal?)
        case running(pid: Int32, since: Duration)
        case stopping(pid: Int32, signal: StopSignal, deadline: Duration)
        case backoff(until: Duration)
        case failed(reason: String)
        /// Shut down cleanly for idleness; a start (a connection) wakes it.
        case suspended
    }

    public enum Action: Sendable, Equatable {
        /// Start a postmaster, then report `spawned` or `spawnFailed`.
        case spawn
        /// After `delay`, try a real query on `pid`, then report `probeSucceeded` or `probeFailed`.
        case probe(pid: Int32, delay: Duration)
        case signal(pid: Int32, StopSignal)
        /// Call `tick` at (or after) this time.
        case wake(at: Duration)
        /// Store (or clear, with nil) why the tenant failed.
        case recordFailure(String?)
    }

    public let policy: RestartPolicy
    public private(set) var phase: Phase = .stopped
    public private(set) var desired: DesiredState = .stopped
    /// Crashes since the last stable run.
    public private(set) var consecutiveCrashes = 0
    /// Restarts after crashes, for display.
    public private(set) var restarts = 0
    /// The last unexpected exit, for the failure reason.
    public private(set) var lastProblem: String?
    /// Bus errors (SIGBUS) in a row.
    private var consecutiveBusErrors = 0
    /// The stop in progress ends in `suspended` rather than `stopped`.
    private var suspending = false

    public init(policy: RestartPolicy = RestartPolicy()) {
        self.policy = policy
    }

    public var state: TenantState {
        switch phase {
        case .stopped: .stopped
        case .starting: .starting
        case .running: .running
        case .stopping: .stopping
        case .backoff: .backoff
        case .failed: .failed
        case .suspended: .suspended
        }
    }

    public var pid: Int32? {
        switch phase {
        case .starting(let pid, _, _): pid
        case .running(let pid, _), .stopping(let pid, _, _): pid
        case .stopped, .backoff, .failed, .suspended: nil
        }
    }

    /// True when nothing more will happen without a new request or a crash.
    public var isSettled: Bool {
        switch phase {
        case .running, .stopped, .failed, .suspended: true
        case .starting, .stopping, .backoff: false
        }
    }

    public mutating func startRequested(now: Duration) -> [Action] {
        desired = .running
        suspending = false
        switch phase {
        case .stopped, .backoff, .suspended:
            return beginStart(now: now)
        case .failed:
            consecutiveCrashes = 0
            consecutiveBusErrors = 0
            return [.recordFailure(nil)] + beginStart(now: now)
        case .starting, .running, .stopping:
            // Already on its way up; a stopping postmaster is started again once it exits.
            return []
        }
    }

    public mutating func stopRequested(now: Duration) -> [Action] {
        desired = .stopped
        suspending = false
        switch phase {
        case .starting(let pid?, _, _), .running(let pid, _):
            phase = .stopping(pid: pid, signal: .interrupt, deadline: now + policy.stopTimeout)
            return [.signal(pid: pid, .interrupt), .wake(at: now + policy.stopTimeout)]
        case .starting(nil, _, _):
            // The spawn in flight is stopped as soon as it reports its pid.
            return []
        case .backoff, .failed, .suspended:
            phase = .stopped
            return []
        case .stopped, .stopping:
            return []
        }
    }

    /// Shuts a running postmaster down cleanly, to be woken by the next start. The desired state
    /// stays running. Only a running tenant is suspended: one that is starting, restarting or
    /// failed is left as it is.
    public mutating func suspendRequested(now: Duration) -> [Action] {
        guard case .running(let pid, _) = phase else { return [] }
        suspending = true
        phase = .stopping(pid: pid, signal: .interrupt, deadline: now + policy.stopTimeout)
        return [.signal(pid: pid, .interrupt), .wake(at: now + policy.stopTimeout)]
    }

    /// A tenant that was suspended when the daemon stopped stays suspended, without a postmaster.
    public mutating func restoredSuspended() {
        guard case .stopped = phase else { return }
        desired = .running
        phase = .suspended
    }

    /// A postmaster that was already running (found through its postmaster.pid) is taken over.
    public mutating func adopted(pid: Int32, now: Duration) -> [Action] {
        desired = .running
        phase = .starting(pid: pid, deadline: now + policy.startTimeout, signalled: nil)
        return [.probe(pid: pid, delay: .zero), .wake(at: now + policy.startTimeout)]
    }

    public mutating func spawned(pid: Int32, now: Duration) -> [Action] {
        guard case .starting(nil, let deadline, _) = phase else { return [] }
        if desired == .stopped {
            phase = .stopping(pid: pid, signal: .interrupt, deadline: now + policy.stopTimeout)
            return [.signal(pid: pid, .interrupt), .wake(at: now + policy.stopTimeout)]
        }
        phase = .starting(pid: pid, deadline: deadline, signalled: nil)
        return [.probe(pid: pid, delay: .zero)]
    }

    public mutating func spawnFailed(reason: String, now: Duration) -> [Action] {
        guard case .starting(nil, _, _) = phase else { return [] }
        // A stop asked for while the spawn was in flight (a sandboxed one takes a few ms) is kept.
        if desired == .stopped {
            phase = .stopped
            return []
        }
        return crashed(problem: "could not be started: \(reason)", ranFor: .zero, now: now)
    }

    /// The start was refused before a spawn (`--huge-pages on` without the pages): failed at
    /// once, since trying again in a second would meet the same refusal.
    public mutating func spawnRefused(reason: String) -> [Action] {
        guard case .starting(nil, _, _) = phase else { return [] }
        if desired == .stopped {
            phase = .stopped
            return []
        }
        let reason = "postgres was not started: \(reason)"
        lastProblem = reason
        phase = .failed(reason: reason)
        return [.recordFailure(reason)]
    }

    public mutating func probeSucceeded(pid: Int32, now: Duration) -> [Action] {
        guard case .starting(pid, _, nil) = phase else { return [] }
        phase = .running(pid: pid, since: now)
        return []
    }

    public mutating func probeFailed(pid: Int32, now: Duration) -> [Action] {
        guard case .starting(pid, let deadline, nil) = phase, now < deadline else { return [] }
        return [.probe(pid: pid, delay: policy.probeInterval)]
    }

    /// The postmaster `pid` is gone. `logTail` is the end of its log, for the failure reason.
    public mutating func exited(pid: Int32, status: ExitStatus, logTail: [String], now: Duration) -> [Action] {
        switch phase {
        case .stopping(pid, _, _):
            if suspending {
                suspending = false
                phase = .suspended
                return []
            }
            phase = .stopped
            return desired == .running ? beginStart(now: now) : []
        case .starting(pid, _, let signalled):
            if desired == .stopped {
                phase = .stopped
                return []
            }
            let why = signalled != nil
                ? "did not accept connections within \(policy.startTimeout.seconds)s and was stopped"
                : status.description
            return crashed(problem: describe(why, logTail), ranFor: .zero, now: now, busError: Self.isBusError(status, logTail))
        case .running(pid, let since):
            if desired == .stopped {
                phase = .stopped
                return []
            }
            return crashed(problem: describe(status.description, logTail), ranFor: now - since, now: now, busError: Self.isBusError(status, logTail))
        default:
            return []
        }
    }

    public mutating func tick(now: Duration) -> [Action] {
        switch phase {
        case .backoff(let until) where now >= until:
            return beginStart(now: now)
        case .starting(let pid?, let deadline, let signalled) where now >= deadline:
            let next = signalled.map { $0.next ?? .kill } ?? .quit
            phase = .starting(pid: pid, deadline: now + policy.stopTimeout, signalled: next)
            return [.signal(pid: pid, next), .wake(at: now + policy.stopTimeout)]
        case .stopping(let pid, let signal, let deadline) where now >= deadline:
            let next = signal.next ?? .kill
            phase = .stopping(pid: pid, signal: next, deadline: now + policy.stopTimeout)
            return [.signal(pid: pid, next), .wake(at: now + policy.stopTimeout)]
        default:
            return []
        }
    }

    private mutating func beginStart(now: Duration) -> [Action] {
        let deadline = now + policy.startTimeout
        phase = .starting(pid: nil, deadline: deadline, signalled: nil)
        return [.spawn, .wake(at: deadline)]
    }

    private mutating func crashed(problem: String, ranFor: Duration, now: Duration, busError: Bool = false) -> [Action] {
        if ranFor >= policy.stableAfter { consecutiveCrashes = 0 }
        consecutiveCrashes += 1
        consecutiveBusErrors = busError ? consecutiveBusErrors + 1 : 0
        let problem = busError ? Self.busErrorExplanation + "\n" + problem : problem
        lastProblem = problem
        if consecutiveBusErrors >= 2 {
            // Restarting into the same fault only risks the data (seed 002: "This can potentially
            // corrupt the database"): the second one in a row stops the restarts.
            let reason = "postgres \(problem)\n(a bus error twice in a row; restarts stopped, since restarting into the same fault "
                + "only risks the data. Fix the cause, then `pgfleet tenant start`.)"
            phase = .failed(reason: reason)
            return [.recordFailure(reason)]
        }
        if consecutiveCrashes >= policy.maxConsecutiveCrashes {
            let reason = "postgres \(problem)\n(\(consecutiveCrashes) failed starts or crashes in a row; "
                + "restarts stopped. Fix the cause, then `pgfleet tenant start`.)"
            phase = .failed(reason: reason)
            return [.recordFailure(reason)]
        }
        restarts += 1
        let until = now + policy.backoff(afterCrashes: consecutiveCrashes)
        phase = .backoff(until: until)
        return [.wake(at: until)]
    }

    /// SIGBUS: the postmaster itself, or a child it reports ("terminated by signal 7: Bus error").
    static func isBusError(_ status: ExitStatus, _ logTail: [String]) -> Bool {
        if case .signaled(7) = status { return true }
        return logTail.contains { $0.contains("terminated by signal 7") || $0.contains("signal 7: Bus error") }
    }

    static let busErrorExplanation = "was killed by SIGBUS (a bus error): memory the kernel had promised could not be given at the first touch. "
        + "The likely cause is shared memory on huge pages beyond the tenant's hugetlb limit or the host's pool (seed 002), or a full /dev/shm. "
        + "Fix: `pgfleet tenant set NAME --huge-pages off --restart`, or give the host more huge pages (vm.nr_hugepages, or `serve --huge-pages-pool`)."

    private func describe(_ what: String, _ logTail: [String]) -> String {
        logTail.isEmpty ? what : what + "; last log lines:\n" + logTail.joined(separator: "\n")
    }
}

extension Duration {
    /// Whole seconds, for messages.
    public var seconds: Int64 { components.seconds }
}
