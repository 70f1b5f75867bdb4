import FleetCore
import Testing

@Suite struct ReadyPoolStateTests {
    @Test func claimsTakeTheOldestEntryOnceAndOnlyForTheirBundle() {
        var pool = ReadyPoolState(size: 2)
        pool.found(bundle: "15", entries: ["ready-a", "ready-b"])
        #expect(pool.claim(bundle: "16") == nil)
        #expect(pool.claim(bundle: "15") == "ready-a")
        #expect(pool.claim(bundle: "15") == "ready-b")
        #expect(pool.claim(bundle: "15") == nil)
    }

    @Test func buildsOneAtATimeForTheEmptiestBundle() {
        var pool = ReadyPoolState(size: 2)
        pool.found(bundle: "15", entries: ["ready-a"])
        #expect(pool.nextBuild(bundles: ["15", "16"], createsInProgress: 0, now: .zero) == "16")
        pool.buildStarted(bundle: "16")
        #expect(pool.nextBuild(bundles: ["15", "16"], createsInProgress: 0, now: .zero) == nil)
        #expect(pool.status(bundles: ["15", "16"]) == [
            PoolStatus(bundle: "15", ready: 1, size: 2, building: false), PoolStatus(bundle: "16", ready: 0, size: 2, building: true),
        ])
        pool.buildFinished(bundle: "16", entry: "ready-b", now: .seconds(1))
        // Ties go to the bundle listed first.
        #expect(pool.nextBuild(bundles: ["15", "16"], createsInProgress: 0, now: .seconds(1)) == "15")
        pool.buildStarted(bundle: "15")
        pool.buildFinished(bundle: "15", entry: "ready-c", now: .seconds(2))
        #expect(pool.nextBuild(bundles: ["15", "16"], createsInProgress: 0, now: .seconds(2)) == "16")
        pool.buildStarted(bundle: "16")
        pool.buildFinished(bundle: "16", entry: "ready-d", now: .seconds(3))
        // Full.
        #expect(pool.nextBuild(bundles: ["15", "16"], createsInProgress: 0, now: .seconds(3)) == nil)
        // A claim makes room again: the pool refills.
        #expect(pool.claim(bundle: "16") == "ready-b")
        #expect(pool.nextBuild(bundles: ["15", "16"], createsInProgress: 0, now: .seconds(4)) == "16")
    }

    @Test func waitsWhileATenantIsBeingCreated() {
        let pool = ReadyPoolState(size: 1)
        #expect(pool.nextBuild(bundles: ["15"], createsInProgress: 1, now: .zero) == nil)
        #expect(pool.nextBuild(bundles: ["15"], createsInProgress: 0, now: .zero) == "15")
    }

    @Test func aFailedBuildWaitsBeforeItsBundleIsTriedAgain() {
        var pool = ReadyPoolState(size: 1)
        pool.buildStarted(bundle: "15")
        pool.buildFinished(bundle: "15", entry: nil, now: .seconds(10))
        #expect(pool.nextBuild(bundles: ["15", "16"], createsInProgress: 0, now: .seconds(11)) == "16")
        #expect(pool.nextBuild(bundles: ["15"], createsInProgress: 0, now: .seconds(11)) == nil)
        #expect(pool.nextBuild(bundles: ["15"], createsInProgress: 0, now: .seconds(10) + ReadyPoolState.retryDelay) == "15")
    }

    @Test func sizeZeroIsOff() {
        let pool = ReadyPoolState(size: 0)
        #expect(pool.nextBuild(bundles: ["15"], createsInProgress: 0, now: .zero) == nil)
    }

    @Test func removedBundlesAreForgotten() {
        var pool = ReadyPoolState(size: 2)
        pool.found(bundle: "15", entries: ["ready-a"])
        pool.found(bundle: "gone", entries: ["ready-b", "ready-c"])
        #expect(pool.keepOnly(bundles: ["15"]) == ["gone": ["ready-b", "ready-c"]])
        #expect(pool.claim(bundle: "gone") == nil)
        #expect(pool.claim(bundle: "15") == "ready-a")
    }

    @Test func entryNames() {
        let token = PoolEntryName.token()
        #expect(PoolEntryName.isReady(PoolEntryName.ready(token)))
        #expect(!PoolEntryName.isReady(PoolEntryName.building(token)))
        #expect(!PoolEntryName.isReady("ready-"))
        #expect(!PoolEntryName.isReady("ready-../x"))
        #expect(!PoolEntryName.isReady("something"))
    }
}
