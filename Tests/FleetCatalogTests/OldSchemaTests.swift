import FleetCore
import Foundation
import GRDB
import Testing

@testable import FleetCatalog

/// Tenants made by an earlier pgfleet keep working: a catalog written by the first schema only is
/// migrated when opened, and its rows read as they were written (with the defaults of the columns
/// added since).
@Suite struct OldSchemaTests {
    @Test func aCatalogOfTheFirstSchemaOpensAndReadsItsTenants() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/catalog.sqlite"
            do {
                let old = try DatabaseQueue(path: path)
                try Schema.migrator.migrate(old, upTo: "v2-meta")
                try old.write { db in
                    try db.execute(sql: """
                        INSERT INTO bundle (id, major, version, source_kind, source, path, is_default, imported_at, file_count)
                        VALUES ('15.18-debian', 15, '15.18', 'system', '/usr/lib/postgresql/15', '/b/15.18-debian', 1, '2023-11-14 22:13:20.000', 1234)
                        """)
                    try db.execute(sql: """
                        INSERT INTO tenant (name, bundle_id, superuser, os_user, uid, gid, directory, data_directory,
                            socket_directory, log_file, port, desired_state, created_at, failure_reason)
                        VALUES ('alpha', '15.18-debian', 'owner', 'pgf-alpha', 60001, 60001, '/t/alpha', '/t/alpha/data',
                            '/t/alpha/socket', '/t/alpha/log/postgresql.log', 5432, 'running', '2023-11-14 22:15:00.000', NULL)
                        """)
                }
            }
            let catalog = try Catalog(path: path)
            #expect(try catalog.appliedMigrations() == ["v1-bundles-tenants", "v2-meta", "v3-suspend", "v4-limits", "v5-network", "v6-host-traps", "v7-collation"])
            let tenants = try catalog.tenants()
            #expect(tenants.count == 1)
            let alpha = try #require(tenants.first)
            #expect(alpha.name == "alpha" && alpha.superuser == "owner" && alpha.dataDirectory == "/t/alpha/data")
            #expect(alpha.desiredState == .running && !alpha.suspended && alpha.suspendAfter == nil)
            #expect(alpha.createdAt == Date(timeIntervalSince1970: 1_700_000_100))
            // Made before the sandbox: it keeps the host's network its postgres_fdw may use.
            #expect(try alpha.spec == TenantSpec(name: TenantName(validating: "alpha"), bundle: .id("15.18-debian"), superuser: "owner", network: .host))
            #expect(try catalog.tenant(named: "alpha") == alpha)
        }
    }
}
