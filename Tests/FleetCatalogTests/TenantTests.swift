import FleetCore
import Foundation
import Testing

@testable import FleetCatalog

@Suite("Catalog: tenants and meta")
struct TenantTests {
    private func catalogWithBundle() throws -> Catalog {
        let catalog = try Catalog.inMemory()
        try catalog.insertBundle(makeBundle())
        return catalog
    }

    @Test func insertAssignsAnIdAndRoundTrips() throws {
        let catalog = try catalogWithBundle()
        var tenant = makeTenant("alpha")
        tenant.failureReason = "initdb failed"
        let inserted = try catalog.insertTenant(tenant)
        #expect(inserted.id == 1)
        var expected = tenant
        expected.id = 1
        #expect(inserted == expected)
        #expect(try catalog.tenant(named: "alpha") == expected)
        #expect(try catalog.tenant(named: "beta") == nil)
    }

    @Test func theReturnedRecordIsTheStoredOne() throws {
        let catalog = try catalogWithBundle()
        var tenant = makeTenant("alpha")
        tenant.createdAt = Date(timeIntervalSince1970: 1_700_000_000.123_456)
        let inserted = try catalog.insertTenant(tenant)
        // Stored to the millisecond: what insert returns is what later reads see.
        #expect(try catalog.tenant(named: "alpha") == inserted)
        #expect(abs(inserted.createdAt.timeIntervalSince1970 - 1_700_000_000.123) < 0.000_5)
    }

    @Test func tenantsAreOrderedByName() throws {
        let catalog = try catalogWithBundle()
        for name in ["delta", "alpha", "charlie", "bravo"] { _ = try catalog.insertTenant(makeTenant(name)) }
        #expect(try catalog.tenants().map(\.name) == ["alpha", "bravo", "charlie", "delta"])
    }

    /// `tenants()` reads rows by position; it must read what GRDB's Decodable support reads.
    @Test func readingByPositionReadsWhatDecodableReads() throws {
        let catalog = try catalogWithBundle()
        var rows: [TenantRecord] = []
        for index in 0..<50 {
            var tenant = makeTenant(String(format: "t%02d", index), uid: 60000 + index)
            tenant.createdAt = Date(timeIntervalSince1970: 1_700_000_000 + Double(index) * 1_234.567_891)
            tenant.failureReason = index % 3 == 0 ? nil : "failed: \"x\" \\ é 😀\n\(index)"
            tenant.suspended = index % 2 == 0
            tenant.suspendAfter = index % 4 == 0 ? nil : index % 4 == 1 ? 0 : 300 * index
            tenant.desiredState = index % 5 == 0 ? .stopped : .running
            tenant.port = 5432 + index
            rows.append(tenant)
        }
        try catalog.insertTenantsInOneTransaction(rows.shuffled())
        let read = try catalog.tenants()
        #expect(read == (try catalog.tenantsDecodedByGRDB()))
        #expect(read.map(\.name) == rows.map(\.name))
        #expect(read.map(\.failureReason) == rows.map(\.failureReason))
        #expect(read.map(\.suspendAfter) == rows.map(\.suspendAfter))
    }

    /// A column added by a migration must be added to what `tenants()` selects.
    @Test func theSelectionNamesEveryColumn() throws {
        let catalog = try catalogWithBundle()
        let selected = TenantRecord.selection.split(separator: ",").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        #expect(selected == (try catalog.tenantColumns()))
    }

    @Test func anUnknownDesiredStateIsAnErrorNotACrash() throws {
        let catalog = try catalogWithBundle()
        _ = try catalog.insertTenant(makeTenant("alpha"))
        try catalog.executeRawSQL("PRAGMA ignore_check_constraints = ON")
        try catalog.executeRawSQL("UPDATE tenant SET desired_state = 'paused'")
        #expect(throws: (any Error).self) { try catalog.tenants() }
    }

    /// The daemon's once-a-second idle check reads the rows of its running tenants by name: a
    /// few hundred among thousands, found through the unique index on name, not a full scan.
    @Test func tenantsByNameAmongThousands() throws {
        let catalog = try catalogWithBundle()
        try catalog.insertTenantsInOneTransaction((0..<3000).map { makeTenant(String(format: "t%04d", $0), uid: 60000 + $0) })
        #expect(try catalog.tenants().count == 3000)
        let found = try catalog.tenants(named: ["t2999", "t0001", "t1500", "missing", "t0001"])
        #expect(found.map(\.name) == ["t0001", "t1500", "t2999"])
        #expect(found.map(\.uid) == [60001, 61500, 62999])
        #expect(try catalog.tenants(named: [String]()).isEmpty)
        let many = (0..<500).map { String(format: "t%04d", $0 * 6) }
        #expect(try catalog.tenants(named: many).map(\.name) == many)

        let plan = try catalog.queryPlan("SELECT * FROM tenant WHERE name IN ('t0001', 't1500') ORDER BY name")
        #expect(plan.contains { $0.contains("USING INDEX") && $0.contains("name") }, "\(plan)")
        #expect(!plan.contains { $0.hasPrefix("SCAN tenant") && !$0.contains("INDEX") }, "\(plan)")
    }

    @Test func aDuplicateNameIsRefused() throws {
        let catalog = try catalogWithBundle()
        _ = try catalog.insertTenant(makeTenant("alpha", uid: 60001))
        #expect(throws: FleetError.tenantExists("alpha")) { try catalog.insertTenant(makeTenant("alpha", uid: 60002)) }
        #expect(try catalog.tenants().map(\.uid) == [60001])
    }

    @Test func concurrentInsertsOfOneNameLetExactlyOneWin() async throws {
        try await withTemporaryDirectoryAsync { dir in
            let catalog = try Catalog(path: dir + "/catalog.sqlite")
            try catalog.insertBundle(makeBundle())
            let outcomes = try await withThrowingTaskGroup(of: Bool.self) { group in
                for uid in 0..<8 {
                    group.addTask {
                        do {
                            _ = try catalog.insertTenant(makeTenant("alpha", uid: 60000 + uid))
                            return true
                        } catch FleetError.tenantExists("alpha") {
                            return false
                        }
                    }
                }
                return try await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            #expect(outcomes.filter { $0 }.count == 1)
            #expect(outcomes.count == 8)
            #expect(try catalog.tenants().count == 1)
        }
    }

    @Test func aMissingBundleIsRefused() throws {
        let catalog = try catalogWithBundle()
        #expect(throws: FleetError.bundleNotFound("16.4-debian")) {
            try catalog.insertTenant(makeTenant("alpha", bundle: "16.4-debian"))
        }
        #expect(try catalog.tenants().isEmpty)
    }

    @Test func desiredStateRoundTripsAsText() throws {
        let catalog = try catalogWithBundle()
        _ = try catalog.insertTenant(makeTenant("alpha"))
        #expect(try catalog.fetchRawStrings("SELECT desired_state FROM tenant") == ["running"])

        try catalog.setDesiredState(.stopped, forTenant: "alpha")
        #expect(try catalog.tenant(named: "alpha")?.desiredState == .stopped)
        #expect(try catalog.fetchRawStrings("SELECT desired_state FROM tenant") == ["stopped"])

        try catalog.setDesiredState(.running, forTenant: "alpha")
        #expect(try catalog.tenant(named: "alpha")?.desiredState == .running)
        #expect(throws: FleetError.tenantNotFound("beta")) { try catalog.setDesiredState(.stopped, forTenant: "beta") }
    }

    @Test func failureReasonRoundTrips() throws {
        let catalog = try catalogWithBundle()
        _ = try catalog.insertTenant(makeTenant("alpha"))
        try catalog.setFailureReason("postmaster exited with status 1", forTenant: "alpha")
        #expect(try catalog.tenant(named: "alpha")?.failureReason == "postmaster exited with status 1")
        try catalog.setFailureReason(nil, forTenant: "alpha")
        #expect(try catalog.tenant(named: "alpha")?.failureReason == nil)
        #expect(try catalog.fetchRawStrings("SELECT failure_reason FROM tenant") == [nil])
        #expect(throws: FleetError.tenantNotFound("beta")) { try catalog.setFailureReason("x", forTenant: "beta") }
    }

    @Test func updateReplacesTheRowById() throws {
        let catalog = try catalogWithBundle()
        try catalog.insertBundle(makeBundle("16.4-debian", major: 16, version: "16.4"))
        var alpha = try catalog.insertTenant(makeTenant("alpha"))
        _ = try catalog.insertTenant(makeTenant("bravo"))

        alpha.port = 5433
        alpha.bundleID = "16.4-debian"
        alpha.desiredState = .stopped
        try catalog.updateTenant(alpha)
        #expect(try catalog.tenant(named: "alpha") == alpha)
        #expect(try catalog.tenantCount(bundleID: "16.4-debian") == 1)

        var clash = alpha
        clash.name = "bravo"
        #expect(throws: FleetError.tenantExists("bravo")) { try catalog.updateTenant(clash) }
        var orphan = alpha
        orphan.bundleID = "nope"
        #expect(throws: FleetError.bundleNotFound("nope")) { try catalog.updateTenant(orphan) }
        #expect(try catalog.tenant(named: "alpha") == alpha)

        var gone = alpha
        gone.id = 99
        #expect(throws: FleetError.tenantNotFound("alpha")) { try catalog.updateTenant(gone) }
        gone.id = nil
        #expect(throws: FleetError.tenantNotFound("alpha")) { try catalog.updateTenant(gone) }
    }

    @Test func deleteRemovesTheTenant() throws {
        let catalog = try catalogWithBundle()
        _ = try catalog.insertTenant(makeTenant("alpha"))
        _ = try catalog.insertTenant(makeTenant("bravo"))
        try catalog.deleteTenant(named: "alpha")
        #expect(try catalog.tenant(named: "alpha") == nil)
        #expect(try catalog.tenants().map(\.name) == ["bravo"])
        #expect(throws: FleetError.tenantNotFound("alpha")) { try catalog.deleteTenant(named: "alpha") }
    }

    @Test func idsAreNeverReused() throws {
        let catalog = try catalogWithBundle()
        #expect(try catalog.insertTenant(makeTenant("alpha")).id == 1)
        #expect(try catalog.insertTenant(makeTenant("bravo")).id == 2)
        try catalog.deleteTenant(named: "bravo")
        // Without AUTOINCREMENT, SQLite would hand out 2 again.
        #expect(try catalog.insertTenant(makeTenant("bravo")).id == 3)
        try catalog.deleteTenant(named: "alpha")
        try catalog.deleteTenant(named: "bravo")
        #expect(try catalog.insertTenant(makeTenant("charlie")).id == 4)

        // An id passed in is ignored rather than used to fill a hole.
        var explicit = makeTenant("delta")
        explicit.id = 1
        #expect(try catalog.insertTenant(explicit).id == 5)
    }

    @Test func metaSetsReplacesAndRemoves() throws {
        let catalog = try Catalog.inMemory()
        #expect(try catalog.meta("instance_id") == nil)
        try catalog.setMeta("instance_id", "one")
        try catalog.setMeta("other", "x")
        #expect(try catalog.meta("instance_id") == "one")
        try catalog.setMeta("instance_id", "two")
        #expect(try catalog.meta("instance_id") == "two")
        try catalog.setMeta("instance_id", nil)
        #expect(try catalog.meta("instance_id") == nil)
        #expect(try catalog.meta("other") == "x")
        try catalog.setMeta("absent", nil)
    }
}

@Suite("Catalog: suspension")
struct CatalogSuspensionTests {
    @Test func suspendedFlagAndSuspendAfterRoundTrip() throws {
        let catalog = try Catalog.inMemory()
        try catalog.insertBundle(makeBundle())
        let inserted = try catalog.insertTenant(makeTenant("alpha"))
        #expect(inserted.suspended == false)
        #expect(inserted.suspendAfter == nil)
        try catalog.setSuspended(true, forTenant: "alpha")
        try catalog.setSuspendAfter(300, forTenant: "alpha")
        let read = try #require(try catalog.tenant(named: "alpha"))
        #expect(read.suspended == true)
        #expect(read.suspendAfter == 300)
        #expect(read.desiredState == inserted.desiredState)
        try catalog.setSuspendAfter(nil, forTenant: "alpha")
        #expect(try catalog.tenant(named: "alpha")?.suspendAfter == nil)
        #expect(throws: FleetError.tenantNotFound("nosuch")) { try catalog.setSuspended(true, forTenant: "nosuch") }
    }

    @Test func limitsRoundTripAndClear() throws {
        let catalog = try Catalog.inMemory()
        try catalog.insertBundle(makeBundle())
        var row = makeTenant("alpha")
        row.limits = TenantLimits(cpuMillicores: 500, memoryBytes: 256 << 20)
        let inserted = try catalog.insertTenant(row)
        #expect(inserted.limits == TenantLimits(cpuMillicores: 500, memoryBytes: 256 << 20))
        let all = TenantLimits(cpuMillicores: 1500, memoryBytes: 1 << 40, pids: 300, ioWeight: 50, diskBytes: 10 << 30, shmBytes: 256 << 20, hugePages: .on)
        try catalog.setLimits(all, forTenant: "alpha")
        #expect(try catalog.tenant(named: "alpha")?.limits == all)
        #expect(try catalog.tenant(named: "alpha")?.spec.limits == all)
        try catalog.setLimits(.none, forTenant: "alpha")
        #expect(try catalog.tenant(named: "alpha")?.limits == TenantLimits.none)
        #expect(throws: FleetError.tenantNotFound("nosuch")) { try catalog.setLimits(all, forTenant: "nosuch") }
    }
}
