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
