import FleetCore
import NIOCore
import PGWire
import Testing

@testable import FleetProxy

/// The pool's decisions, event by event: no channels, no timers, no sleeps.
@Suite struct PoolStateTests {
    typealias Action = PoolState.Action

    let acme = try! TenantName(validating: "acme")
    let other = try! TenantName(validating: "other")
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    func key(_ tenant: TenantName, user: String = "bob") -> PoolKey {
        PoolKey(tenant: tenant, socketPath: "/run/\(tenant)", parameters: [StartupParameter(name: "user", value: user)])
    }

    /// A session of `key` lent to a client, as after a successful login.
    func lent(_ state: inout PoolState, _ key: PoolKey) -> PoolState.ServerID {
        let id = state.startOpening(key)
        let r1 = state.opened(id)
        #expect(r1 == [.offerTurn(key, after: .zero)])
        return id
    }

    /// A session of `key` back idle since `since`.
    func idle(_ state: inout PoolState, _ key: PoolKey, since: NIODeadline) -> PoolState.ServerID {
        let id = lent(&state, key)
        state.resetStarted(id)
        state.resetSucceeded(id)
        let r2 = state.checkIn(id, active: true, now: since)
        #expect(r2 == [.watchIdle(id)])
        return id
    }

    @Test func eachServerIsInExactlyOneState() {
        var state = PoolState(maxIdlePerKey: 4)
        let k = key(acme)
        let id = state.startOpening(k)
        #expect(state.state(of: id) == .opening)
        #expect(state.openingCount(k) == 1 && state.lentCount(k) == 0)
        _ = state.opened(id)
        #expect(state.state(of: id) == .lent)
        #expect(state.openingCount(k) == 0 && state.lentCount(k) == 1)
        state.resetStarted(id)
        #expect(state.state(of: id) == .resetting)
        #expect(state.lentCount(k) == 1)  // a session being reset still counts as lent
        state.resetSucceeded(id)
        let r3 = state.checkIn(id, active: true, now: t0)
        #expect(r3 == [.watchIdle(id)])
        #expect(state.state(of: id) == .idle(since: t0))
        #expect(state.lentCount(k) == 0 && state.idleCount(k) == 1)
        let r4 = state.closed(id, key: k)
        #expect(r4 == [])
        #expect(state.state(of: id) == nil)
        #expect(state.idleCount(k) == 0)
    }

    @Test func checkoutLendsTheNewestIdleSessionOfItsKeyOnly() {
        var state = PoolState(maxIdlePerKey: 4)
        let k = key(acme)
        let older = idle(&state, k, since: t0)
        let newer = idle(&state, k, since: t0 + .seconds(1))
        let r5 = state.checkout(key(acme, user: "alice"))
        #expect(r5 == nil)
        let r6 = state.checkout(k)
        #expect(r6 == newer)
        #expect(state.state(of: newer) == .lent)
        let r7 = state.checkout(k)
        #expect(r7 == older)
        let r8 = state.checkout(k)
        #expect(r8 == nil)
    }

    @Test func aSessionFoundDeadAtCheckoutIsForgottenWithoutReleasingWaiters() {
        var state = PoolState(maxIdlePerKey: 4)
        let k = key(acme)
        _ = lent(&state, k)
        let dead = idle(&state, k, since: t0)
        let (waiter, _) = state.wait(for: k, until: t0 + .seconds(3))
        let r9 = state.checkout(k)
        #expect(r9 == dead)
        state.forget(dead)
        #expect(state.state(of: dead) == nil)
        #expect(state.lentCount(k) == 1)
        #expect(state.waiterCount(k) == 1)
        // Its close still frees a slot for the first waiter.
        let r10 = state.closed(dead, key: k)
        #expect(r10 == [.offerTurn(k, after: .milliseconds(10))])
        _ = waiter
    }

    @Test func atMostFourLoginsOfAKeyAtOnce() {
        var state = PoolState(maxIdlePerKey: 4)
        let k = key(acme)
        var ids: [PoolState.ServerID] = []
        for _ in 0..<3 {
            ids.append(state.startOpening(k))
            #expect(!state.shouldWait(k))
        }
        ids.append(state.startOpening(k))
        #expect(state.shouldWait(k))
        #expect(!state.shouldWait(key(acme, user: "alice")))
        // A login that ends lets the next client in line log in.
        let r11 = state.openFailed(ids[0], outOfSlots: false)
        #expect(r11 == [.offerTurn(k, after: .zero)])
        #expect(!state.shouldWait(k))
    }

    @Test func aClientWaitsForASessionBeingResetNotPromisedToAnother() {
        var state = PoolState(maxIdlePerKey: 4)
        let k = key(acme)
        let id = lent(&state, k)
        #expect(!state.shouldWait(k))
        state.resetStarted(id)
        #expect(state.shouldWait(k))
        let (waiter, actions) = state.wait(for: k, until: t0)
        #expect(actions == [.scheduleTimeout(waiter, t0)])
        // That reset session is this waiter's: the next client logs in.
        #expect(!state.shouldWait(k))
        state.resetSucceeded(id)
        // The pool hands the session over to the first waiter.
        let next = state.nextWaiter(k)
        #expect(next?.0 == waiter)
        #expect(next?.1 == [.cancelTimeout(waiter)])
        #expect(state.state(of: id) == .lent)
    }

    @Test func refusedForWantOfASlotWhileSessionsAreLentSaturatesTheKey() {
        var state = PoolState(maxIdlePerKey: 4)
        let k = key(acme)
        _ = lent(&state, k)
        let (first, _) = state.wait(for: k, until: t0 + .seconds(3))
        let attempt = state.startOpening(k)
        let r12 = state.openFailed(attempt, outOfSlots: true)
        #expect(r12 == [.scheduleProbe(k, after: .seconds(1))])
        #expect(state.isSaturated(k))
        #expect(state.shouldWait(k))
        // A second waiter does not start a second probe.
        let (second, actions) = state.wait(for: k, until: t0 + .seconds(3))
        #expect(actions == [.scheduleTimeout(second, t0 + .seconds(3))])

        // The probe: one waiter asks again, and the probe goes on while others wait.
        state.probeFired(k)
        let r13 = state.nextWaiter(k)
        #expect(r13?.0 == first)
        let r14 = state.probeEnded(k)
        #expect(r14 == [.scheduleProbe(k, after: .seconds(1))])
        // The last waiter leaves the line: the probe is cancelled with it.
        let r15 = state.nextWaiter(k)
        #expect(r15?.1 == [.cancelTimeout(second), .cancelProbe(k)])
        let r16 = state.probeEnded(k)
        #expect(r16 == [])
    }

    @Test func refusedForWantOfASlotWithNoneLentIsNotSaturation() {
        var state = PoolState(maxIdlePerKey: 4)
        let k = key(acme)
        let attempt = state.startOpening(k)
        let r17 = state.openFailed(attempt, outOfSlots: true)
        #expect(r17 == [.offerTurn(k, after: .zero)])
        #expect(!state.isSaturated(k))
        #expect(!state.shouldWait(k))
    }

    @Test func aWaiterOfASaturatedKeyStartsTheProbe() {
        var state = PoolState(maxIdlePerKey: 4)
        let k = key(acme)
        _ = lent(&state, k)
        _ = state.openFailed(state.startOpening(k), outOfSlots: true)  // no waiter: no probe yet
        let (waiter, actions) = state.wait(for: k, until: t0)
        #expect(actions == [.scheduleTimeout(waiter, t0), .scheduleProbe(k, after: .seconds(1))])
    }

    @Test func aLoginThatSucceedsEndsSaturation() {
        var state = PoolState(maxIdlePerKey: 4)
        let k = key(acme)
        _ = lent(&state, k)
        _ = state.openFailed(state.startOpening(k), outOfSlots: true)
        #expect(state.isSaturated(k))
        let id = state.startOpening(k)
        let r18 = state.opened(id)
        #expect(r18 == [.offerTurn(k, after: .zero)])
        #expect(!state.isSaturated(k))
    }

    @Test func theLastLentSessionBackReleasesEveryWaiter() {
        var state = PoolState(maxIdlePerKey: 4)
        let k = key(acme)
        let a = lent(&state, k)
        let b = lent(&state, k)
        _ = state.openFailed(state.startOpening(k), outOfSlots: true)
        let (w1, _) = state.wait(for: k, until: t0)
        let (w2, _) = state.wait(for: k, until: t0)
        // One of two back: the waiters wait on.
        let r19 = state.closed(a, key: k)
        #expect(r19 == [.offerTurn(k, after: .milliseconds(10))])
        #expect(state.isSaturated(k))
        // The last: nothing will come back, so all of them ask the tenant again.
        state.resetStarted(b)
        state.resetSucceeded(b)
        let r20 = state.checkIn(b, active: true, now: t0)
        #expect(r20 == [
            .cancelTimeout(w1), .giveTurn(w1), .cancelTimeout(w2), .cancelProbe(k), .giveTurn(w2), .watchIdle(b),
        ])
        #expect(!state.isSaturated(k))
        #expect(state.waiterCount(k) == 0)
    }

    @Test func aClosedServerFreesASlotForItsKeyOrAnotherKeyOfTheTenant() {
        var state = PoolState(maxIdlePerKey: 4)
        let bob = key(acme)
        let alice = key(acme, user: "alice")
        let stranger = key(other)
        let mine = lent(&state, bob)
        _ = lent(&state, bob)
        _ = state.wait(for: stranger, until: t0)
        let r21 = state.closed(mine, key: bob)
        #expect(r21 == [])  // another tenant's waiter gains nothing
        let (_, _) = state.wait(for: alice, until: t0)
        let second = lent(&state, bob)
        let r22 = state.closed(second, key: bob)
        #expect(r22 == [.offerTurn(alice, after: .milliseconds(10))])
        _ = state.wait(for: bob, until: t0)
        let third = lent(&state, bob)
        let r23 = state.closed(third, key: bob)
        #expect(r23 == [.offerTurn(bob, after: .milliseconds(10))])
    }

    @Test func aTimedOutWaiterLeavesTheLineOnce() {
        var state = PoolState(maxIdlePerKey: 4)
        let k = key(acme)
        let (waiter, _) = state.wait(for: k, until: t0)
        let r24 = state.timedOut(waiter)
        #expect(r24)
        #expect(state.waiterCount(k) == 0)
        let r25 = state.timedOut(waiter)
        #expect(!r25)
        let r26 = state.nextWaiter(k)
        #expect(r26 == nil)
    }

    @Test func idleSessionsBeyondTheLimitAreClosed() {
        var state = PoolState(maxIdlePerKey: 2)
        let k = key(acme)
        _ = idle(&state, k, since: t0)
        _ = idle(&state, k, since: t0)
        let third = lent(&state, k)
        state.resetStarted(third)
        state.resetSucceeded(third)
        let r27 = state.checkIn(third, active: true, now: t0)
        #expect(r27 == [.close(third)])
        #expect(state.idleCount(k) == 2)
        let dead = lent(&state, k)
        _ = state.checkout(k)
        state.resetStarted(dead)
        state.resetSucceeded(dead)
        let r28 = state.checkIn(dead, active: false, now: t0)
        #expect(r28 == [.close(dead)])
    }

    @Test func aFailedResetClosesTheSessionWhichCountsAsLentUntilClosed() {
        var state = PoolState(maxIdlePerKey: 2)
        let k = key(acme)
        let id = lent(&state, k)
        state.resetStarted(id)
        let r29 = state.resetFailed(id)
        #expect(r29 == [.close(id)])
        #expect(state.lentCount(k) == 1)
        let r30 = state.closed(id, key: k)
        #expect(r30 == [])
        #expect(state.lentCount(k) == 0)
    }

    @Test func theSweepClosesSessionsIdleLongerThanTheTimeoutAndDeadOnes() {
        var state = PoolState(maxIdlePerKey: 4)
        let k = key(acme)
        let old = idle(&state, k, since: t0)
        let fresh = idle(&state, k, since: t0 + .seconds(20))
        let dead = idle(&state, k, since: t0 + .seconds(20))
        let closed = state.sweep(now: t0 + .seconds(31), idleTimeout: .seconds(30), dead: [dead])
        #expect(Set(closed) == [.close(old), .close(dead)])
        #expect(state.idleCount(k) == 1)
        let r31 = state.checkout(k)
        #expect(r31 == fresh)
    }

    @Test func trimmingClosesTheTenantsIdleSessionsButTheSparedKeys() {
        var state = PoolState(maxIdlePerKey: 4)
        let bob = key(acme)
        let alice = key(acme, user: "alice")
        let kept = idle(&state, bob, since: t0)
        let gone = idle(&state, alice, since: t0)
        let stranger = idle(&state, key(other), since: t0)
        let r32 = state.closeIdle(of: acme, except: bob)
        #expect(r32 == [.close(gone)])
        #expect(state.state(of: kept) != nil && state.state(of: stranger) != nil)
    }
}
