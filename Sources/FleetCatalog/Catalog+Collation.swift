import FleetCore
import Foundation
import GRDB

extension Catalog {
    /// The tenant's recorded collation fingerprint; nil if none was collected yet (or the tenant is gone).
    public func collationFingerprint(forTenant name: String) throws -> CollationFingerprint? {
        try writer.read { db in
            guard let id = try TenantRecord.filter(TenantRecord.Columns.name == name).fetchOne(db)?.id else { return nil }
            return try TenantCollationRecord.fetchOne(db, key: id)?.decoded()
        }
    }

    /// Every recorded fingerprint, by tenant name, in one read: a list of thousands of tenants
    /// must not ask once per tenant. An unreadable fingerprint is left out, as for one tenant.
    public func collationFingerprints() throws -> [String: CollationFingerprint] {
        try writer.read { db in
            let names = Dictionary(uniqueKeysWithValues: try Row.fetchAll(db, sql: "SELECT id, name FROM tenant").map { (row: Row) -> (Int64, String) in (row["id"], row["name"]) })
            var fingerprints: [String: CollationFingerprint] = [:]
            for record in try TenantCollationRecord.fetchAll(db) {
                if let name = names[record.tenantID], let fingerprint = try? record.decoded() { fingerprints[name] = fingerprint }
            }
            return fingerprints
        }
    }

    /// Records (replacing) the tenant's fingerprint. Throws `FleetError.tenantNotFound` if it is gone.
    public func setCollationFingerprint(_ fingerprint: CollationFingerprint, forTenant name: String) throws {
        try writer.write { db in
            guard let id = try TenantRecord.filter(TenantRecord.Columns.name == name).fetchOne(db)?.id else {
                throw FleetError.tenantNotFound(name)
            }
            try TenantCollationRecord(tenantID: id, fingerprint: fingerprint).save(db)
        }
    }
}
