import FleetCore
import Testing

@Suite struct HugePagesDecisionTests {
    let twoMB: UInt64 = 2 << 20

    func pool(total: Int, free: Int, reserved: Int = 0) -> HugePagePool {
        HugePagePool(pageBytes: twoMB, total: total, free: free, reserved: reserved)
    }

    @Test func offNeverGetsPages() throws {
        #expect(try HugePagesDecision.decide(.init(mode: .off, neededPages: 57, pool: pool(total: 100, free: 100))) == .without(note: nil))
    }

    @Test func enoughFreeUnreservedPagesAreGrantedExactly() throws {
        let grant = try HugePagesDecision.decide(.init(mode: .on, neededPages: 57, pool: pool(total: 64, free: 64)))
        #expect(grant == .pages(57, pageBytes: twoMB))
        #expect(HugePagesDecision.setting(mode: .on, grant: grant) == "on")
        #expect(HugePagesDecision.setting(mode: .try, grant: grant) == "try")
    }

    @Test func onWithTooFewPagesIsRefusedWithTheNumbers() {
        #expect {
            try HugePagesDecision.decide(.init(mode: .on, neededPages: 57, pool: pool(total: 64, free: 20, reserved: 8)))
        } throws: { error in
            "\(error)".contains("needs 57 × 2MB pages, 12 free")
        }
    }

    @Test func tryWithTooFewPagesStartsWithoutAndSaysWhy() throws {
        let grant = try HugePagesDecision.decide(.init(mode: .try, neededPages: 57, pool: pool(total: 64, free: 12)))
        guard case .without(let note?) = grant else {
            Issue.record("expected no pages with a note, got \(grant)")
            return
        }
        #expect(note.contains("needs 57 × 2MB pages, 12 free"))
        #expect(HugePagesDecision.setting(mode: .try, grant: grant) == "off")
    }

    @Test func theOtherTenantsGrantsCountAgainstThePool() throws {
        // 64 pages, 40 granted to others and not yet reserved: 24 are left, not 64.
        let grant = try HugePagesDecision.decide(.init(mode: .try, neededPages: 30, pool: pool(total: 64, free: 64), grantedToOthers: 40))
        #expect(grant.pages == 0)
        #expect(try HugePagesDecision.decide(.init(mode: .try, neededPages: 24, pool: pool(total: 64, free: 64), grantedToOthers: 40)).pages == 24)
        // Their pages already touched: free is lower and nothing is counted twice.
        #expect(try HugePagesDecision.decide(.init(mode: .try, neededPages: 24, pool: pool(total: 64, free: 24), grantedToOthers: 40)).pages == 24)
    }

    @Test func noReservationLimitMeansNoPagesEver() throws {
        let unlimitable = "Linux 5.4.0 has no hugetlb reservation limits (5.7 or later has)"
        let grant = try HugePagesDecision.decide(.init(mode: .try, neededPages: 8, pool: pool(total: 64, free: 64), unlimitable: unlimitable))
        #expect(grant.pages == 0)
        #expect {
            try HugePagesDecision.decide(.init(mode: .on, neededPages: 8, pool: pool(total: 64, free: 64), unlimitable: unlimitable))
        } throws: { error in
            "\(error)".contains("5.7")
        }
    }

    @Test func noPoolAndOldPostgresAreNotes() throws {
        #expect(try HugePagesDecision.decide(.init(mode: .try, neededPages: 8, pool: pool(total: 0, free: 0))).pages == 0)
        #expect(try HugePagesDecision.decide(.init(mode: .try, neededPages: nil, pool: pool(total: 64, free: 64))).pages == 0)
    }

    @Test func modesParseAndBadOnesSayWhatIsAccepted() throws {
        #expect(try HugePagesMode(validating: "TRY") == .try)
        #expect(throws: FleetError.self) { try HugePagesMode(validating: "yes") }
        #expect(try LimitsChange(hugePages: "on").applied(to: .none).hugePages == .on)
        #expect(throws: FleetError.self) { try LimitsChange(hugePages: "maybe").applied(to: .none) }
    }

    @Test func sizeNamesAreTheKernels() {
        #expect(HugePagePool.sizeName(2 << 20) == "2MB")
        #expect(HugePagePool.sizeName(1 << 30) == "1GB")
        #expect(HugePagePool.sizeName(64 << 10) == "64KB")
    }
}

@Suite struct ShmSizingTests {
    /// pgfleet's new-tenant settings: max_worker_processes 2, work_mem 4MB, hash_mem_multiplier 2.
    let tenant = MemorySettings(maxWorkerProcesses: 2, workMem: 4 << 20, hashMemMultiplier: 2)

    @Test func parallelNeedFollowsWorkersWorkMemAndTheMultiplier() {
        // 2 × 2 workers × 4MB × 2 + 2 × 1MB.
        #expect(ShmSizing.parallelNeed(tenant) == 34 << 20)
        var off = tenant
        off.maxParallelWorkersPerGather = 0
        #expect(ShmSizing.parallelNeed(off) == 0)
        var bigger = tenant
        bigger.workMem = 64 << 20
        #expect(ShmSizing.parallelNeed(bigger) == 2 * 2 * 128 << 20 + 2 << 20)
    }

    @Test func aTwoMegabyteShmIsRefusedWithTheArithmetic() {
        let problem = ShmSizing.problem(tenant, shm: 2 << 20)
        #expect(problem?.contains("--shm 2MB cannot hold") == true)
        #expect(problem?.contains("work_mem 4MB") == true)
        #expect(problem?.contains("Give --shm 42MB or more") == true)
        #expect(ShmSizing.problem(tenant, shm: 64 << 20) == nil)
    }

    @Test func withParallelQueryOffASmallShmFits() {
        var off = tenant
        off.maxParallelWorkersPerGather = 0
        #expect(ShmSizing.problem(off, shm: 8 << 20) == nil)
        #expect(ShmSizing.problem(off, shm: 2 << 20) != nil)
    }

    @Test func derivedIsTheMemoryLimitOrAGigabyteButNeverBelowTheNeed() {
        #expect(ShmSizing.derived(tenant, memoryLimit: nil) == 1 << 30)
        #expect(ShmSizing.derived(tenant, memoryLimit: 256 << 20) == 256 << 20)
        #expect(ShmSizing.derived(tenant, memoryLimit: 32 << 20) == ShmSizing.need(tenant))
    }

    @Test func shmParsesAsASize() throws {
        #expect(try LimitsChange(shm: "256MB").applied(to: .none).shmBytes == 256 << 20)
        #expect(throws: FleetError.self) { try LimitsChange(shm: "lots").applied(to: .none) }
        #expect(throws: FleetError.self) { try LimitsChange(shm: "10kB").applied(to: .none) }
    }
}

@Suite struct BusErrorSupervisionTests {
    let policy = RestartPolicy(
        initialBackoff: .seconds(1), maxBackoff: .seconds(8), maxConsecutiveCrashes: 5, stableAfter: .seconds(30),
        startTimeout: .seconds(10), stopTimeout: .seconds(5), probeInterval: .milliseconds(20)
    )

    func running(_ machine: inout SupervisorMachine, pid: Int32, at now: Duration) {
        _ = machine.spawned(pid: pid, now: now)
        _ = machine.probeSucceeded(pid: pid, now: now)
    }

    @Test func aSecondBusErrorInARowStopsTheRestartsWithTheHugePageReason() {
        var machine = SupervisorMachine(policy: policy)
        _ = machine.startRequested(now: .zero)
        running(&machine, pid: 10, at: .zero)
        // The first: restarted after the back-off, the reason already names SIGBUS.
        #expect(machine.exited(pid: 10, status: .signaled(7), logTail: [], now: .seconds(1)) == [.wake(at: .seconds(2))])
        #expect(machine.state == .backoff)
        #expect(machine.lastProblem?.contains("SIGBUS") == true)
        #expect(machine.lastProblem?.contains("--huge-pages off") == true)
        _ = machine.tick(now: .seconds(2))
        running(&machine, pid: 11, at: .seconds(2))
        let actions = machine.exited(pid: 11, status: .signaled(7), logTail: [], now: .seconds(3))
        #expect(machine.state == .failed)
        guard case .recordFailure(let reason?)? = actions.first else {
            Issue.record("expected the failure recorded, got \(actions)")
            return
        }
        #expect(reason.contains("bus error twice in a row"))
        #expect(reason.contains("huge pages"))
    }

    @Test func aBusErrorAChildReportsCountsToo() {
        var machine = SupervisorMachine(policy: policy)
        _ = machine.startRequested(now: .zero)
        let tail = ["LOG:  startup process (PID 12) was terminated by signal 7: Bus error", "LOG:  aborting startup due to startup process failure"]
        _ = machine.spawned(pid: 10, now: .zero)
        _ = machine.exited(pid: 10, status: .exited(1), logTail: tail, now: .seconds(1))
        _ = machine.tick(now: .seconds(2))
        _ = machine.spawned(pid: 11, now: .seconds(2))
        _ = machine.exited(pid: 11, status: .exited(1), logTail: tail, now: .seconds(3))
        #expect(machine.state == .failed)
    }

    @Test func aStartRefusedBeforeTheSpawnFailsAtOnceWithItsReason() {
        var machine = SupervisorMachine(policy: policy)
        _ = machine.startRequested(now: .zero)
        let actions = machine.spawnRefused(reason: "huge pages (--huge-pages on) cannot be given: needs 57 × 2MB pages, 12 free")
        #expect(machine.state == .failed)
        #expect(actions == [.recordFailure("postgres was not started: huge pages (--huge-pages on) cannot be given: needs 57 × 2MB pages, 12 free")])
        // A stop asked for meanwhile wins.
        var stopping = SupervisorMachine(policy: policy)
        _ = stopping.startRequested(now: .zero)
        _ = stopping.stopRequested(now: .zero)
        #expect(stopping.spawnRefused(reason: "x") == [])
        #expect(stopping.state == .stopped)
    }

    @Test func otherCrashesBetweenBusErrorsKeepTheUsualPolicy() {
        var machine = SupervisorMachine(policy: policy)
        _ = machine.startRequested(now: .zero)
        running(&machine, pid: 10, at: .zero)
        _ = machine.exited(pid: 10, status: .signaled(7), logTail: [], now: .seconds(1))
        _ = machine.tick(now: .seconds(2))
        running(&machine, pid: 11, at: .seconds(2))
        _ = machine.exited(pid: 11, status: .signaled(9), logTail: [], now: .seconds(3))
        #expect(machine.state == .backoff)
    }
}
