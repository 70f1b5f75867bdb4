import FleetCore
import Foundation
import Testing

@testable import FleetCatalog

@Suite("Catalog: bundles")
struct BundleTests {
    @Test func theFirstBundleBecomesTheDefault() throws {
        let catalog = try Catalog.inMemory()
        #expect(try catalog.defaultBundle() == nil)
        try catalog.insertBundle(makeBundle("15.18-debian", isDefault: false))
        #expect(try catalog.defaultBundle()?.id == "15.18-debian")
        #expect(try catalog.bundle(id: "15.18-debian")?.isDefault == true)

        try catalog.insertBundle(makeBundle("16.4-debian", major: 16, version: "16.4"))
        #expect(try catalog.defaultBundle()?.id == "15.18-debian")
        #expect(try catalog.bundle(id: "16.4-debian")?.isDefault == false)
    }

    @Test func aNewDefaultClearsTheOldOne() throws {
        let catalog = try Catalog.inMemory()
        try catalog.insertBundle(makeBundle("15.18-debian"))
        try catalog.insertBundle(makeBundle("16.4-debian", major: 16, version: "16.4", isDefault: true))
        #expect(try catalog.defaultBundle()?.id == "16.4-debian")
        #expect(try catalog.bundles().filter(\.isDefault).map(\.id) == ["16.4-debian"])

        try catalog.setDefaultBundle(id: "15.18-debian")
        #expect(try catalog.bundles().filter(\.isDefault).map(\.id) == ["15.18-debian"])
        #expect(throws: FleetError.bundleNotFound("17.0-debian")) { try catalog.setDefaultBundle(id: "17.0-debian") }
        #expect(try catalog.defaultBundle()?.id == "15.18-debian")
    }

    @Test func aBundleRoundTrips() throws {
        let catalog = try Catalog.inMemory()
        var bundle = makeBundle("16.4-tarball", major: 16, version: "16.4", isDefault: true)
        bundle.sourceKind = "tarball"
        bundle.glibcVersion = nil
        bundle.icuVersion = "72.1"
        bundle.fileCount = 987
        try catalog.insertBundle(bundle)
        #expect(try catalog.bundle(id: "16.4-tarball") == bundle)
        #expect(try catalog.bundle(id: "nope") == nil)
    }

    @Test func aDuplicateIdIsRefused() throws {
        let catalog = try Catalog.inMemory()
        try catalog.insertBundle(makeBundle("15.18-debian"))
        var duplicate = makeBundle("15.18-debian", isDefault: true)
        duplicate.path = "/elsewhere"
        #expect(throws: FleetError.bundleExists("15.18-debian")) { try catalog.insertBundle(duplicate) }
        #expect(try catalog.bundles().map(\.path) == ["/var/lib/pgfleet/bundles/15.18-debian"])
    }

    @Test func bundlesAreOrderedByMajorThenVersionNumbers() throws {
        let catalog = try Catalog.inMemory()
        try catalog.insertBundle(makeBundle("16.4-debian", major: 16, version: "16.4"))
        try catalog.insertBundle(makeBundle("15.18-tarball", major: 15, version: "15.18"))
        try catalog.insertBundle(makeBundle("15.9-debian", major: 15, version: "15.9"))
        try catalog.insertBundle(makeBundle("15.18-debian", major: 15, version: "15.18"))
        try catalog.insertBundle(makeBundle("14.13-debian", major: 14, version: "14.13"))
        #expect(try catalog.bundles().map(\.id) == [
            "14.13-debian", "15.9-debian", "15.18-debian", "15.18-tarball", "16.4-debian",
        ])
    }

    @Test func aBundleInUseCannotBeDeleted() throws {
        let catalog = try Catalog.inMemory()
        try catalog.insertBundle(makeBundle("15.18-debian"))
        _ = try catalog.insertTenant(makeTenant("beta"))
        _ = try catalog.insertTenant(makeTenant("alpha"))
        #expect(try catalog.tenantCount(bundleID: "15.18-debian") == 2)
        #expect(try catalog.tenantCount(bundleID: "16.4-debian") == 0)

        #expect(throws: FleetError.conflict("bundle 15.18-debian is used by 2 tenant(s): alpha, beta")) {
            try catalog.deleteBundle(id: "15.18-debian")
        }
        #expect(try catalog.bundle(id: "15.18-debian") != nil)

        try catalog.deleteTenant(named: "alpha")
        try catalog.deleteTenant(named: "beta")
        try catalog.deleteBundle(id: "15.18-debian")
        #expect(try catalog.bundles().isEmpty)
        #expect(throws: FleetError.bundleNotFound("15.18-debian")) { try catalog.deleteBundle(id: "15.18-debian") }
    }

    @Test func theConflictMessageNamesAtMostTenTenants() {
        let names = (1...12).map { "t\($0)" }
        #expect(Catalog.inUseMessage(bundle: "b", tenants: names)
            == "bundle b is used by 12 tenant(s): t1, t2, t3, t4, t5, t6, t7, t8, t9, t10, …")
    }

    @Test func deletingTheDefaultPromotesTheNewestBundleOfItsMajor() throws {
        let catalog = try Catalog.inMemory()
        try catalog.insertBundle(makeBundle("15.18-debian", isDefault: true))
        try catalog.insertBundle(makeBundle("16.4-debian", major: 16, version: "16.4"))
        try catalog.insertBundle(makeBundle("15.9-debian", major: 15, version: "15.9"))
        try catalog.deleteBundle(id: "15.18-debian")
        #expect(try catalog.defaultBundle()?.id == "15.9-debian")
        #expect(try catalog.majorDefaultBundle(major: 15)?.id == "15.9-debian")

        // The last of its major: the newest of all takes over, already its major's default.
        try catalog.deleteBundle(id: "15.9-debian")
        #expect(try catalog.defaultBundle()?.id == "16.4-debian")
        #expect(try catalog.bundles().filter(\.isMajorDefault).map(\.id) == ["16.4-debian"])

        try catalog.deleteBundle(id: "16.4-debian")
        #expect(try catalog.defaultBundle() == nil)
        // With no bundle left, the next one imported is the default again.
        try catalog.insertBundle(makeBundle("17.0-debian", major: 17, version: "17.0"))
        #expect(try catalog.defaultBundle()?.id == "17.0-debian")
    }

    @Test func everyMajorHasOneDefaultAndTheFleetDefaultIsOneOfThem() throws {
        let catalog = try Catalog.inMemory()
        try catalog.insertBundle(makeBundle("15.18-debian"))
        try catalog.insertBundle(makeBundle("16.4-tarball", major: 16, version: "16.4"))
        try catalog.insertBundle(makeBundle("16.10-tarball", major: 16, version: "16.10"))
        // The first of each major is that major's default; the very first is the fleet's.
        #expect(try catalog.bundles().filter(\.isMajorDefault).map(\.id) == ["15.18-debian", "16.4-tarball"])
        #expect(try catalog.defaultBundle()?.id == "15.18-debian")

        // A major's default alone leaves the fleet's default on another major where it was.
        try catalog.setDefault(id: "16.10-tarball", fleet: false)
        #expect(try catalog.majorDefaultBundle(major: 16)?.id == "16.10-tarball")
        #expect(try catalog.defaultBundle()?.id == "15.18-debian")

        // With `fleet`, both move; and a later major default of the fleet's major takes the fleet's along.
        try catalog.setDefault(id: "16.4-tarball", fleet: true)
        #expect(try catalog.defaultBundle()?.id == "16.4-tarball")
        try catalog.setDefault(id: "16.10-tarball", fleet: false)
        #expect(try catalog.defaultBundle()?.id == "16.10-tarball")
        #expect(try catalog.bundles().filter(\.isMajorDefault).map(\.id) == ["15.18-debian", "16.10-tarball"])

        // Importing with --default makes it the fleet's and its major's default.
        try catalog.insertBundle(makeBundle("15.19-tarball", major: 15, version: "15.19", isDefault: true))
        #expect(try catalog.defaultBundle()?.id == "15.19-tarball")
        #expect(try catalog.bundles().filter(\.isMajorDefault).map(\.id) == ["15.19-tarball", "16.10-tarball"])
        #expect(throws: FleetError.bundleNotFound("17.0-x")) { try catalog.setDefault(id: "17.0-x", fleet: false) }
    }
}
