import FleetCore
import Foundation
import Testing

@testable import FleetCatalog

@Suite("Catalog file: migrations and modes")
struct CatalogFileTests {
    @Test func migrationsApplyOnAFreshFile() throws {
        try withTemporaryDirectory { dir in
            let catalog = try Catalog(path: dir + "/catalog.sqlite")
            #expect(try catalog.appliedMigrations() == ["v1-bundles-tenants", "v2-meta", "v3-suspend", "v4-limits", "v5-network", "v6-host-traps", "v7-collation"])
            #expect(try catalog.bundles().isEmpty)
            #expect(try catalog.tenants().isEmpty)
            #expect(try catalog.fetchRawStrings("PRAGMA journal_mode") == ["wal"])
        }
    }

    @Test func reopeningKeepsMigrationsAndData() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/catalog.sqlite"
            let inserted: TenantRecord
            do {
                let first = try Catalog(path: path)
                try first.insertBundle(makeBundle())
                inserted = try first.insertTenant(makeTenant("alpha"))
                try first.setMeta("instance_id", "abc123")
            }
            let second = try Catalog(path: path)
            #expect(try second.appliedMigrations() == ["v1-bundles-tenants", "v2-meta", "v3-suspend", "v4-limits", "v5-network", "v6-host-traps", "v7-collation"])
            var expectedBundle = makeBundle()
            expectedBundle.isDefault = true
            #expect(try second.bundles() == [expectedBundle])
            #expect(try second.tenants() == [inserted])
            #expect(try second.meta("instance_id") == "abc123")
            // Each migration ran once.
            #expect(try second.fetchRawStrings("SELECT identifier FROM grdb_migrations ORDER BY identifier")
                == ["v1-bundles-tenants", "v2-meta", "v3-suspend", "v4-limits", "v5-network", "v6-host-traps", "v7-collation"])
        }
    }

    @Test func newFilesAreMode0600() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/catalog.sqlite"
            let catalog = try Catalog(path: path)
            try catalog.insertBundle(makeBundle()) // makes sure the -wal file has content
            #expect(try fileMode(path) == 0o600)
            #expect(try fileMode(path + "-wal") == 0o600)
            #expect(try fileMode(path + "-shm") == 0o600)
        }
    }

    @Test func anExistingLooseFileIsTightened() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/catalog.sqlite"
            #expect(FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o644]))
            #expect(try fileMode(path) == 0o644)
            let catalog = try Catalog(path: path)
            #expect(try catalog.appliedMigrations() == ["v1-bundles-tenants", "v2-meta", "v3-suspend", "v4-limits", "v5-network", "v6-host-traps", "v7-collation"])
            #expect(try fileMode(path) == 0o600)
            #expect(try fileMode(path + "-wal") == 0o600)
        }
    }

    @Test func aCatalogFromANewerVersionIsRefused() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/catalog.sqlite"
            do {
                let catalog = try Catalog(path: path)
                try catalog.executeRawSQL("INSERT INTO grdb_migrations (identifier) VALUES ('v9-future')")
            }
            let error = #expect(throws: FleetError.self) { try Catalog(path: path) }
            guard case .failed(let message)? = error else {
                Issue.record("expected FleetError.failed, got \(String(describing: error))")
                return
            }
            #expect(message.contains("newer pgfleet"))
            #expect(message.contains("v9-future"))
        }
    }

    @Test func inMemoryCatalogIsMigrated() throws {
        let catalog = try Catalog.inMemory()
        #expect(try catalog.appliedMigrations() == ["v1-bundles-tenants", "v2-meta", "v3-suspend", "v4-limits", "v5-network", "v6-host-traps", "v7-collation"])
    }

    @Test func schemaEnforcesForeignKeysAndStates() throws {
        let catalog = try Catalog.inMemory()
        try catalog.insertBundle(makeBundle())
        let columns = "name, bundle_id, superuser, os_user, uid, gid, directory, data_directory, socket_directory, "
            + "log_file, port, desired_state, created_at"
        let values = "'x', '15.18-debian', 'postgres', 'pgf-x', 1, 1, '/t', '/t/d', '/t/s', '/t/l', 5432"
        // A bundle that does not exist: foreign keys are on.
        #expect(throws: (any Error).self) {
            try catalog.executeRawSQL(
                "INSERT INTO tenant (\(columns)) VALUES ('x', 'nope', 'postgres', 'pgf-x', 1, 1, '/t', '/t/d', "
                    + "'/t/s', '/t/l', 5432, 'running', '2024-01-01 00:00:00.000')")
        }
        #expect(throws: (any Error).self) {
            try catalog.executeRawSQL("INSERT INTO tenant (\(columns)) VALUES (\(values), 'paused', '2024-01-01 00:00:00.000')")
        }
        // Two default bundles are impossible even for raw SQL.
        #expect(throws: (any Error).self) {
            try catalog.executeRawSQL(
                "INSERT INTO bundle (id, major, version, source_kind, source, path, is_default, imported_at, file_count) "
                    + "VALUES ('16.4-x', 16, '16.4', 'system', '/s', '/p', 1, '2024-01-01 00:00:00.000', 1)")
        }
        try catalog.executeRawSQL("INSERT INTO tenant (\(columns)) VALUES (\(values), 'stopped', '2024-01-01 00:00:00.000')")
        #expect(try catalog.tenant(named: "x")?.desiredState == .stopped)
    }
}
