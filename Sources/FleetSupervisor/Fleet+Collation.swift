import FleetBundles
import FleetCatalog
import FleetCore
import Foundation
import Glibc
import Logging

// What each tenant's text order depends on (its collation fingerprint), collected once it runs,
// and the guard that refuses a start that would silently reorder its indexes.
//
// Collected over the health probe's connection (role pgfleet, peer authentication, pg_monitor)
// rather than with the bundle's psql as the tenant's OS user: pg_hba.conf lets only the daemon's
// role in without a password, the catalogs it reads are readable by any role, and one short
// session per database keeps to the daemon's own bounded wire reader.
extension Fleet {
    /// The host's glibc, e.g. "2.36" (confstr), nil if it cannot tell.
    static func hostGlibcVersion() -> String? {
        var buffer = [CChar](repeating: 0, count: 128)
        let length = confstr(Int32(_CS_GNU_LIBC_VERSION), &buffer, buffer.count)
        guard length > 1, length <= buffer.count else { return nil }
        let text = String(decoding: buffer.prefix(length - 1).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let parts = text.split(separator: " ")
        return parts.count == 2 && parts[0] == "glibc" ? String(parts[1]) : nil
    }

    /// Where `bundle` would run the tenant: its ICU (as the bundle records it: vendored, or the
    /// host's it was imported against) and the host's glibc now.
    static func collationTarget(_ bundle: BundleRecord) -> CollationTarget {
        CollationTarget(bundleID: bundle.id, major: bundle.major, icuVersion: bundle.icuVersion, glibcVersion: hostGlibcVersion())
    }

    /// The start guard: throws `FleetError.invalidRequest` (the start is refused at once, with
    /// the reason) when the tenant's recorded fingerprint says the bundle about to start it
    /// lacks a provider it uses, or the libraries that sort its indexes changed since.
    static func checkCollation(catalog: Catalog, tenant: String, bundle: BundleRecord) throws {
        guard let recorded = try catalog.collationFingerprint(forTenant: tenant) else { return }
        let target = collationTarget(bundle)
        let verdict = CollationGuard.decide(recorded: recorded, target: target, reindex: false)
        if let refusal = CollationGuard.refusal(verdict, tenant: tenant, target: target) {
            throw FleetError.invalidRequest(refusal)
        }
    }

    /// `settings`, after the collation guard: every spawn of this supervisor (start, restart,
    /// wake, restart after a crash) checks the fingerprint against the host as it is then.
    func guardedByCollation(
        _ settings: @escaping @Sendable () async throws -> [String], record: TenantRecord
    ) -> @Sendable () async throws -> [String] {
        let catalog = catalog
        let tenant = record.name
        let bundleID = record.bundleID
        return {
            if let bundle = try catalog.bundle(id: bundleID) {
                try Self.checkCollation(catalog: catalog, tenant: tenant, bundle: bundle)
            }
            return try await settings()
        }
    }

    /// Collects the fingerprint if none is recorded, it was recorded on another bundle, or the
    /// host's glibc changed since; only while the tenant runs (a suspended one is never woken).
    func collectFingerprintIfNeeded(_ name: TenantName) async {
        guard let record = try? catalog.tenant(named: name.rawValue), let bundle = try? catalog.bundle(id: record.bundleID) else { return }
        let recorded = try? catalog.collationFingerprint(forTenant: name.rawValue)
        if let recorded, recorded.bundleID == bundle.id, recorded.glibcVersion == Self.hostGlibcVersion() { return }
        guard board.snapshot(of: name)?.state == .running else { return }
        do {
            let fingerprint = try await collectFingerprint(record: record, bundle: bundle)
            try catalog.setCollationFingerprint(fingerprint, forTenant: name.rawValue)
            logger.info(
                "collation fingerprint recorded",
                metadata: ["tenant": "\(name)", "providers": "\(fingerprint.providerSummary)", "indexes": "\(fingerprint.indexes.count)"]
            )
        } catch {
            logger.warning("could not collect the collation fingerprint", metadata: ["tenant": "\(name)", "error": "\(error)"])
        }
    }

    /// One short session per database the daemon's role may connect to.
    func collectFingerprint(record: TenantRecord, bundle: BundleRecord) async throws -> CollationFingerprint {
        let listing = await probe.query(Self.databasesSQL, socketDirectory: record.socketDirectory, port: FleetLayout.tenantPort)
        guard listing.outcome == .ready, let text = listing.value else {
            throw FleetError.failed("listing the databases of tenant \(record.name) failed: \(Self.describe(listing.outcome))")
        }
        let names = try JSONDecoder().decode(DatabaseListing.self, from: Data(text.utf8))
        var databases: [DatabaseCollation] = []
        var unreadable = names.unreadable ?? []
        for database in (names.readable ?? []).sorted() {
            let answer = await probe.query(
                Self.databaseSQL(major: bundle.major), socketDirectory: record.socketDirectory, port: FleetLayout.tenantPort, database: database
            )
            guard answer.outcome == .ready, let json = answer.value else {
                unreadable.append(database)
                continue
            }
            databases.append(try JSONDecoder().decode(DatabaseCollation.self, from: Data(json.utf8)))
        }
        return CollationFingerprint(
            bundleID: bundle.id, icuVersion: bundle.icuVersion, glibcVersion: Self.hostGlibcVersion(), collectedAt: Date(),
            databases: databases, unreadable: unreadable.sorted()
        )
    }

    private static func describe(_ outcome: HealthProbe.Outcome) -> String {
        switch outcome {
        case .ready: "no answer"
        case .notReady(let why): why
        }
    }

    private struct DatabaseListing: Decodable {
        var readable: [String]?
        var unreadable: [String]?
    }

    static let databasesSQL = """
        SELECT json_build_object(\
        'readable', json_agg(datname) FILTER (WHERE has_database_privilege(oid, 'CONNECT')), \
        'unreadable', json_agg(datname) FILTER (WHERE NOT has_database_privilege(oid, 'CONNECT')))::text \
        FROM pg_database WHERE datallowconn
        """

    /// One JSON object (DatabaseCollation) for the connected database. An index depends on a
    /// versioned collation when one of its columns' collations (pg_index.indcollation) is ICU's,
    /// or libc's other than C, POSIX and C.*; the default collation (100) is the database's.
    static func databaseSQL(major: Int) -> String {
        let provider = major >= 15 ? "d.datlocprovider::text" : "'c'"
        let locale = major >= 17 ? "d.datlocale" : major >= 15 ? "d.daticulocale" : "NULL::text"
        let version = major >= 15 ? "d.datcollversion" : "NULL::text"
        return """
            WITH db AS (SELECT d.datname, \(provider) AS provider, d.datcollate, d.datctype, \(locale) AS locale, \(version) AS collversion \
            FROM pg_database d WHERE d.datname = current_database()), \
            uses AS (SELECT i.indexrelid, u.coll FROM pg_index i CROSS JOIN LATERAL unnest(i.indcollation::oid[]) AS u(coll) WHERE u.coll <> 0), \
            classified AS (SELECT uses.indexrelid, \
            CASE WHEN c.collprovider = 'd' THEN (SELECT provider FROM db) ELSE c.collprovider::text END AS provider, \
            CASE WHEN c.collprovider = 'd' THEN (SELECT datcollate FROM db) ELSE c.collcollate END AS coll_collate \
            FROM uses JOIN pg_collation c ON c.oid = uses.coll), \
            versioned AS (SELECT DISTINCT indexrelid, provider FROM classified WHERE provider = 'i' OR (provider = 'c' \
            AND upper(coalesce(coll_collate, 'C')) NOT IN ('C', 'POSIX') AND upper(coll_collate) NOT LIKE 'C.%')) \
            SELECT json_build_object('name', db.datname, 'provider', db.provider, 'collate', db.datcollate, 'ctype', db.datctype, \
            'locale', db.locale, 'collationVersion', db.collversion, \
            'collations', (SELECT coalesce(json_agg(json_build_object('name', c.collname, 'schema', n.nspname, 'provider', c.collprovider, \
            'version', c.collversion) ORDER BY n.nspname, c.collname), '[]') FROM pg_collation c JOIN pg_namespace n ON n.oid = c.collnamespace \
            WHERE c.oid IN (SELECT coll FROM uses) AND c.collprovider <> 'd' AND c.collname NOT IN ('C', 'POSIX')), \
            'indexes', (SELECT coalesce(json_agg(json_build_object('database', db.datname, 'schema', n.nspname, 'name', r.relname, \
            'provider', v.provider) ORDER BY n.nspname, r.relname), '[]') FROM versioned v JOIN pg_class r ON r.oid = v.indexrelid \
            JOIN pg_namespace n ON n.oid = r.relnamespace))::text FROM db
            """
    }
}
