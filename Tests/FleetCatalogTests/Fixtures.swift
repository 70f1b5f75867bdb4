import FleetCore
import Foundation

@testable import FleetCatalog

// Whole seconds: the catalog stores dates to the millisecond, and these must round-trip exactly.
let importedAt = Date(timeIntervalSince1970: 1_700_000_000)
let createdAt = Date(timeIntervalSince1970: 1_700_000_100)

func makeBundle(
    _ id: String = "15.18-debian", major: Int = 15, version: String = "15.18", isDefault: Bool = false
) -> BundleRecord {
    BundleRecord(
        id: id, major: major, version: version, sourceKind: "system", source: "/usr/lib/postgresql/\(major)",
        path: "/var/lib/pgfleet/bundles/\(id)", isDefault: isDefault, importedAt: importedAt,
        glibcVersion: "2.36", icuVersion: nil, fileCount: 1234
    )
}

func makeTenant(_ name: String, bundle: String = "15.18-debian", uid: Int = 60001) -> TenantRecord {
    let directory = "/var/lib/pgfleet/tenants/\(name)"
    return TenantRecord(
        name: name, bundleID: bundle, superuser: "postgres", osUser: "pgf-\(name)", uid: uid, gid: uid,
        directory: directory, dataDirectory: directory + "/data", socketDirectory: directory + "/socket",
        logFile: directory + "/log/postgresql.log", port: 5432, desiredState: .running, createdAt: createdAt,
        failureReason: nil
    )
}

/// A fresh directory for one test, removed when `body` returns.
func withTemporaryDirectory<T>(_ body: (String) throws -> T) throws -> T {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("pgfleet-catalog-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: false)
    defer { try? FileManager.default.removeItem(at: url) }
    return try body(url.path)
}

func fileMode(_ path: String) throws -> Int {
    let attributes = try FileManager.default.attributesOfItem(atPath: path)
    return (attributes[.posixPermissions] as? NSNumber)?.intValue ?? -1
}

func withTemporaryDirectoryAsync<T>(_ body: (String) async throws -> T) async throws -> T {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("pgfleet-catalog-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: false)
    defer { try? FileManager.default.removeItem(at: url) }
    return try await body(url.path)
}

/// Every migration, in order: written out here (not read from Schema) so that a renamed or
/// reordered migration fails the tests. A new migration is added at the end.
let everyMigration = ["v1-bundles-tenants", "v2-meta", "v3-suspend", "v4-limits", "v5-network", "v6-host-traps", "v7-major-defaults", "v8-collation"]
