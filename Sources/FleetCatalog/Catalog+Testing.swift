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
}
