import FleetCore
import Foundation
import GRDB

/// The daemon's embedded SQLite catalog: bundles, tenants and a few daemon facts.
///
/// One per process. Every method is one transaction, and every invariant (a single default bundle,
/// unique tenant names, no tenant without its bundle) is checked inside the write transaction
/// that could break it, with the schema's constraints as the last line of defence.
///
/// Errors that a caller can act on are `FleetError`s; anything else is GRDB's `DatabaseError`.
public final class Catalog: Sendable {
    // Internal for the raw-SQL helpers tests use to look under the records.
    let writer: any DatabaseWriter

    /// Opens (creating if needed) the catalog at `path` in WAL mode, runs the migrations, and keeps
    /// the database, -wal and -shm files at mode 0600.
    public convenience init(path: String) throws {
        try CatalogFile.prepare(path)
        try self.init(writer: DatabasePool(path: path, configuration: Self.configuration()))
        try CatalogFile.restrictCompanions(of: path)
    }

    /// An in-memory catalog for tests.
    public static func inMemory() throws -> Catalog {
        try Catalog(writer: DatabaseQueue(configuration: configuration()))
    }

    private init(writer: any DatabaseWriter) throws {
        let migrator = Schema.migrator
        // A newer pgfleet's catalog may rely on invariants this version does not know: refuse it
        // rather than write rows that break them.
        let unknown = try writer.read { db in
            try migrator.appliedIdentifiers(db).subtracting(migrator.migrations).sorted()
        }
        guard unknown.isEmpty else {
            throw FleetError.failed(
                "the catalog was written by a newer pgfleet (unknown migrations: \(unknown.joined(separator: ", "))); "
                    + "run that version or restore a backup"
            )
        }
        try migrator.migrate(writer)
        self.writer = writer
    }

    private static func configuration() -> Configuration {
        var config = Configuration()
        config.foreignKeysEnabled = true
        config.label = "pgfleet.catalog"
        // The daemon is the only writer; the wait covers another process (a backup, sqlite3) that
        // holds a lock for a moment.
        config.busyMode = .timeout(5)
        return config
    }

    /// The migration identifiers applied, in order.
    public func appliedMigrations() throws -> [String] {
        try writer.read { db in try Schema.migrator.appliedMigrations(db) }
    }

    // MARK: - Bundles

    /// All bundles, ordered by major, then version (numerically: 15.9 before 15.18), then id.
    public func bundles() throws -> [BundleRecord] {
        try writer.read { db in try BundleRecord.fetchAll(db) }.sorted(by: BundleRecord.catalogOrder)
    }

    public func bundle(id: String) throws -> BundleRecord? {
        try writer.read { db in try BundleRecord.fetchOne(db, key: id) }
    }

    public func defaultBundle() throws -> BundleRecord? {
        try writer.read { db in try BundleRecord.filter(BundleRecord.Columns.isDefault == true).fetchOne(db) }
    }

    /// The default bundle of `major`: what `tenant create --pg MAJOR` runs.
    public func majorDefaultBundle(major: Int) throws -> BundleRecord? {
        try writer.read { db in
            try BundleRecord.filter(BundleRecord.Columns.major == major && BundleRecord.Columns.isMajorDefault == true).fetchOne(db)
        }
    }

    /// Inserts a bundle. It becomes the fleet's default when asked to (clearing the flag on the
    /// others) or when there is no default yet, as for the first bundle ever imported; likewise
    /// its major's default, which the fleet's default always is.
    /// Throws `FleetError.bundleExists` on a duplicate id.
    public func insertBundle(_ bundle: BundleRecord) throws {
        try writer.write { db in
            if try BundleRecord.exists(db, key: bundle.id) { throw FleetError.bundleExists(bundle.id) }
            var record = bundle
            if try BundleRecord.filter(BundleRecord.Columns.isDefault == true).isEmpty(db) {
                record.isDefault = true
            }
            if record.isDefault { record.isMajorDefault = true }
            if try BundleRecord.filter(BundleRecord.Columns.major == record.major && BundleRecord.Columns.isMajorDefault == true).isEmpty(db) {
                record.isMajorDefault = true
            }
            if record.isDefault { try Self.clearDefault(db) }
            if record.isMajorDefault { try Self.clearMajorDefault(db, major: record.major) }
            do {
                try record.insert(db)
            } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_PRIMARYKEY {
                throw FleetError.bundleExists(bundle.id)
            }
        }
    }

    /// Corrects the ICU version recorded for a bundle (nil: built without ICU).
    public func setBundleICUVersion(id: String, _ version: String?) throws {
        try writer.write { db in
            _ = try BundleRecord.filter(key: id).updateAll(db, BundleRecord.Columns.icuVersion.set(to: version))
        }
    }

    /// Makes `id` the one default bundle of the fleet, and of its major. Throws `FleetError.bundleNotFound`.
    public func setDefaultBundle(id: String) throws {
        try setDefault(id: id, fleet: true)
    }

    /// Makes `id` its major's default; with `fleet`, the fleet's default too. The fleet's default
    /// follows when it was of the same major: it is always its major's default.
    /// Throws `FleetError.bundleNotFound`.
    public func setDefault(id: String, fleet: Bool) throws {
        try writer.write { db in
            guard let bundle = try BundleRecord.fetchOne(db, key: id) else { throw FleetError.bundleNotFound(id) }
            let fleetDefault = try BundleRecord.filter(BundleRecord.Columns.isDefault == true).fetchOne(db)
            try Self.clearMajorDefault(db, major: bundle.major)
            try BundleRecord.filter(key: id).updateAll(db, BundleRecord.Columns.isMajorDefault.set(to: true))
            if fleet || fleetDefault == nil || fleetDefault?.major == bundle.major {
                try Self.clearDefault(db)
                try BundleRecord.filter(key: id).updateAll(db, BundleRecord.Columns.isDefault.set(to: true))
            }
        }
    }

    /// Deletes a bundle no tenant uses. When it was a default, the newest remaining bundle (of
    /// its major for the major's default) becomes the default, so there is a default whenever
    /// there is a bundle, and one per major that has bundles.
    /// Throws `FleetError.conflict` while tenants use it, `FleetError.bundleNotFound` if absent.
    public func deleteBundle(id: String) throws {
        try writer.write { db in
            guard let bundle = try BundleRecord.fetchOne(db, key: id) else { throw FleetError.bundleNotFound(id) }
            let users = try TenantRecord
                .filter(TenantRecord.Columns.bundleID == id)
                .order(TenantRecord.Columns.name)
                .select(TenantRecord.Columns.name, as: String.self)
                .fetchAll(db)
            if !users.isEmpty { throw FleetError.conflict(Self.inUseMessage(bundle: id, tenants: users)) }
            do {
                try bundle.delete(db)
            } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_FOREIGNKEY {
                throw FleetError.conflict("bundle \(id) is used by tenants")
            }
            let remaining = try BundleRecord.fetchAll(db)
            if bundle.isMajorDefault, let successor = remaining.filter({ $0.major == bundle.major }).max(by: BundleRecord.catalogOrder) {
                try BundleRecord.filter(key: successor.id).updateAll(db, BundleRecord.Columns.isMajorDefault.set(to: true))
            }
            if bundle.isDefault {
                // The successor of the same major if there is one (it just became that major's
                // default), else the newest of all, which must then become its major's default too.
                let successor = remaining.filter { $0.major == bundle.major }.max(by: BundleRecord.catalogOrder)
                    ?? remaining.max(by: BundleRecord.catalogOrder)
                if let successor {
                    try Self.clearMajorDefault(db, major: successor.major)
                    try BundleRecord.filter(key: successor.id).updateAll(
                        db, BundleRecord.Columns.isDefault.set(to: true), BundleRecord.Columns.isMajorDefault.set(to: true)
                    )
                }
            }
        }
    }

    public func tenantCount(bundleID: String) throws -> Int {
        try writer.read { db in try TenantRecord.filter(TenantRecord.Columns.bundleID == bundleID).fetchCount(db) }
    }

    private static func clearMajorDefault(_ db: Database, major: Int) throws {
        try BundleRecord
            .filter(BundleRecord.Columns.major == major && BundleRecord.Columns.isMajorDefault == true)
            .updateAll(db, BundleRecord.Columns.isMajorDefault.set(to: false))
    }

    private static func clearDefault(_ db: Database) throws {
        try BundleRecord
            .filter(BundleRecord.Columns.isDefault == true)
            .updateAll(db, BundleRecord.Columns.isDefault.set(to: false))
    }

    /// "bundle X is used by N tenant(s): a, b", naming at most ten of them.
    static func inUseMessage(bundle id: String, tenants: [String]) -> String {
        let shown = tenants.prefix(10).joined(separator: ", ")
        let more = tenants.count > 10 ? ", …" : ""
        return "bundle \(id) is used by \(tenants.count) tenant(s): \(shown)\(more)"
    }

    // MARK: - Tenants

    /// All tenants, ordered by name.
    ///
    /// Read column by column rather than through `Decodable`: with thousands of rows, GRDB's
    /// decoder (a keyed container per row) took most of the read.
    public func tenants() throws -> [TenantRecord] {
        try writer.read { db in
            let rows = try Row.fetchCursor(db, sql: "SELECT \(TenantRecord.selection) FROM tenant ORDER BY name")
            var tenants: [TenantRecord] = []
            while let row = try rows.next() {
                tenants.append(try TenantRecord(columnsOf: row))
            }
            return tenants
        }
    }

    /// The tenants with these names (those that exist), ordered by name; found through the
    /// unique index on `name`, so a few rows cost no scan of thousands.
    public func tenants(named names: some Collection<String>) throws -> [TenantRecord] {
        guard !names.isEmpty else { return [] }
        return try writer.read { db in
            try TenantRecord.filter(names.contains(TenantRecord.Columns.name)).order(TenantRecord.Columns.name).fetchAll(db)
        }
    }

    public func tenant(named name: String) throws -> TenantRecord? {
        try writer.read { db in try TenantRecord.filter(TenantRecord.Columns.name == name).fetchOne(db) }
    }

    /// Inserts a tenant and returns it as stored, with its new id (any id passed in is ignored, so
    /// ids stay never-reused). Throws `FleetError.tenantExists` on a duplicate name,
    /// `FleetError.bundleNotFound` when its bundle is missing.
    public func insertTenant(_ tenant: TenantRecord) throws -> TenantRecord {
        try writer.write { db in
            var record = tenant
            record.id = nil
            if try !TenantRecord.filter(TenantRecord.Columns.name == record.name).isEmpty(db) {
                throw FleetError.tenantExists(record.name)
            }
            guard try BundleRecord.exists(db, key: record.bundleID) else {
                throw FleetError.bundleNotFound(record.bundleID)
            }
            try Self.mapConstraintErrors(record) { try record.insert(db) }
            let id = db.lastInsertedRowID
            guard let stored = try TenantRecord.fetchOne(db, key: id) else {
                throw FleetError.failed("catalog: tenant \(record.name) vanished right after its insert")
            }
            return stored
        }
    }

    /// Replaces the tenant row with the same id. Throws `FleetError.tenantNotFound` if it is gone,
    /// `.tenantExists` if it would take another tenant's name, `.bundleNotFound` for a missing bundle.
    public func updateTenant(_ tenant: TenantRecord) throws {
        guard let id = tenant.id else { throw FleetError.tenantNotFound(tenant.name) }
        try writer.write { db in
            guard try TenantRecord.exists(db, key: id) else { throw FleetError.tenantNotFound(tenant.name) }
            let sameName = TenantRecord
                .filter(TenantRecord.Columns.name == tenant.name && TenantRecord.Columns.id != id)
            if try !sameName.isEmpty(db) { throw FleetError.tenantExists(tenant.name) }
            guard try BundleRecord.exists(db, key: tenant.bundleID) else {
                throw FleetError.bundleNotFound(tenant.bundleID)
            }
            try Self.mapConstraintErrors(tenant) { try tenant.update(db) }
        }
    }

    public func setDesiredState(_ state: DesiredState, forTenant name: String) throws {
        try updateTenant(named: name, TenantRecord.Columns.desiredState.set(to: state.rawValue))
    }

    public func setFailureReason(_ reason: String?, forTenant name: String) throws {
        try updateTenant(named: name, TenantRecord.Columns.failureReason.set(to: reason))
    }

    public func setSuspended(_ suspended: Bool, forTenant name: String) throws {
        try updateTenant(named: name, TenantRecord.Columns.suspended.set(to: suspended))
    }

    /// Seconds without clients before suspending; nil: the daemon's default; 0: never.
    public func setSuspendAfter(_ seconds: Int?, forTenant name: String) throws {
        try updateTenant(named: name, TenantRecord.Columns.suspendAfter.set(to: seconds))
    }

    public func setNetwork(_ network: SandboxNetwork, forTenant name: String) throws {
        try updateTenant(named: name, TenantRecord.Columns.network.set(to: network.rawValue))
    }

    /// The tenant's own limits (each nil: the daemon's default applies).
    public func setLimits(_ limits: TenantLimits, forTenant name: String) throws {
        typealias Key = TenantRecord.CodingKeys
        try writer.write { db in
            let updated = try TenantRecord.filter(TenantRecord.Columns.name == name).updateAll(db, [
                Column(Key.cpuMillicores).set(to: limits.cpuMillicores),
                Column(Key.memoryBytes).set(to: limits.memoryBytes.map { Int64(clamping: $0) }),
                Column(Key.pidsMax).set(to: limits.pids),
                Column(Key.ioWeight).set(to: limits.ioWeight),
                Column(Key.diskBytes).set(to: limits.diskBytes.map { Int64(clamping: $0) }),
                Column(Key.shmBytes).set(to: limits.shmBytes.map { Int64(clamping: $0) }),
                Column(Key.hugePages).set(to: limits.hugePages?.rawValue),
            ])
            if updated == 0 { throw FleetError.tenantNotFound(name) }
        }
    }

    /// Deletes a tenant. Throws `FleetError.tenantNotFound` if absent.
    public func deleteTenant(named name: String) throws {
        try writer.write { db in
            let deleted = try TenantRecord.filter(TenantRecord.Columns.name == name).deleteAll(db)
            if deleted == 0 { throw FleetError.tenantNotFound(name) }
        }
    }

    private func updateTenant(named name: String, _ assignment: ColumnAssignment) throws {
        try writer.write { db in
            let updated = try TenantRecord.filter(TenantRecord.Columns.name == name).updateAll(db, assignment)
            if updated == 0 { throw FleetError.tenantNotFound(name) }
        }
    }

    /// The constraints back the checks made just before: should a check and a constraint ever
    /// disagree, the caller still gets the error it can act on.
    private static func mapConstraintErrors(_ tenant: TenantRecord, _ body: () throws -> Void) throws {
        do {
            try body()
        } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE {
            throw FleetError.tenantExists(tenant.name)
        } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_FOREIGNKEY {
            throw FleetError.bundleNotFound(tenant.bundleID)
        }
    }

    // MARK: - Daemon facts

    public func meta(_ key: String) throws -> String? {
        try writer.read { db in try MetaRecord.fetchOne(db, key: key)?.value }
    }

    /// Sets `key` to `value`; nil removes it.
    public func setMeta(_ key: String, _ value: String?) throws {
        try writer.write { db in
            if let value {
                try MetaRecord(key: key, value: value).insert(db, onConflict: .replace)
            } else {
                try MetaRecord.deleteOne(db, key: key)
            }
        }
    }
}

extension BundleRecord {
    /// Major, then version compared number by number ("15.9" < "15.18"), then id.
    static func catalogOrder(_ a: BundleRecord, _ b: BundleRecord) -> Bool {
        if a.major != b.major { return a.major < b.major }
        let (x, y) = (versionNumbers(a.version), versionNumbers(b.version))
        if x != y { return x.lexicographicallyPrecedes(y) }
        if a.version != b.version { return a.version < b.version }
        return a.id < b.id
    }

    private static func versionNumbers(_ version: String) -> [Int] {
        version.split(whereSeparator: { !($0.isASCII && $0.isNumber) }).compactMap { Int($0) }
    }
}
