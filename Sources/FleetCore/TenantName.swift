/// A tenant's name: `^[a-z][a-z0-9-]{0,62}$`.
///
/// It becomes part of directory names, OS user names, SNI host names and log lines, so it is
/// validated once, here, and carried as this type everywhere after.
public struct TenantName: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: String

    public static let maxLength = 63

    public init(validating raw: String) throws(FleetError) {
        if let problem = TenantName.problem(with: raw) {
            throw .invalidTenantName(name: raw, reason: problem)
        }
        rawValue = raw
    }

    /// Why `raw` is not a valid tenant name, or nil when it is.
    public static func problem(with raw: String) -> String? {
        // The view, not an Array of it: a tenant list validates thousands of names.
        let bytes = raw.utf8
        guard let first = bytes.first else { return "it is empty" }
        if bytes.count > maxLength { return "it is \(bytes.count) characters long; the limit is \(maxLength)" }
        guard first >= UInt8(ascii: "a") && first <= UInt8(ascii: "z") else {
            return "it must start with a lowercase letter (a-z)"
        }
        for byte in bytes {
            let ok = (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                || byte == UInt8(ascii: "-")
            if !ok {
                let shown = byte >= 0x21 && byte < 0x7f ? "'\(Character(Unicode.Scalar(byte)))'" : String(format: byte)
                return "it contains \(shown); only lowercase letters, digits and '-' are allowed"
            }
        }
        return nil
    }

    public var description: String { rawValue }

    public static func < (lhs: TenantName, rhs: TenantName) -> Bool { lhs.rawValue < rhs.rawValue }

    public init(from decoder: any Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        do { self = try TenantName(validating: raw) } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.description))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

private func String(format byte: UInt8) -> String {
    let hex = Swift.String(byte, radix: 16, uppercase: true)
    return "byte 0x" + (hex.count == 1 ? "0" + hex : hex)
}

/// A PostgreSQL role name as pgfleet accepts it for a tenant's superuser: a plain identifier that
/// needs no quoting anywhere (initdb -U, pg_hba.conf, connection strings).
public enum RoleName {
    public static func problem(with raw: String) -> String? {
        // The view, not an Array of it: a tenant list validates thousands of names.
        let bytes = raw.utf8
        guard let first = bytes.first else { return "it is empty" }
        if bytes.count > 63 { return "it is longer than 63 bytes" }
        guard (first >= UInt8(ascii: "a") && first <= UInt8(ascii: "z")) || first == UInt8(ascii: "_") else {
            return "it must start with a lowercase letter or '_'"
        }
        for byte in bytes {
            let ok = (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                || byte == UInt8(ascii: "_")
            if !ok { return "only lowercase letters, digits and '_' are allowed" }
        }
        if raw.hasPrefix("pg_") { return "names starting with 'pg_' are reserved by PostgreSQL" }
        if raw == "pgfleet" { return "'pgfleet' is reserved for the daemon's health checks" }
        return nil
    }
}
