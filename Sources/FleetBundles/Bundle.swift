import FleetCore
import Foundation

/// One imported PostgreSQL build: `<ROOT>/bundles/<id>/` and its manifest.
public struct Bundle: Sendable, Equatable {
    public var directory: String
    public var manifest: BundleManifest

    public init(directory: String, manifest: BundleManifest) {
        self.directory = directory
        self.manifest = manifest
    }

    public var id: String { manifest.id }

    /// `<directory>/bin/<name>`. PostgreSQL finds its share and lib directories from the real path
    /// of the executable, so this works whether `bin` is a directory or a symlink.
    public func binary(_ name: String) -> String { directory + "/bin/" + name }

    public var postgres: String { binary("postgres") }
    public var initdb: String { binary("initdb") }

    /// The API's view of this bundle.
    public func info(isDefault: Bool, tenants: Int) -> BundleInfo {
        BundleInfo(
            id: manifest.id, major: manifest.major, version: manifest.version, sourceKind: manifest.source.kind.rawValue,
            source: manifest.source.origin, path: directory, isDefault: isDefault, importedAt: manifest.importedAt,
            glibcVersion: manifest.host.glibcVersion, icuVersion: manifest.host.icuVersion,
            fileCount: manifest.regularFileCount, tenants: tenants
        )
    }
}

/// Bundle ids: `<version>-<kind>`, e.g. "15.18-debian", "16.15-tarball".
///
/// An id is a directory name under ROOT/bundles and arrives in API requests, so it is checked
/// before it touches a path.
public enum BundleID {
    public static let maxLength = 64

    public static func make(version: String, kind: String) -> String { "\(version)-\(kind)" }

    /// Why `id` cannot be a bundle id, or nil when it can.
    public static func problem(with id: String) -> String? {
        let bytes = Array(id.utf8)
        guard let first = bytes.first else { return "it is empty" }
        if bytes.count > maxLength { return "it is longer than \(maxLength) characters" }
        guard isAlphanumeric(first) else { return "it must start with a letter or digit" }
        let allowed = { (byte: UInt8) in
            isAlphanumeric(byte) || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
        }
        if !bytes.allSatisfy(allowed) { return "only letters, digits, '.', '-' and '_' are allowed" }
        return nil
    }

    /// The id suffix for an installed PostgreSQL: the distribution that built it when its
    /// version line names one we know, else "system".
    public static func systemKind(for version: PostgresVersion) -> String {
        switch version.distribution?.lowercased() {
        case "debian": "debian"
        case "ubuntu": "ubuntu"
        default: "system"
        }
    }

    public static let tarballKind = "tarball"

    private static func isAlphanumeric(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
            || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
    }
}

/// What `postgres --version` says, e.g. "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)".
public struct PostgresVersion: Sendable, Equatable {
    /// "15.18", "16.15", "17beta1".
    public var version: String
    /// The first number: 15, 16, 9 (for 9.6.24).
    public var major: Int
    /// The first word of a parenthesised suffix, e.g. "Debian", "Ubuntu".
    public var distribution: String?
    public var line: String

    public init?(parsing output: String) {
        guard let line = output.split(whereSeparator: \.isNewline).first.map({ $0.trimmingCharacters(in: .whitespaces) }) else {
            return nil
        }
        let prefix = "postgres (PostgreSQL) "
        guard line.hasPrefix(prefix) else { return nil }
        let rest = line.dropFirst(prefix.count)
        let version = String(rest.prefix(while: { $0 != " " }))
        guard PostgresVersion.isPlausible(version), let major = Int(version.prefix(while: \.isASCIIDigit)) else { return nil }
        self.version = version
        self.major = major
        self.line = line
        let suffix = rest.dropFirst(version.count).trimmingCharacters(in: .whitespaces)
        if suffix.hasPrefix("(") {
            let word = suffix.dropFirst().prefix(while: { $0.isLetter || $0.isNumber })
            distribution = word.isEmpty ? nil : String(word)
        } else {
            distribution = nil
        }
    }

    /// Digits first, then digits, dots and lowercase letters ("15.18", "17beta1", "16devel"):
    /// the version becomes part of a directory name, so nothing else gets through.
    static func isPlausible(_ version: String) -> Bool {
        guard let first = version.first, first.isASCIIDigit, version.count <= 32 else { return false }
        return version.allSatisfy { $0.isASCIIDigit || $0 == "." || ($0.isASCII && $0.isLowercase) }
            && !version.hasSuffix(".") && !version.contains("..")
    }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}
