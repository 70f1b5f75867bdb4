import GRDB

// Raw SQL for tests that must look under the records (stored text, schema constraints), reachable
// through `@testable import` so the test target needs no GRDB import of its own.
extension Catalog {
    func executeRawSQL(_ sql: String) throws {
        try writer.write { db in try db.execute(sql: sql) }
    }

    func fetchRawStrings(_ sql: String) throws -> [String?] {
        try writer.read { db in try String?.fetchAll(db, sql: sql) }
    }

    /// SQLite's plan for `sql`: one line per step, e.g. "SEARCH tenant USING INDEX …".
    func queryPlan(_ sql: String) throws -> [String] {
        try writer.read { db in try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + sql).map { $0["detail"] as String } }
    }

    /// Thousands of rows for scale tests, in one transaction (one fsync, not one per row).
    func insertTenantsInOneTransaction(_ tenants: [TenantRecord]) throws {
        try writer.write { db in
            for tenant in tenants {
                var record = tenant
                record.id = nil
                try record.insert(db)
            }
        }
    }

    /// All tenants through GRDB's `Decodable` support, as `tenants()` read them before it read
    /// by position.
    func tenantsDecodedByGRDB() throws -> [TenantRecord] {
        try writer.read { db in try TenantRecord.order(TenantRecord.Columns.name).fetchAll(db) }
    }

    /// The tenant table's columns, in the table's order.
    func tenantColumns() throws -> [String] {
        try writer.read { db in try db.columns(in: TenantRecord.databaseTableName).map(\.name) }
    }
}
