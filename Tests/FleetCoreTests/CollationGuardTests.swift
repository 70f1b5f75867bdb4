import FleetCore
import Foundation
import Testing

@Suite struct CollationGuardTests {
    let libcIndex = CollationIndex(database: "app", schema: "public", name: "users_name_idx", provider: .libc)
    let icuIndex = CollationIndex(database: "icudb", schema: "public", name: "t_label_idx", provider: .icu)

    func fingerprint(glibc: String? = "2.36", icu: String? = "72.1", icuDatabase: Bool = true) -> CollationFingerprint {
        var databases = [
            DatabaseCollation(name: "app", provider: .libc, collate: "en_US.UTF-8", ctype: "en_US.UTF-8", locale: nil, collationVersion: "2.36", indexes: [libcIndex]),
            DatabaseCollation(name: "postgres", provider: .libc, collate: "C.UTF-8", ctype: "C.UTF-8", locale: nil, collationVersion: nil),
        ]
        if icuDatabase {
            databases.append(
                DatabaseCollation(name: "icudb", provider: .icu, collate: "C.UTF-8", ctype: "C.UTF-8", locale: "en", collationVersion: "153.112", indexes: [icuIndex])
            )
        }
        return CollationFingerprint(bundleID: "15.18-debian", icuVersion: icu, glibcVersion: glibc, collectedAt: Date(timeIntervalSince1970: 0), databases: databases)
    }

    func target(icu: String? = "72.1", glibc: String? = "2.36", bundle: String = "15.19-debian") -> CollationTarget {
        CollationTarget(bundleID: bundle, major: 15, icuVersion: icu, glibcVersion: glibc)
    }

    @Test func sameLibrariesAreFine() {
        #expect(CollationGuard.decide(recorded: fingerprint(), target: target(), reindex: false) == .fine)
    }

    @Test func anICUDatabaseOnABundleWithoutICUIsRefusedWhateverElse() {
        let verdict = CollationGuard.decide(recorded: fingerprint(), target: target(icu: nil, glibc: "2.41"), reindex: true)
        #expect(verdict == .lacksProvider(provider: .icu, databases: ["icudb"]))
        let text = CollationGuard.refusal(verdict, tenant: "t1", target: target(icu: nil)) ?? ""
        #expect(text.contains("icudb") && text.contains("without ICU") && text.contains("nothing was changed"))
    }

    @Test func anICUCollationInALibcDatabaseNeedsICUToo() {
        var recorded = fingerprint(icuDatabase: false)
        recorded.databases[0].collations = [CollationInUse(name: "en-x-icu", schema: "pg_catalog", provider: .icu, version: "153.112")]
        #expect(CollationGuard.decide(recorded: recorded, target: target(icu: nil), reindex: false) == .lacksProvider(provider: .icu, databases: ["app"]))
    }

    @Test func aLibcOnlyTenantMovesToABundleWithoutICU() {
        #expect(CollationGuard.decide(recorded: fingerprint(icuDatabase: false), target: target(icu: nil), reindex: false) == .fine)
    }

    @Test func aGlibcChangeListsOnlyTheLibcIndexes() {
        let verdict = CollationGuard.decide(recorded: fingerprint(), target: target(glibc: "2.41"), reindex: false)
        #expect(verdict == .versionsDiffer(changes: ["glibc 2.36 → 2.41"], indexes: [libcIndex]))
        let text = CollationGuard.refusal(verdict, tenant: "t1", target: target(glibc: "2.41")) ?? ""
        #expect(text.contains("app.public.users_name_idx") && text.contains("pgfleet tenant update t1 --bundle 15.19-debian --reindex"))
        #expect(!text.contains("t_label_idx"))
    }

    @Test func anICUChangeListsOnlyTheICUIndexes() {
        #expect(
            CollationGuard.decide(recorded: fingerprint(), target: target(icu: "76.1"), reindex: false)
                == .versionsDiffer(changes: ["ICU 72.1 → 76.1"], indexes: [icuIndex])
        )
    }

    @Test func withReindexBothChangesGiveTheExactSortedList() {
        #expect(
            CollationGuard.decide(recorded: fingerprint(), target: target(icu: "76.1", glibc: "2.41"), reindex: true)
                == .reindex(changes: ["glibc 2.36 → 2.41", "ICU 72.1 → 76.1"], indexes: [libcIndex, icuIndex])
        )
        #expect(CollationGuard.refusal(.reindex(changes: [], indexes: []), tenant: "t1", target: target()) == nil)
    }

    @Test func aChangeWithoutDependentIndexesIsFine() {
        var recorded = fingerprint(icuDatabase: false)
        recorded.databases[0].indexes = []
        #expect(CollationGuard.decide(recorded: recorded, target: target(glibc: "2.41"), reindex: false) == .fine)
    }

    @Test func anUnknownGlibcOnEitherSideIsNotAChange() {
        #expect(CollationGuard.decide(recorded: fingerprint(glibc: nil), target: target(glibc: "2.41"), reindex: false) == .fine)
    }

    @Test func theSummaryNamesProvidersOnce() {
        #expect(fingerprint().providerSummary == "libc+icu")
        #expect(fingerprint().usesICU)
        #expect(fingerprint(icuDatabase: false).providerSummary == "libc")
        #expect(fingerprint().indexes == [libcIndex, icuIndex])
    }
}
