import Foundation
import GRDB

/// The catalog's schema, as an append-only list of migrations: released migrations are never
/// edited, a change is a new migration.
enum Schema {
    static let migrator: DatabaseMigrator = {
        var migrator = DatabaseMigrator()
        // Operators' data: a schema change must come as a migration, never by wiping the file.
        migrator.eraseDatabaseOnSchemaChange = false

        migrator.registerMigration("v1-bundles-tenants") { db in
            try db.create(table: "bundle") { t in
                t.primaryKey("id", .text)
                t.column("major", .integer).notNull()
                t.column("version", .text).notNull()
                t.column("source_kind", .text).notNull()
                t.column("source", .text).notNull()
                t.column("path", .text).notNull()
                t.column("is_default", .boolean).notNull().defaults(to: false)
                t.column("imported_at", .datetime).notNull()
                t.column("glibc_version", .text)
                t.column("icu_version", .text)
                t.column("file_count", .integer).notNull()
            }
            // At most one default bundle, whatever the code above it does.
            try db.create(
                index: "bundle_single_default", on: "bundle", columns: ["is_default"],
                options: .unique, condition: Column("is_default") == true
            )

            try db.create(table: "tenant") { t in
                // AUTOINCREMENT: an id is never handed out twice, so logs and metrics that name a
                // tenant by id never point at a later tenant.
                t.autoIncrementedPrimaryKey("id")
                t.column("name", .text).notNull().unique()
                t.column("bundle_id", .text).notNull().indexed().references("bundle", onDelete: .restrict)
                t.column("superuser", .text).notNull()
                t.column("os_user", .text).notNull()
                t.column("uid", .integer).notNull()
                t.column("gid", .integer).notNull()
                t.column("directory", .text).notNull()
                t.column("data_directory", .text).notNull()
                t.column("socket_directory", .text).notNull()
                t.column("log_file", .text).notNull()
                t.column("port", .integer).notNull()
                t.column("desired_state", .text).notNull().check { ["running", "stopped"].contains($0) }
                t.column("created_at", .datetime).notNull()
                t.column("failure_reason", .text)
            }
        }

        migrator.registerMigration("v2-meta") { db in
            try db.create(table: "meta") { t in
                t.primaryKey("key", .text)
                t.column("value", .text).notNull()
            }
        }
        migrator.registerMigration("v3-suspend") { db in
            try db.alter(table: "tenant") { t in
                // Shut down for idleness (desired state still running): woken by the next connection.
                t.add(column: "suspended", .boolean).notNull().defaults(to: false)
                // Seconds without a client before suspending; NULL: the daemon's default; 0: never.
                t.add(column: "suspend_after", .integer).check { $0 == nil || $0 >= 0 }
            }
        }
        migrator.registerMigration("v4-limits") { db in
            try db.alter(table: "tenant") { t in
                // The tenant's own limits (NULL: none of its own; the daemon's default applies).
                t.add(column: "cpu_millicores", .integer).check { $0 == nil || $0 > 0 }
                t.add(column: "memory_bytes", .integer).check { $0 == nil || $0 > 0 }
                t.add(column: "pids_max", .integer).check { $0 == nil || $0 > 0 }
                t.add(column: "io_weight", .integer).check { $0 == nil || $0 > 0 }
                t.add(column: "disk_bytes", .integer).check { $0 == nil || $0 > 0 }
            }
        }
        migrator.registerMigration("v5-network") { db in
            try db.alter(table: "tenant") { t in
                // Tenants made before the sandbox had the host's network: they keep it (their
                // postgres_fdw or dblink goes on working); new ones get "none" unless asked.
                t.add(column: "network", .text).notNull().defaults(to: "host").check { ["none", "host"].contains($0) }
            }
        }
        migrator.registerMigration("v6-host-traps") { db in
            try db.alter(table: "tenant") { t in
                // The sandbox's /dev/shm (NULL: derived from the memory limit and settings) and
                // huge pages (NULL: the daemon's default). Older tenants keep both NULL.
                t.add(column: "shm_bytes", .integer).check { $0 == nil || $0 > 0 }
                t.add(column: "huge_pages", .text).check { $0 == nil || ["off", "try", "on"].contains($0) }
            }
        }
        migrator.registerMigration("v7-major-defaults") { db in
            // A default per major (what `tenant create --pg N` picks) beside the fleet's one:
            // the fleet's default for its major, the newest bundle for every other major.
            try db.alter(table: "bundle") { t in
                t.add(column: "is_major_default", .boolean).notNull().defaults(to: false)
            }
            // Rows, not BundleRecord: a later migration's columns do not exist yet when this one runs.
            let rows = try Row.fetchAll(db, sql: "SELECT id, major, version, is_default FROM bundle")
            let bundles = rows.map { row in
                BundleRecord(
                    id: row["id"], major: row["major"], version: row["version"], sourceKind: "", source: "", path: "",
                    isDefault: row["is_default"], importedAt: Date(), glibcVersion: nil, icuVersion: nil, fileCount: 0
                )
            }
            for major in Set(bundles.map(\.major)) {
                let ofMajor = bundles.filter { $0.major == major }
                guard let chosen = ofMajor.first(where: \.isDefault) ?? ofMajor.max(by: BundleRecord.catalogOrder) else { continue }
                try db.execute(sql: "UPDATE bundle SET is_major_default = 1 WHERE id = ?", arguments: [chosen.id])
            }
        }
        migrator.registerMigration("v8-collation") { db in
            // What each tenant's text order depends on (FleetCore.CollationFingerprint as JSON),
            // recorded once it ran on a bundle on this host; the start guard compares against it.
            try db.create(table: "tenant_collation") { t in
                t.primaryKey("tenant_id", .integer).references("tenant", onDelete: .cascade)
                t.column("fingerprint", .text).notNull()
                t.column("collected_at", .datetime).notNull()
            }
        }
        return migrator
    }()
}
