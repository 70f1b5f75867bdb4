import Crypto
import Foundation
import Testing

@testable import FleetProxy

@Suite struct ScramTests {
    // RFC 7677, section 3: user "user", password "pencil".
    let salt = Scram.decode("W22ZaJ0SNY7soEsUEjb6gQ==")!
    let serverNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    let clientFirst = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    let serverFirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    let clientFinal = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    let serverFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

    var verifier: ScramVerifier { ScramVerifier.make(password: "pencil", salt: salt, iterations: 4096) }

    @Test func serverSideMatchesTheRFCVectorAndRecoversTheClientKey() throws {
        var exchange = ScramServerExchange(verifier: verifier, serverNonce: serverNonce)
        #expect(String(decoding: try exchange.receiveClientFirst(Array(clientFirst.utf8)), as: UTF8.self) == serverFirst)
        let (final, clientKey) = try exchange.receiveClientFinal(Array(clientFinal.utf8))
        #expect(String(decoding: final, as: UTF8.self) == serverFinal)
        #expect(Scram.sha256(clientKey) == verifier.storedKey)
    }

    @Test func aWrongPasswordIsRefused() throws {
        var exchange = ScramServerExchange(verifier: ScramVerifier.make(password: "pencils", salt: salt, iterations: 4096), serverNonce: serverNonce)
        _ = try exchange.receiveClientFirst(Array(clientFirst.utf8))
        #expect(throws: ScramError.wrongProof) { _ = try exchange.receiveClientFinal(Array(clientFinal.utf8)) }
    }

    @Test func tamperedMessagesAreRefused() throws {
        let cases: [(String, String, ScramError)] = [
            (clientFirst, clientFinal.replacingOccurrences(of: "r=rOpr", with: "r=XOpr"), .malformed("nonce")),
            (clientFirst, clientFinal.replacingOccurrences(of: "c=biws", with: "c=eSws"), .malformed("channel binding data")),
            (clientFirst, String(clientFinal.dropLast(8)), .malformed("proof")),
            (clientFirst, "c=biws,r=x", .malformed("no proof")),
        ]
        for (first, final, expected) in cases {
            var exchange = ScramServerExchange(verifier: verifier, serverNonce: serverNonce)
            _ = try exchange.receiveClientFirst(Array(first.utf8))
            #expect(throws: expected) { _ = try exchange.receiveClientFinal(Array(final.utf8)) }
        }
        for (first, expected) in [
            ("p=tls-server-end-point,,n=,r=abc", ScramError.unsupported("channel binding (SCRAM-SHA-256-PLUS was not offered)")),
            ("n,a=admin,n=,r=abc", .unsupported("authorization identity")),
            ("n,,n=,r=a,b", .malformed("client-first-message-bare")),
            ("x,,n=,r=abc", .malformed("unknown channel-binding flag")),
            ("n,,", .malformed("client-first-message-bare")),
            ("garbage", .malformed("no GS2 header")),
        ] {
            var exchange = ScramServerExchange(verifier: verifier, serverNonce: serverNonce)
            #expect(throws: expected) { _ = try exchange.receiveClientFirst(Array(first.utf8)) }
        }
        var early = ScramServerExchange(verifier: verifier)
        #expect(throws: ScramError.self) { _ = try early.receiveClientFinal(Array(clientFinal.utf8)) }
    }

    /// The proxy's own client side, proving a recovered ClientKey, against the server side:
    /// what a pooled login does against PostgreSQL.
    @Test func aRecoveredClientKeyLogsInAgain() throws {
        var server = ScramServerExchange(verifier: verifier, serverNonce: serverNonce)
        _ = try server.receiveClientFirst(Array(clientFirst.utf8))
        let (_, clientKey) = try server.receiveClientFinal(Array(clientFinal.utf8))

        var tenant = ScramServerExchange(verifier: verifier)
        var proxy = ScramClientExchange(verifier: verifier, clientKey: clientKey)
        let first = try tenant.receiveClientFirst(proxy.clientFirst)
        let final = try proxy.receiveServerFirst(first)
        let (signature, _) = try tenant.receiveClientFinal(final)
        try proxy.receiveServerFinal(signature)

        // A server holding another verifier (the password changed) is noticed, either way.
        let changed = ScramVerifier.make(password: "other", salt: salt, iterations: 4096)
        var impostor = ScramServerExchange(verifier: changed)
        var again = ScramClientExchange(verifier: verifier, clientKey: clientKey)
        let otherFirst = try impostor.receiveClientFirst(again.clientFirst)
        #expect(throws: ScramError.wrongProof) { _ = try impostor.receiveClientFinal(try again.receiveServerFirst(otherFirst)) }
        var resalted = ScramClientExchange(verifier: verifier, clientKey: clientKey)
        var moved = ScramServerExchange(verifier: ScramVerifier.make(password: "pencil", salt: [1, 2, 3], iterations: 4096))
        #expect(throws: ScramError.verifierChanged) { _ = try resalted.receiveServerFirst(try moved.receiveClientFirst(resalted.clientFirst)) }
        #expect(throws: ScramError.serverError("invalid-proof")) { try proxy.receiveServerFinal(Array("e=invalid-proof".utf8)) }
    }

    @Test func verifiersParseAsPostgreSQLStoresThem() {
        let text = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$\(Scram.encode(verifier.storedKey)):\(Scram.encode(verifier.serverKey))"
        #expect(ScramVerifier(text) == verifier)
        for bad in ["md5abcdef", "SCRAM-SHA-256$4096:W22Z$x:y", "SCRAM-SHA-256$0:W22ZaJ0SNY7soEsUEjb6gQ==$a:b", "", "SCRAM-SHA-256$"] {
            #expect(ScramVerifier(bad) == nil, "\(bad)")
        }
    }

    /// Whatever a client sends as its SCRAM messages, the server side throws or answers; it never
    /// traps. Mutations of the valid messages (byte flips, cuts, insertions) and random bytes.
    @Test func arbitraryClientMessagesNeverTrap() throws {
        var generator = SystemRandomNumberGenerator()
        let fixed = verifier
        let seeds = [Array(clientFirst.utf8), Array(clientFinal.utf8), Array("n,,n=,r=\u{7f},".utf8), [0xFF, 0xFE, 0x2C, 0x2C]]
        for round in 0..<3000 {
            var first = Array(clientFirst.utf8)
            var final = Array(clientFinal.utf8)
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                var target = Bool.random(using: &generator) ? first : final
                switch Int.random(in: 0..<4, using: &generator) {
                case 0 where !target.isEmpty: target[Int.random(in: 0..<target.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
                case 1 where !target.isEmpty: target.removeLast(Int.random(in: 0...target.count, using: &generator))
                case 2: target.insert(UInt8.random(in: 0...255, using: &generator), at: Int.random(in: 0...target.count, using: &generator))
                default: target = seeds[round % seeds.count] + (0..<Int.random(in: 0..<8, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
                }
                if Bool.random(using: &generator) { first = target } else { final = target }
            }
            var exchange = ScramServerExchange(verifier: fixed, serverNonce: serverNonce)
            _ = try? exchange.receiveClientFirst(first)
            _ = try? exchange.receiveClientFinal(final)
            var client = ScramClientExchange(verifier: fixed, clientKey: [UInt8](repeating: 1, count: 32))
            _ = try? client.receiveServerFirst(first)
            try? client.receiveServerFinal(final)
        }
    }

    /// The proxy's own base64 agrees with Foundation's on every length and byte, refuses what
    /// Foundation refuses, and padding in the middle too (as PostgreSQL does), which Foundation takes.
    @Test func base64AgreesWithFoundation() {
        var generator = SystemRandomNumberGenerator()
        for length in 0..<70 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let encoded = Base64.encode(bytes)
            #expect(encoded == Data(bytes).base64EncodedString())
            #expect(Base64.decode(encoded.utf8) == bytes)
        }
        for bad in ["A", "AB", "ABC", "A===", "AB==CDEF", "AB C", "AB\nC", "ABC\u{00e9}", "AB-_", "=ABC"] {
            #expect(Base64.decode(bad.utf8) == nil, "\(bad)")
            #expect(Data(base64Encoded: bad) == nil, "Foundation accepts \(bad)")
        }
        for bad in ["AB=C", "===="] {
            #expect(Base64.decode(bad.utf8) == nil, "\(bad)")
        }
        #expect(Base64.decode("".utf8) == [])
    }

    /// The proxy's HMAC-SHA-256 gives swift-crypto's bytes for keys shorter than, as long as and
    /// longer than a block, and messages of every length around the block size.
    @Test func hmacAgreesWithSwiftCrypto() {
        var generator = SystemRandomNumberGenerator()
        for keyLength in [0, 1, 32, 63, 64, 65, 100] {
            let key = (0..<keyLength).map { _ in UInt8.random(in: 0...255, using: &generator) }
            for messageLength in [0, 1, 55, 56, 63, 64, 65, 200] {
                let message = (0..<messageLength).map { _ in UInt8.random(in: 0...255, using: &generator) }
                let expected = Array(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: key)))
                #expect(Scram.hmac(key: key, message) == expected, "key \(keyLength), message \(messageLength)")
            }
        }
        #expect(Scram.sha256(Array("abc".utf8)) == Array(SHA256.hash(data: Array("abc".utf8))))
    }
}
