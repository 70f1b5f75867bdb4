import Crypto
import Foundation

// SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, for pooling: the proxy checks a
// client's proof against the role's stored verifier and recovers the ClientKey from it (what
// PgBouncer does), then proves the same ClientKey to the tenant's server when it has to open a
// new server connection. The password itself never reaches the proxy. Pure: no I/O.

/// Why a SCRAM exchange ended. Descriptions never quote peer bytes.
enum ScramError: Error, Equatable, CustomStringConvertible {
    case malformed(String)
    /// The client's proof does not match the verifier: a wrong password.
    case wrongProof
    case unsupported(String)
    /// The server's signature does not match: it does not know the verifier we used.
    case serverSignatureMismatch
    /// The server answered with a different salt or iteration count than the verifier we used
    /// (the password changed in between).
    case verifierChanged
    case serverError(String)

    var description: String {
        switch self {
        case .malformed(let what): "malformed SCRAM message: \(what)"
        case .wrongProof: "wrong SCRAM proof"
        case .unsupported(let what): "unsupported SCRAM feature: \(what)"
        case .serverSignatureMismatch: "the server's SCRAM signature does not match"
        case .verifierChanged: "the role's password changed during the login"
        case .serverError(let code): "the server refused the SCRAM exchange (\(code))"
        }
    }
}

/// A stored SCRAM-SHA-256 verifier: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
struct ScramVerifier: Equatable, Sendable {
    var iterations: Int
    var salt: [UInt8]
    var storedKey: [UInt8]
    var serverKey: [UInt8]

    init(iterations: Int, salt: [UInt8], storedKey: [UInt8], serverKey: [UInt8]) {
        self.iterations = iterations
        self.salt = salt
        self.storedKey = storedKey
        self.serverKey = serverKey
    }

    /// Nil for anything else: an MD5 hash, a plaintext password, a malformed verifier.
    init?(_ text: String) {
        // On the bytes: this runs on every login, for the verifier just looked up.
        let prefix = "SCRAM-SHA-256$".utf8
        let bytes = text.utf8
        guard bytes.starts(with: prefix) else { return nil }
        let parts = bytes.dropFirst(prefix.count).split(separator: UInt8(ascii: "$"), omittingEmptySubsequences: false)
        guard parts.count == 2 else { return nil }
        let head = parts[0].split(separator: UInt8(ascii: ":"), omittingEmptySubsequences: false)
        let keys = parts[1].split(separator: UInt8(ascii: ":"), omittingEmptySubsequences: false)
        guard head.count == 2, keys.count == 2, let iterations = Int(Substring(head[0])), iterations > 0,
            let salt = Base64.decode(head[1]), !salt.isEmpty,
            let storedKey = Base64.decode(keys[0]), storedKey.count == Scram.keyLength,
            let serverKey = Base64.decode(keys[1]), serverKey.count == Scram.keyLength
        else { return nil }
        self.init(iterations: iterations, salt: salt, storedKey: storedKey, serverKey: serverKey)
    }
}

enum Scram {
    static let mechanism = "SCRAM-SHA-256"
    static let keyLength = 32
    /// Raw nonce bytes, as PostgreSQL (18, base64 to 24 characters).
    static let nonceLength = 18

    static func hmac(key: [UInt8], _ message: String) -> [UInt8] {
        hmac(key: key, Array(message.utf8))
    }

    /// HMAC-SHA-256 (RFC 2104) on SHA256's raw-buffer interface. swift-crypto's `HMAC` gives the
    /// same bytes (see the tests), but its key set-up runs through unspecialised generic code and
    /// took half of a login's SCRAM time in perf.
    static func hmac(key: [UInt8], _ message: [UInt8]) -> [UInt8] {
        let blockSize = 64
        var block = key.count > blockSize ? sha256(key) : key
        block.append(contentsOf: repeatElement(0, count: blockSize - block.count))
        for index in block.indices { block[index] ^= 0x36 }
        var inner = SHA256()
        block.withUnsafeBytes { inner.update(bufferPointer: $0) }
        message.withUnsafeBytes { inner.update(bufferPointer: $0) }
        let innerDigest = inner.finalize()
        // 0x36 ^ 0x5C: the outer pad from the inner one.
        for index in block.indices { block[index] ^= 0x36 ^ 0x5C }
        var outer = SHA256()
        block.withUnsafeBytes { outer.update(bufferPointer: $0) }
        innerDigest.withUnsafeBytes { outer.update(bufferPointer: $0) }
        return outer.finalize().withUnsafeBytes { Array($0) }
    }

    static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        var hash = SHA256()
        bytes.withUnsafeBytes { hash.update(bufferPointer: $0) }
        return hash.finalize().withUnsafeBytes { Array($0) }
    }

    static func xor(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] {
        zip(a, b).map { $0 ^ $1 }
    }

    /// Compares without an early exit, so timing does not tell how many leading bytes matched.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        return zip(a, b).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }

    static func encode(_ bytes: [UInt8]) -> String {
        Base64.encode(bytes)
    }

    static func decode(_ text: some StringProtocol) -> [UInt8]? {
        Base64.decode(text.utf8)
    }

    static func nonce() -> String {
        // Eight bytes per call of the generator (one getrandom each), not one per byte.
        var generator = SystemRandomNumberGenerator()
        var bytes: [UInt8] = []
        bytes.reserveCapacity(nonceLength + 7)
        while bytes.count < nonceLength {
            withUnsafeBytes(of: generator.next() as UInt64) { bytes.append(contentsOf: $0) }
        }
        return encode(Array(bytes.prefix(nonceLength)))
    }

    /// Splits `a=1,b=2` into ordered (name, value) pairs; nil unless every part is `x=…`.
    static func attributes(_ text: Substring) -> [(Character, Substring)]? {
        // Split by bytes: every separator and attribute name is ASCII, and Character-wise
        // splitting costs a grapheme-break check per character on every login.
        var result: [(Character, Substring)] = []
        result.reserveCapacity(4)
        for part in text.utf8.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false) {
            guard part.count >= 2, let name = part.first, isASCIILetter(name),
                part[part.index(after: part.startIndex)] == UInt8(ascii: "=")
            else { return nil }
            result.append((Character(Unicode.Scalar(name)), Substring(part.dropFirst(2))))
        }
        return result
    }

    private static func isASCIILetter(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
    }

    static func attributes(_ text: String) -> [(Character, Substring)]? {
        attributes(text[...])
    }

    /// Printable ASCII except ',' (RFC 5802's "printable"), what a nonce may hold.
    static func isValidNonce(_ nonce: some StringProtocol) -> Bool {
        !nonce.isEmpty && nonce.utf8.allSatisfy { $0 >= 0x21 && $0 <= 0x7E && $0 != UInt8(ascii: ",") }
    }
}

/// The server's side of one exchange, checked against a stored verifier.
struct ScramServerExchange {
    let verifier: ScramVerifier
    private let serverNonce: String
    private var gs2Header = ""
    private var clientFirstBare = ""
    private var serverFirst = ""
    private var nonce = ""

    init(verifier: ScramVerifier, serverNonce: String = Scram.nonce()) {
        self.verifier = verifier
        self.serverNonce = serverNonce
    }

    /// client-first-message → server-first-message.
    mutating func receiveClientFirst(_ data: [UInt8]) throws(ScramError) -> [UInt8] {
        // (Byte searches here, not String.contains: that goes through Foundation's NSString.)
        guard !data.contains(0), let text = String(validating: data, as: UTF8.self) else { throw .malformed("not UTF-8") }
        // gs2-header: a channel-binding flag and an optional authzid, each followed by a comma.
        let pieces = text.split(separator: ",", maxSplits: 2, omittingEmptySubsequences: false)
        guard pieces.count == 3 else { throw .malformed("no GS2 header") }
        switch pieces[0] {
        case "n", "y": break  // "y": the client could bind but was not offered -PLUS: fine, it was not.
        case let flag where flag.hasPrefix("p="): throw .unsupported("channel binding (SCRAM-SHA-256-PLUS was not offered)")
        default: throw .malformed("unknown channel-binding flag")
        }
        guard pieces[1].isEmpty else { throw .unsupported("authorization identity") }
        gs2Header = "\(pieces[0]),,"
        clientFirstBare = String(pieces[2])
        guard let attributes = Scram.attributes(pieces[2]), attributes.count >= 2,
            attributes[0].0 == "n", attributes[1].0 == "r"
        else {
            if clientFirstBare.hasPrefix("m=") { throw .unsupported("mandatory extension") }
            throw .malformed("client-first-message-bare")
        }
        let clientNonce = attributes[1].1
        guard Scram.isValidNonce(clientNonce) else { throw .malformed("client nonce") }
        nonce = clientNonce + serverNonce
        serverFirst = "r=\(nonce),s=\(Scram.encode(verifier.salt)),i=\(verifier.iterations)"
        return Array(serverFirst.utf8)
    }

    /// client-final-message → server-final-message and the ClientKey the proof revealed.
    mutating func receiveClientFinal(_ data: [UInt8]) throws(ScramError) -> (serverFinal: [UInt8], clientKey: [UInt8]) {
        guard !serverFirst.isEmpty else { throw .malformed("client-final-message before client-first-message") }
        guard let text = String(validating: data, as: UTF8.self) else { throw .malformed("not UTF-8") }
        // The proof is the last attribute: the last ",p=".
        let bytes = text.utf8
        var at = bytes.endIndex
        var proofMarker: String.Index? = nil
        while at > bytes.startIndex, proofMarker == nil {
            at = bytes.index(before: at)
            if bytes[at] == UInt8(ascii: ","), bytes[at...].starts(with: ",p=".utf8) { proofMarker = at }
        }
        guard let proofMarker else { throw .malformed("no proof") }
        let proofStart = proofMarker..<bytes.index(proofMarker, offsetBy: 3)
        let withoutProof = text[..<proofStart.lowerBound]
        guard let attributes = Scram.attributes(withoutProof), attributes.count >= 2,
            attributes[0].0 == "c", attributes[1].0 == "r"
        else { throw .malformed("client-final-message") }
        guard let binding = Scram.decode(attributes[0].1), binding.elementsEqual(gs2Header.utf8) else { throw .malformed("channel binding data") }
        guard attributes[1].1 == nonce else { throw .malformed("nonce") }
        guard let proof = Scram.decode(text[proofStart.upperBound...]), proof.count == Scram.keyLength else {
            throw .malformed("proof")
        }
        var authMessage: [UInt8] = []
        authMessage.reserveCapacity(clientFirstBare.utf8.count + serverFirst.utf8.count + withoutProof.utf8.count + 2)
        authMessage.append(contentsOf: clientFirstBare.utf8)
        authMessage.append(UInt8(ascii: ","))
        authMessage.append(contentsOf: serverFirst.utf8)
        authMessage.append(UInt8(ascii: ","))
        authMessage.append(contentsOf: withoutProof.utf8)
        let clientKey = Scram.xor(proof, Scram.hmac(key: verifier.storedKey, authMessage))
        guard Scram.constantTimeEqual(Scram.sha256(clientKey), verifier.storedKey) else { throw .wrongProof }
        let serverSignature = Scram.hmac(key: verifier.serverKey, authMessage)
        return (Array("v=\(Scram.encode(serverSignature))".utf8), clientKey)
    }
}

/// The client's side of one exchange, proving a ClientKey recovered by `ScramServerExchange`.
struct ScramClientExchange {
    let verifier: ScramVerifier
    let clientKey: [UInt8]
    private let clientNonce: String
    private var authMessage = ""

    init(verifier: ScramVerifier, clientKey: [UInt8], clientNonce: String = Scram.nonce()) {
        self.verifier = verifier
        self.clientKey = clientKey
        self.clientNonce = clientNonce
    }

    private var clientFirstBare: String { "n=,r=\(clientNonce)" }

    /// client-first-message. PostgreSQL takes the user from the startup packet; `n=` stays empty, as libpq sends it.
    var clientFirst: [UInt8] { Array("n,,\(clientFirstBare)".utf8) }

    /// server-first-message → client-final-message.
    mutating func receiveServerFirst(_ data: [UInt8]) throws(ScramError) -> [UInt8] {
        guard let text = String(validating: data, as: UTF8.self), let attributes = Scram.attributes(text), attributes.count >= 3,
            attributes[0].0 == "r", attributes[1].0 == "s", attributes[2].0 == "i"
        else { throw .malformed("server-first-message") }
        let nonce = attributes[0].1
        guard nonce.hasPrefix(clientNonce), nonce.count > clientNonce.count, Scram.isValidNonce(nonce) else {
            throw .malformed("server nonce")
        }
        guard Scram.decode(attributes[1].1) == verifier.salt, Int(attributes[2].1) == verifier.iterations else {
            throw .verifierChanged
        }
        let withoutProof = "c=biws,r=\(nonce)"
        authMessage = "\(clientFirstBare),\(text),\(withoutProof)"
        let proof = Scram.xor(clientKey, Scram.hmac(key: verifier.storedKey, authMessage))
        return Array("\(withoutProof),p=\(Scram.encode(proof))".utf8)
    }

    /// server-final-message: throws unless the server proved it holds the same verifier.
    func receiveServerFinal(_ data: [UInt8]) throws(ScramError) {
        guard !authMessage.isEmpty, let text = String(validating: data, as: UTF8.self) else { throw .malformed("server-final-message") }
        if text.hasPrefix("e=") { throw .serverError(String(text.dropFirst(2).prefix(64))) }
        guard text.hasPrefix("v="), let signature = Scram.decode(text.dropFirst(2)) else { throw .malformed("server-final-message") }
        guard Scram.constantTimeEqual(signature, Scram.hmac(key: verifier.serverKey, authMessage)) else {
            throw .serverSignatureMismatch
        }
    }
}

/// Standard base64 with padding (RFC 4648 §4), as SCRAM and PostgreSQL's verifiers use it;
/// strict: no whitespace, no missing padding. Foundation's codec went through `Data` and
/// `NSString` on every login.
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Byte → its 6-bit value; 0xFF: not in the alphabet.
    private static let values: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, byte) in alphabet.enumerated() { table[Int(byte)] = UInt8(index) }
        return table
    }()

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index + 3 <= bytes.count {
            let chunk = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
            out.append(alphabet[Int(chunk >> 18 & 63)])
            out.append(alphabet[Int(chunk >> 12 & 63)])
            out.append(alphabet[Int(chunk >> 6 & 63)])
            out.append(alphabet[Int(chunk & 63)])
            index += 3
        }
        let rest = bytes.count - index
        if rest > 0 {
            let chunk = UInt32(bytes[index]) << 16 | (rest == 2 ? UInt32(bytes[index + 1]) << 8 : 0)
            out.append(alphabet[Int(chunk >> 18 & 63)])
            out.append(alphabet[Int(chunk >> 12 & 63)])
            out.append(rest == 2 ? alphabet[Int(chunk >> 6 & 63)] : UInt8(ascii: "="))
            out.append(UInt8(ascii: "="))
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Nil unless `text` is whole 4-character groups of the alphabet, with `=` padding only at
    /// the end of the last one.
    static func decode<Text: Collection>(_ text: Text) -> [UInt8]? where Text.Element == UInt8 {
        let count = text.count
        guard count % 4 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(count / 4 * 3)
        var group: UInt32 = 0
        var filled = 0
        var padding = 0
        for byte in text {
            if byte == UInt8(ascii: "=") {
                padding += 1
                group <<= 6
            } else {
                let value = values[Int(byte)]
                guard value != 0xFF, padding == 0 else { return nil }
                group = group << 6 | UInt32(value)
            }
            filled += 1
            if filled == 4 {
                out.append(UInt8(truncatingIfNeeded: group >> 16))
                out.append(UInt8(truncatingIfNeeded: group >> 8))
                out.append(UInt8(truncatingIfNeeded: group))
                group = 0
                filled = 0
            }
        }
        // Padding: at most two characters, and only in the last group (it was the last bytes
        // read, as nothing but padding may follow padding).
        guard padding <= 2 else { return nil }
        out.removeLast(padding)
        return out
    }
}
