import FleetCore
import Testing

@testable import FleetSupervisor

/// The per-tenant operation queue, alone: operations are held open by continuations, never by sleeps.
@Suite struct TenantOperationsTests {
    let a = try! TenantName(validating: "alpha")
    let b = try! TenantName(validating: "beta")

    struct Injected: Error {}

    /// An operation body that stays open until released, and says when it has begun.
    @MainActor final class Gate {
        private var began: [CheckedContinuation<Void, Never>] = []
        private var release: CheckedContinuation<Void, Never>?
        private(set) var hasBegun = false

        /// The body's side: note the start, then wait for `open()`.
        func hold() async {
            hasBegun = true
            for waiter in began { waiter.resume() }
            began = []
            await withCheckedContinuation { release = $0 }
        }

        /// Waits until the body has begun.
        func begun() async {
            if hasBegun { return }
            await withCheckedContinuation { began.append($0) }
        }

        func open() {
            release?.resume()
            release = nil
        }
    }

    /// Lets every task that can run on the main actor run (a bounded number of yields, not a sleep).
    @MainActor private func settle() async {
        for _ in 0..<100 { await Task.yield() }
    }

    @Test @MainActor func twoOperationsOnOneTenantNeverOverlap() async throws {
        let operations = TenantOperations()
        let first = Gate()
        var log: [String] = []
        let one = Task { try await operations.run(a, .create) { log.append("create begins"); await first.hold(); log.append("create ends") } }
        await first.begun()
        let two = Task { try await operations.run(a, .drop) { log.append("drop begins") } }
        await settle()
        // The drop is queued behind the create, which still holds the tenant.
        #expect(log == ["create begins"])
        #expect(operations.running(a) == .create)
        #expect(operations.count(a) == 2)
        first.open()
        try await one.value
        try await two.value
        #expect(log == ["create begins", "create ends", "drop begins"])
        #expect(operations.running(a) == nil)
    }

    @Test @MainActor func operationsOnTwoTenantsOverlap() async throws {
        let operations = TenantOperations()
        let first = Gate(), second = Gate()
        let one = Task { try await operations.run(a, .start) { await first.hold() } }
        let two = Task { try await operations.run(b, .start) { await second.hold() } }
        // Both are inside their bodies at once.
        await first.begun()
        await second.begun()
        #expect(operations.running(a) == .start && operations.running(b) == .start)
        first.open()
        second.open()
        try await one.value
        try await two.value
    }

    @Test @MainActor func aFailingOperationReleasesTheTenant() async throws {
        let operations = TenantOperations()
        let first = Gate()
        let failing = Task {
            try await operations.run(a, .password) {
                await first.hold()
                throw Injected()
            }
        }
        await first.begun()
        let next = Task { try await operations.run(a, .start) { "started" } }
        await settle()
        #expect(operations.count(a) == 2)
        first.open()
        await #expect(throws: Injected.self) { try await failing.value }
        #expect(try await next.value == "started")
        #expect(operations.running(a) == nil)
        // And the tenant is free for what comes later.
        #expect(await operations.runIfFree(a, .suspend) { 1 } == 1)
    }

    @Test @MainActor func operationsRunInOrderOfArrival() async throws {
        let operations = TenantOperations()
        let first = Gate()
        var order: [Int] = []
        let holder = Task { try await operations.run(a, .create) { await first.hold() } }
        await first.begun()
        let kinds: [TenantOperations.Kind] = [.start, .stop, .settings, .restart, .suspend, .password, .drop]
        var waiters: [Task<Void, any Error>] = []
        for (index, kind) in kinds.enumerated() {
            waiters.append(Task { try await operations.run(a, kind) { order.append(index); await Task.yield() } })
            // Each is queued before the next arrives.
            while operations.count(a) < index + 2 { await Task.yield() }
        }
        first.open()
        try await holder.value
        for waiter in waiters { try await waiter.value }
        #expect(order == Array(kinds.indices))
    }

    @Test @MainActor func theIdleSuspenderSkipsABusyTenantRatherThanWait() async throws {
        let operations = TenantOperations()
        let first = Gate()
        let holder = Task { try await operations.run(a, .settings) { await first.hold() } }
        await first.begun()
        var ran = false
        let skipped: Void? = await operations.runIfFree(a, .suspend) { ran = true }
        #expect(skipped == nil && !ran)
        #expect(operations.count(a) == 1)
        // Another tenant is free.
        #expect(await operations.runIfFree(b, .suspend) { "suspended" } == "suspended")
        first.open()
        try await holder.value
    }

    @Test @MainActor func whatAnOperationDoesDecidesWhetherTheTenantIsHidden() async throws {
        let operations = TenantOperations()
        let changing = Gate(), restarting = Gate()
        let holder = Task {
            try await operations.run(a, .password) {
                await changing.hold()
                // The restart after a new password: clients may wait for it.
                operations.proceed(a, as: .start)
                await restarting.hold()
            }
        }
        await changing.begun()
        #expect(operations.hides(a))
        #expect(!operations.hides(b))
        changing.open()
        await restarting.begun()
        #expect(!operations.hides(a) && operations.running(a) == .start)
        restarting.open()
        try await holder.value
        #expect(operations.running(a) == nil)
        #expect(TenantOperations.Kind.allCases.filter(\.hidesTenant) == [.create, .drop, .password])
    }

    @Test @MainActor func aWaiterCancelledWhileWaitingGivesUpItsTurnWithoutRunning() async throws {
        let operations = TenantOperations()
        let first = Gate()
        var log: [String] = []
        let holder = Task { try await operations.run(a, .create) { await first.hold() } }
        await first.begun()
        let cancelled = Task { try await operations.run(a, .drop) { log.append("drop") } }
        let after = Task { try await operations.run(a, .start) { log.append("start") } }
        while operations.count(a) < 3 { await Task.yield() }
        cancelled.cancel()
        first.open()
        try await holder.value
        await #expect(throws: CancellationError.self) { try await cancelled.value }
        try await after.value
        #expect(log == ["start"])
        #expect(operations.running(a) == nil)
        // One that finds the tenant free runs, cancelled or not, as it would without the queue.
        let free = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await operations.run(a, .stop) { "ran" }
        }
        #expect(try await free.value == "ran")
    }
}
