import NIOCore
import Testing

@testable import FleetProxy

@Suite struct PooledLoginMachineTests {
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    @Test func aRefusalWithinTheWaitTrimsThenWaitsWhereSessionsOfItsKindAreLent() {
        var machine = PooledLoginMachine()
        #expect(machine.slotRefused(now: start) == .trim)
        #expect(machine.waitedForSlot)
        #expect(machine.trimmed(hasLent: true, attempt: 1) == .waitForSession(until: start + .seconds(3)))
    }

    @Test func withNoneLentHereItAsksAgainLaterEachTime() {
        var machine = PooledLoginMachine()
        #expect(machine.slotRefused(now: start) == .trim)
        #expect(machine.trimmed(hasLent: false, attempt: 1) == .retry(after: .milliseconds(25)))
        #expect(machine.trimmed(hasLent: false, attempt: 3) == .retry(after: .milliseconds(75)))
        #expect(machine.trimmed(hasLent: false, attempt: 50) == .retry(after: .milliseconds(200)))
    }

    @Test func theDeadlineIsSetOnceAndARefusalAfterItIsPassedOn() {
        var machine = PooledLoginMachine()
        #expect(machine.slotRefused(now: start) == .trim)
        // Later refusals and waits keep the first deadline.
        #expect(machine.slotRefused(now: start + .seconds(2)) == .trim)
        #expect(machine.queued(now: start + .seconds(2), saturated: false) == start + .seconds(3))
        #expect(machine.slotRefused(now: start + .seconds(3)) == .refuse)
    }

    @Test func queueingStartsTheWaitAndCountsOnlyASaturatedTenant() {
        var machine = PooledLoginMachine()
        #expect(machine.queued(now: start, saturated: false) == start + .seconds(3))
        #expect(!machine.waitedForSlot)
        #expect(machine.queued(now: start + .seconds(1), saturated: true) == start + .seconds(3))
        #expect(machine.waitedForSlot)
    }
}
