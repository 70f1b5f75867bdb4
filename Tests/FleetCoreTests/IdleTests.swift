import FleetCore
import Testing

@Suite struct IdleTrackerTests {
    let acme = try! TenantName(validating: "acme")

    @Test func suspendsAfterTheIdlePeriodWithoutClients() {
        var tracker = IdleTracker()
        let after = Duration.seconds(60)
        do { let result = !tracker.observe(acme, connections: 0, isRunning: true, suspendAfter: after, now: .seconds(0)); #expect(result) }
        do { let result = !tracker.observe(acme, connections: 0, isRunning: true, suspendAfter: after, now: .seconds(59)); #expect(result) }
        do { let result = tracker.observe(acme, connections: 0, isRunning: true, suspendAfter: after, now: .seconds(60)); #expect(result) }
    }

    @Test func anyClientRestartsTheClock() {
        var tracker = IdleTracker()
        let after = Duration.seconds(60)
        _ = tracker.observe(acme, connections: 0, isRunning: true, suspendAfter: after, now: .seconds(0))
        do { let result = !tracker.observe(acme, connections: 2, isRunning: true, suspendAfter: after, now: .seconds(50)); #expect(result) }
        do { let result = !tracker.observe(acme, connections: 0, isRunning: true, suspendAfter: after, now: .seconds(100)); #expect(result) }
        tracker.markBusy(acme, now: .seconds(105))
        do { let result = !tracker.observe(acme, connections: 0, isRunning: true, suspendAfter: after, now: .seconds(150)); #expect(result) }
        do { let result = tracker.observe(acme, connections: 0, isRunning: true, suspendAfter: after, now: .seconds(165)); #expect(result) }
    }

    @Test func neverWhenDisabledOrNotRunning() {
        var tracker = IdleTracker()
        do { let result = !tracker.observe(acme, connections: 0, isRunning: true, suspendAfter: .zero, now: .seconds(1000)); #expect(result) }
        _ = tracker.observe(acme, connections: 0, isRunning: false, suspendAfter: .seconds(1), now: .zero)
        do { let result = !tracker.observe(acme, connections: 0, isRunning: false, suspendAfter: .seconds(1), now: .seconds(1000)); #expect(result) }
        // Watching starts when it runs, not before.
        do { let result = !tracker.observe(acme, connections: 0, isRunning: true, suspendAfter: .seconds(1), now: .seconds(1000)); #expect(result) }
        do { let result = tracker.observe(acme, connections: 0, isRunning: true, suspendAfter: .seconds(1), now: .seconds(1001)); #expect(result) }
    }
}

extension IdleTrackerTests {
    /// The daemon observes running tenants only; one that stopped in between must not come back
    /// with its old clock and be suspended the moment it runs again.
    @Test func keepOnlyForgetsTenantsNoLongerObserved() {
        var tracker = IdleTracker()
        let beta = try! TenantName(validating: "beta")
        let after = Duration.seconds(60)
        _ = tracker.observe(acme, connections: 0, isRunning: true, suspendAfter: after, now: .seconds(0))
        _ = tracker.observe(beta, connections: 0, isRunning: true, suspendAfter: after, now: .seconds(0))
        tracker.keepOnly([beta])
        // acme runs again much later: a fresh clock, not 1000 s of idleness.
        do { let result = !tracker.observe(acme, connections: 0, isRunning: true, suspendAfter: after, now: .seconds(1000)); #expect(result) }
        do { let result = tracker.observe(acme, connections: 0, isRunning: true, suspendAfter: after, now: .seconds(1060)); #expect(result) }
        // beta was kept: idle since 0.
        do { let result = tracker.observe(beta, connections: 0, isRunning: true, suspendAfter: after, now: .seconds(1000)); #expect(result) }
    }
}

@Suite struct WakeLimiterTests {
    let acme = try! TenantName(validating: "acme")
    let beta = try! TenantName(validating: "beta")

    @Test func perTenantBurstThenRefill() {
        var limiter = WakeLimiter(perTenant: .init(capacity: 2, refill: 1), overall: .init(capacity: 100, refill: 100))
        do { let result = limiter.allow(acme, now: .zero); #expect(result) }
        do { let result = limiter.allow(acme, now: .zero); #expect(result) }
        do { let result = !limiter.allow(acme, now: .zero); #expect(result) }
        do { let result = limiter.allow(beta, now: .zero); #expect(result) }
        do { let result = !limiter.allow(acme, now: .milliseconds(500)); #expect(result) }
        do { let result = limiter.allow(acme, now: .seconds(1)); #expect(result) }
    }

    @Test func overallCapCoversEveryTenant() {
        var limiter = WakeLimiter(perTenant: .init(capacity: 10, refill: 10), overall: .init(capacity: 2, refill: 1))
        do { let result = limiter.allow(acme, now: .zero); #expect(result) }
        do { let result = limiter.allow(beta, now: .zero); #expect(result) }
        do { let result = !limiter.allow(try! TenantName(validating: "gamma"), now: .zero); #expect(result) }
        do { let result = limiter.allow(acme, now: .seconds(1)); #expect(result) }
    }
}

@Suite struct DurationTextTests {
    @Test(arguments: [("0", 0), ("90", 90), ("90s", 90), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("2d", 172_800)])
    func parses(_ text: String, _ seconds: Int) {
        #expect(DurationText.seconds(text) == seconds)
    }

    @Test(arguments: ["", "-5", "5x", "m", "1.5m", "5 m"])
    func refuses(_ text: String) {
        #expect(DurationText.seconds(text) == nil)
    }
}
