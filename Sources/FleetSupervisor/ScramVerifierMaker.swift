import Crypto
import _CryptoExtras
import Foundation

/// A SCRAM-SHA-256 password verifier in PostgreSQL's `pg_authid.rolpassword` format, computed in
/// the daemon: `ALTER ROLE … PASSWORD '<verifier>'` then stores it as it is, so the plaintext never
/// reaches the server, its logs or a command line.
///
///     SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>      (base64 each)
public enum ScramVerifierMaker {
    /// PostgreSQL's default (`scram_iterations`, 16+).
    public static let iterations = 4096

    public static func make(password: String, salt: [UInt8] = randomSalt(), iterations: Int = iterations) throws -> String {
        let prepared = SASLprep.prepare(password)
        let salted = try KDF.Insecure.PBKDF2.deriveKey(
            from: prepared, salt: salt, using: .sha256, outputByteCount: 32, unsafeUncheckedRounds: iterations
        )
        let clientKey = Data(HMAC<SHA256>.authenticationCode(for: Data("Client Key".utf8), using: salted))
        let storedKey = Data(SHA256.hash(data: clientKey))
        let serverKey = Data(HMAC<SHA256>.authenticationCode(for: Data("Server Key".utf8), using: salted))
        return "SCRAM-SHA-256$\(iterations):\(Data(salt).base64EncodedString())$"
            + "\(storedKey.base64EncodedString()):\(serverKey.base64EncodedString())"
    }

    /// 16 random bytes, as PostgreSQL uses.
    public static func randomSalt() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }
}

/// SASLprep (RFC 4013) as PostgreSQL applies it to a password before hashing it
/// (`pg_saslprep` in src/common/saslprep.c; libpq does the same, so a client's proof matches).
/// When the result would contain a prohibited character, PostgreSQL uses the password's bytes
/// unchanged, and so does this.
///
/// Swift has no bidirectional-class property: RandALCat is RFC 3454's table D.1 itself, and LCat
/// (table D.2, letters of left-to-right scripts) is approximated as "alphabetic and not
/// RandALCat". The two differ only for a password that mixes right-to-left letters with rare
/// left-to-right symbols, which could then not log in; every other password hashes exactly as
/// PostgreSQL's own `ALTER ROLE … PASSWORD` would.
enum SASLprep {
    static func prepare(_ password: String) -> [UInt8] {
        let raw = Array(password.utf8)
        // Pure ASCII passes unchanged (pg_saslprep's first check), control characters included.
        if raw.allSatisfy({ $0 < 0x80 }) { return raw }

        var mapped = String.UnicodeScalarView()
        for scalar in password.unicodeScalars {
            if inTable(scalar.value, nonASCIISpace) {
                mapped.append(" ")
            } else if !inTable(scalar.value, mappedToNothing) {
                mapped.append(scalar)
            }
        }
        let normalized = String(mapped).precomposedStringWithCompatibilityMapping.unicodeScalars
        for scalar in normalized where isProhibited(scalar) { return raw }

        let scalars = Array(normalized)
        if scalars.contains(where: isRandALCat) {
            guard let first = scalars.first, let last = scalars.last, isRandALCat(first), isRandALCat(last),
                  !scalars.contains(where: isLCat) else { return raw }
        }
        return Array(String(String.UnicodeScalarView(scalars)).utf8)
    }

    static func isProhibited(_ scalar: Unicode.Scalar) -> Bool {
        let value = scalar.value
        if inTable(value, nonASCIISpace) || inTable(value, prohibited) { return true }
        // Non-characters: the last two code points of every plane (C.4, with FDD0-FDEF in the table).
        if value & 0xFFFE == 0xFFFE { return true }
        // Unassigned in Unicode 3.2 (table A.1), which is what RFC 3454 and PostgreSQL use.
        guard let age = scalar.properties.age else { return true }
        return age.major > 3 || (age.major == 3 && age.minor > 2)
    }

    static func isRandALCat(_ scalar: Unicode.Scalar) -> Bool { inTable(scalar.value, randALCat) }

    static func isLCat(_ scalar: Unicode.Scalar) -> Bool {
        !isRandALCat(scalar) && (scalar.properties.isAlphabetic || scalar.properties.generalCategory == .spacingMark)
    }

    static func inTable(_ value: UInt32, _ table: [ClosedRange<UInt32>]) -> Bool {
        table.contains { $0.contains(value) }
    }

    /// RFC 3454 C.1.2, mapped to SPACE.
    static let nonASCIISpace: [ClosedRange<UInt32>] = [
        0x00A0...0x00A0, 0x1680...0x1680, 0x2000...0x200B, 0x202F...0x202F, 0x205F...0x205F, 0x3000...0x3000,
    ]

    /// RFC 3454 B.1, mapped to nothing.
    static let mappedToNothing: [ClosedRange<UInt32>] = [
        0x00AD...0x00AD, 0x034F...0x034F, 0x1806...0x1806, 0x180B...0x180D, 0x200B...0x200D, 0x2060...0x2060,
        0xFE00...0xFE0F, 0xFEFF...0xFEFF,
    ]

    /// RFC 3454 C.2.1, C.2.2, C.3, C.4 (but the plane ends), C.5, C.6, C.7, C.8, C.9.
    static let prohibited: [ClosedRange<UInt32>] = [
        0x0000...0x001F, 0x007F...0x009F, 0x0340...0x0341, 0x06DD...0x06DD, 0x070F...0x070F, 0x180E...0x180E,
        0x200C...0x200F, 0x2028...0x202E, 0x2060...0x2063, 0x206A...0x206F, 0x2FF0...0x2FFB, 0xD800...0xDFFF,
        0xE000...0xF8FF, 0xFDD0...0xFDEF, 0xFEFF...0xFEFF, 0xFFF9...0xFFFD, 0x1D173...0x1D17A, 0xE0001...0xE0001,
        0xE0020...0xE007F, 0xF0000...0xFFFFD, 0x100000...0x10FFFD,
    ]

    /// RFC 3454 D.1: characters of bidirectional class R or AL.
    static let randALCat: [ClosedRange<UInt32>] = [
        0x05BE...0x05BE, 0x05C0...0x05C0, 0x05C3...0x05C3, 0x05D0...0x05EA, 0x05F0...0x05F4, 0x061B...0x061B,
        0x061F...0x061F, 0x0621...0x063A, 0x0640...0x064A, 0x066D...0x066F, 0x0671...0x06D5, 0x06DD...0x06DD,
        0x06E5...0x06E6, 0x06FA...0x06FE, 0x0700...0x070D, 0x0710...0x0710, 0x0712...0x072C, 0x0780...0x07A5,
        0x07B1...0x07B1, 0x200F...0x200F, 0xFB1D...0xFB1D, 0xFB1F...0xFB28, 0xFB2A...0xFB36, 0xFB38...0xFB3C,
        0xFB3E...0xFB3E, 0xFB40...0xFB41, 0xFB43...0xFB44, 0xFB46...0xFBB1, 0xFBD3...0xFD3D, 0xFD50...0xFD8F,
        0xFD92...0xFDC7, 0xFDF0...0xFDFC, 0xFE70...0xFE74, 0xFE76...0xFEFC,
    ]
}
