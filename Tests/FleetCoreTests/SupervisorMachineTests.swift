import FleetCore
import Testing

@Suite struct SupervisorMachineTests {
    let policy = RestartPolicy(
        initialBackoff: .seconds(1), maxBackoff: .seconds(8), maxConsecutiveCrashes: 4, stableAfter: .seconds(30),
        startTimeout: .seconds(10), stopTimeout: .seconds(5), probeInterval: .milliseconds(20)
    )

    func running(pid: Int32 = 100, at now: Duration = .zero) -> SupervisorMachine {
        var machine = SupervisorMachine(policy: policy)
        _ = machine.startRequested(now: now)
        _ = machine.spawned(pid: pid, now: now)
        _ = machine.probeSucceeded(pid: pid, now: now)
        return machine
    }

    @Test func startSpawnsProbesAndIsRunningOnlyAfterAQuerySucceeded() {
        var machine = SupervisorMachine(policy: policy)
        #expect(machine.startRequested(now: .zero) == [.spawn, .wake(at: .seconds(10))])
        #expect(machine.state == .starting)
        #expect(machine.spawned(pid: 42, now: .milliseconds(5)) == [.probe(pid: 42, delay: .zero)])
        #expect(machine.state == .starting)
        #expect(machine.probeFailed(pid: 42, now: .milliseconds(30)) == [.probe(pid: 42, delay: .milliseconds(20))])
        #expect(machine.state == .starting)
        #expect(machine.probeSucceeded(pid: 42, now: .milliseconds(60)) == [])
        #expect(machine.state == .running)
        #expect(machine.pid == 42)
        #expect(machine.isSettled)
    }

    @Test func aProbeForAnotherPidIsIgnored() {
        var machine = SupervisorMachine(policy: policy)
        _ = machine.startRequested(now: .zero)
        _ = machine.spawned(pid: 42, now: .zero)
        #expect(machine.probeSucceeded(pid: 41, now: .zero) == [])
        #expect(machine.state == .starting)
    }

    @Test func stopIsFastShutdownThenImmediateThenKill() {
        var machine = running()
        #expect(machine.stopRequested(now: .seconds(1)) == [.signal(pid: 100, .interrupt), .wake(at: .seconds(6))])
        #expect(machine.state == .stopping)
        #expect(machine.tick(now: .seconds(3)) == [])
        #expect(machine.tick(now: .seconds(6)) == [.signal(pid: 100, .quit), .wake(at: .seconds(11))])
        #expect(machine.tick(now: .seconds(11)) == [.signal(pid: 100, .kill), .wake(at: .seconds(16))])
        #expect(machine.exited(pid: 100, status: .signaled(9), logTail: [], now: .seconds(12)) == [])
        #expect(machine.state == .stopped)
        #expect(machine.restarts == 0)
    }

    @Test func crashRestartsWithExponentialBackoff() {
        var machine = running()
        #expect(machine.exited(pid: 100, status: .signaled(9), logTail: ["boom"], now: .seconds(1)) == [.wake(at: .seconds(2))])
        #expect(machine.state == .backoff)
        #expect(machine.tick(now: .milliseconds(1500)) == [])
        #expect(machine.tick(now: .seconds(2)) == [.spawn, .wake(at: .seconds(12))])
        _ = machine.spawned(pid: 101, now: .seconds(2))
        // Crashes again before it was ever ready: the back-off doubles.
        #expect(machine.exited(pid: 101, status: .exited(1), logTail: [], now: .seconds(3)) == [.wake(at: .seconds(5))])
        #expect(machine.consecutiveCrashes == 2)
        #expect(machine.restarts == 2)
    }

    @Test func backoffIsCapped() {
        #expect(policy.backoff(afterCrashes: 1) == .seconds(1))
        #expect(policy.backoff(afterCrashes: 3) == .seconds(4))
        #expect(policy.backoff(afterCrashes: 10) == .seconds(8))
    }

    @Test func aCrashLoopEndsInFailedWithTheReason() {
        var machine = SupervisorMachine(policy: policy)
        var now = Duration.zero
        _ = machine.startRequested(now: now)
        var last: [SupervisorMachine.Action] = []
        for attempt in 1...4 {
            let pid = Int32(200 + attempt)
            #expect(machine.spawned(pid: pid, now: now) == [.probe(pid: pid, delay: .zero)])
            now += .milliseconds(50)
            last = machine.exited(pid: pid, status: .exited(1), logTail: ["FATAL:  invalid value for parameter"], now: now)
            if attempt < 4 {
                guard case .wake(let at) = last.first else {
                    Issue.record("expected a wake, got \(last)")
                    return
                }
                now = at
                #expect(machine.tick(now: now) == [.spawn, .wake(at: now + .seconds(10))])
            }
        }
        #expect(machine.state == .failed)
        guard case .failed(let reason) = machine.phase else { return }
        #expect(reason.contains("exited with code 1"))
        #expect(reason.contains("FATAL:  invalid value for parameter"))
        #expect(reason.contains("4 failed starts or crashes in a row"))
        #expect(last == [.recordFailure(reason)])
        // No more restarts on its own.
        #expect(machine.tick(now: now + .seconds(100)) == [])
        // An explicit start clears the failure and tries again from a fresh count.
        #expect(machine.startRequested(now: now) == [.recordFailure(nil), .spawn, .wake(at: now + .seconds(10))])
        #expect(machine.consecutiveCrashes == 0)
    }

    @Test func aStableRunResetsTheCrashCount() {
        var machine = running()
        _ = machine.exited(pid: 100, status: .exited(1), logTail: [], now: .seconds(1))
        _ = machine.tick(now: .seconds(2))
        _ = machine.spawned(pid: 101, now: .seconds(2))
        _ = machine.probeSucceeded(pid: 101, now: .seconds(2))
        #expect(machine.consecutiveCrashes == 1)
        // Ran for 40 s (> stableAfter) before crashing: counts as the first crash again.
        #expect(machine.exited(pid: 101, status: .signaled(11), logTail: [], now: .seconds(42)) == [.wake(at: .seconds(43))])
        #expect(machine.consecutiveCrashes == 1)
    }

    @Test func aStartThatNeverBecomesReadyIsPutDownAndCountsAsACrash() {
        var machine = SupervisorMachine(policy: policy)
        _ = machine.startRequested(now: .zero)
        _ = machine.spawned(pid: 7, now: .zero)
        #expect(machine.probeFailed(pid: 7, now: .seconds(10)) == [])
        #expect(machine.tick(now: .seconds(10)) == [.signal(pid: 7, .quit), .wake(at: .seconds(15))])
        #expect(machine.tick(now: .seconds(15)) == [.signal(pid: 7, .kill), .wake(at: .seconds(20))])
        #expect(machine.exited(pid: 7, status: .signaled(9), logTail: [], now: .seconds(16)) == [.wake(at: .seconds(17))])
        #expect(machine.lastProblem?.contains("did not accept connections within 10s") == true)
    }

    @Test func stopDuringASpawnStopsItOnceThePidIsKnown() {
        var machine = SupervisorMachine(policy: policy)
        _ = machine.startRequested(now: .zero)
        #expect(machine.stopRequested(now: .zero) == [])
        #expect(machine.spawned(pid: 9, now: .zero) == [.signal(pid: 9, .interrupt), .wake(at: .seconds(5))])
        #expect(machine.exited(pid: 9, status: .exited(0), logTail: [], now: .seconds(1)) == [])
        #expect(machine.state == .stopped)
    }

    @Test func restartIsStopThenStartAgain() {
        var machine = running()
        _ = machine.stopRequested(now: .zero)
        #expect(machine.startRequested(now: .zero) == [])
        #expect(machine.exited(pid: 100, status: .exited(0), logTail: [], now: .seconds(1)) == [.spawn, .wake(at: .seconds(11))])
        #expect(machine.restarts == 0)
    }

    @Test func stopInBackoffOrFailedIsImmediate() {
        var machine = running()
        _ = machine.exited(pid: 100, status: .exited(1), logTail: [], now: .seconds(1))
        #expect(machine.state == .backoff)
        #expect(machine.stopRequested(now: .seconds(1)) == [])
        #expect(machine.state == .stopped)
        #expect(machine.tick(now: .seconds(100)) == [])
    }

    @Test func adoptedPostmasterIsProbedBeforeItCountsAsRunning() {
        var machine = SupervisorMachine(policy: policy)
        #expect(machine.adopted(pid: 55, now: .zero) == [.probe(pid: 55, delay: .zero), .wake(at: .seconds(10))])
        #expect(machine.state == .starting)
        _ = machine.probeSucceeded(pid: 55, now: .zero)
        #expect(machine.state == .running)
        // Its exit status cannot be known; it still counts as a crash and is restarted.
        #expect(machine.exited(pid: 55, status: .unknown, logTail: [], now: .seconds(1)) == [.wake(at: .seconds(2))])
    }

    @Test func exitsOfOldPidsAreIgnored() {
        var machine = running(pid: 100)
        #expect(machine.exited(pid: 99, status: .exited(0), logTail: [], now: .seconds(1)) == [])
        #expect(machine.state == .running)
    }

    @Test func spawnFailureCountsTowardsTheCrashLoop() {
        var machine = SupervisorMachine(policy: policy)
        _ = machine.startRequested(now: .zero)
        #expect(machine.spawnFailed(reason: "setuid failed", now: .zero) == [.wake(at: .seconds(1))])
        #expect(machine.lastProblem == "could not be started: setuid failed")
    }

    @Test func aStopDuringASpawnThatFailsLeavesItStopped() {
        var machine = SupervisorMachine(policy: policy)
        _ = machine.startRequested(now: .zero)
        #expect(machine.stopRequested(now: .milliseconds(5)) == [])
        #expect(machine.spawnFailed(reason: "the sandbox exited", now: .milliseconds(10)) == [])
        #expect(machine.state == .stopped)
        #expect(machine.restarts == 0)
        #expect(machine.tick(now: .seconds(5)) == [])
    }
}

@Suite struct SuspensionMachineTests {
    let policy = RestartPolicy(initialBackoff: .seconds(1), startTimeout: .seconds(10), stopTimeout: .seconds(5))

    func running(pid: Int32 = 100) -> SupervisorMachine {
        var machine = SupervisorMachine(policy: policy)
        _ = machine.startRequested(now: .zero)
        _ = machine.spawned(pid: pid, now: .zero)
        _ = machine.probeSucceeded(pid: pid, now: .zero)
        return machine
    }

    @Test func suspendIsACleanShutdownThatKeepsTheTenantWanted() {
        var machine = running()
        #expect(machine.suspendRequested(now: .seconds(1)) == [.signal(pid: 100, .interrupt), .wake(at: .seconds(6))])
        #expect(machine.state == .stopping)
        #expect(machine.exited(pid: 100, status: .exited(0), logTail: [], now: .seconds(2)) == [])
        #expect(machine.state == .suspended)
        #expect(machine.desired == .running)
        #expect(machine.isSettled)
        #expect(machine.restarts == 0)
        // Nothing happens on its own: no restart, no back-off.
        #expect(machine.tick(now: .seconds(100)) == [])
    }

    @Test func aStartWakesASuspendedTenant() {
        var machine = running()
        _ = machine.suspendRequested(now: .zero)
        _ = machine.exited(pid: 100, status: .exited(0), logTail: [], now: .seconds(1))
        #expect(machine.startRequested(now: .seconds(5)) == [.spawn, .wake(at: .seconds(15))])
        #expect(machine.state == .starting)
    }

    @Test func aConnectionDuringTheSuspendStartsItAgain() {
        var machine = running()
        _ = machine.suspendRequested(now: .zero)
        #expect(machine.startRequested(now: .milliseconds(10)) == [])
        #expect(machine.exited(pid: 100, status: .exited(0), logTail: [], now: .seconds(1)) == [.spawn, .wake(at: .seconds(11))])
    }

    @Test func stopAndSuspendDiffer() {
        var stopped = running()
        _ = stopped.stopRequested(now: .zero)
        _ = stopped.exited(pid: 100, status: .exited(0), logTail: [], now: .seconds(1))
        #expect(stopped.state == .stopped && stopped.desired == .stopped)
        var suspended = running()
        _ = suspended.suspendRequested(now: .zero)
        _ = suspended.exited(pid: 100, status: .exited(0), logTail: [], now: .seconds(1))
        #expect(suspended.state == .suspended && suspended.desired == .running)
        // Stopping a suspended tenant makes it stopped: it will not wake.
        #expect(suspended.stopRequested(now: .seconds(2)) == [])
        #expect(suspended.state == .stopped)
    }

    @Test func onlyARunningTenantIsSuspended() {
        var machine = SupervisorMachine(policy: policy)
        #expect(machine.suspendRequested(now: .zero) == [])
        _ = machine.startRequested(now: .zero)
        #expect(machine.suspendRequested(now: .zero) == [])
        #expect(machine.state == .starting)
    }

    @Test func restoredSuspendedTenantsHaveNoPostmaster() {
        var machine = SupervisorMachine(policy: policy)
        machine.restoredSuspended()
        #expect(machine.state == .suspended)
        #expect(machine.pid == nil)
        #expect(machine.startRequested(now: .zero) == [.spawn, .wake(at: .seconds(10))])
    }
}
