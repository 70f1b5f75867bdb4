import Foundation
import Testing

@testable import FleetSupervisor

/// Expected verifiers come from an independent implementation (Python's hashlib.pbkdf2_hmac and
/// unicodedata NFKC), with RFC 7677's salt.
@Suite struct ScramVerifierTests {
    let salt = Array(Data(base64Encoded: "W22ZaJ0SNY7soEsUEjb6gQ==")!)

    @Test func anASCIIPasswordIsHashedAsItIs() throws {
        #expect(try ScramVerifierMaker.make(password: "pencil", salt: salt) ==
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=")
    }

    @Test func aNonASCIIPasswordIsPreparedFirst() throws {
        // Fullwidth letters fold (NFKC), an ideographic space becomes a space, a soft hyphen goes.
        #expect(SASLprep.prepare("\u{FF50}\u{E9}\u{3000}\u{FF4E}cil\u{AD}") == Array("p\u{E9} ncil".utf8))
        #expect(try ScramVerifierMaker.make(password: "\u{FF50}\u{E9}\u{3000}\u{FF4E}cil\u{AD}", salt: salt) ==
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$/N0iQzUhNJ83+YSssExjFcEHPvQ5QejElieFdvIdPWM=:saccCpzFsQRlq5Ldb0r7RndETNYgEnFO0v4FvA8rtJ0=")
    }

    @Test func aProhibitedCharacterKeepsThePasswordsBytes() throws {
        // A private-use character: PostgreSQL then hashes the bytes unchanged.
        #expect(SASLprep.prepare("pass\u{E000}") == Array("pass\u{E000}".utf8))
        #expect(try ScramVerifierMaker.make(password: "pass\u{E000}", salt: salt) ==
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$VpPD+NwRSAT09X7ZPV2xpDlufV2R52bkfNNJsJplZrs=:7k6o5i2ik65Pqp5xa0VCrkGzyU/ctog/NLddiQfTMro=")
        // Assigned after Unicode 3.2 (an emoji), and a control character: unchanged too.
        #expect(SASLprep.prepare("caf\u{E9}\u{1F600}") == Array("caf\u{E9}\u{1F600}".utf8))
        #expect(SASLprep.prepare("caf\u{E9}\u{85}") == Array("caf\u{E9}\u{85}".utf8))
        // ASCII, control characters included, is never touched.
        #expect(SASLprep.prepare("a\tb") == Array("a\tb".utf8))
    }

    @Test func rightToLeftTextFollowsTheBidiRule() {
        let hebrew = "\u{5E9}\u{5DC}\u{5D5}\u{5DD}"
        #expect(SASLprep.prepare(hebrew) == Array(hebrew.utf8))
        // Mixed with Latin letters it is prohibited, so the bytes stay as they are (NFKC would
        // otherwise fold the fullwidth letter).
        let mixed = "\u{5E9}\u{FF41}\u{5DD}"
        #expect(SASLprep.prepare(mixed) == Array(mixed.utf8))
        // Starting with a digit is not allowed either.
        let digitFirst = "1\u{5E9}\u{FF11}\u{5DD}"
        #expect(SASLprep.prepare(digitFirst) == Array(digitFirst.utf8))
    }

    @Test func everyVerifierHasItsOwnSalt() throws {
        let first = try ScramVerifierMaker.make(password: "same")
        let second = try ScramVerifierMaker.make(password: "same")
        #expect(first != second)
        #expect(first.hasPrefix("SCRAM-SHA-256$4096:"))
    }
}
