import FleetCore
import Foundation
import Testing

@testable import FleetCatalog

@Suite struct CollationFingerprintCatalogTests {
    func fingerprint(glibc: String) -> CollationFingerprint {
        CollationFingerprint(
            bundleID: "15.18-debian", icuVersion: "72", glibcVersion: glibc, collectedAt: createdAt,
            databases: [
                DatabaseCollation(
                    name: "icudb", provider: .icu, collate: "C.UTF-8", ctype: "C.UTF-8", locale: "en", collationVersion: "153.112",
                    indexes: [CollationIndex(database: "icudb", schema: "public", name: "t_idx", provider: .icu)]
                )
            ]
        )
    }

    @Test func aFingerprintIsRecordedReplacedAndGoesWithItsTenant() throws {
        let catalog = try Catalog.inMemory()
        try catalog.insertBundle(makeBundle())
        _ = try catalog.insertTenant(makeTenant("t1"))
        #expect(try catalog.collationFingerprint(forTenant: "t1") == nil)
        try catalog.setCollationFingerprint(fingerprint(glibc: "2.36"), forTenant: "t1")
        #expect(try catalog.collationFingerprint(forTenant: "t1") == fingerprint(glibc: "2.36"))
        try catalog.setCollationFingerprint(fingerprint(glibc: "2.41"), forTenant: "t1")
        #expect(try catalog.collationFingerprint(forTenant: "t1")?.glibcVersion == "2.41")
        try catalog.deleteTenant(named: "t1")
        _ = try catalog.insertTenant(makeTenant("t1"))
        #expect(try catalog.collationFingerprint(forTenant: "t1") == nil)
        #expect(throws: FleetError.self) { try catalog.setCollationFingerprint(fingerprint(glibc: "2.36"), forTenant: "nobody") }
    }
}
