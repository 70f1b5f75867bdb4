import FleetCore
import Foundation
import Testing

@testable import FleetClient

/// The CLI reads the tenant list by hand when it can; whenever it does, it must read exactly what
/// JSONDecoder reads, and whenever it cannot, it gives up (nil) and JSONDecoder decides.
@Suite struct TenantListReaderTests {
    static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }

    static func encoder(pretty: Bool = false) -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted] : [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    /// Tenants that between them use every field, present and absent, with awkward strings.
    static var tenants: [TenantInfo] {
        var plain = FakeFleet.tenant("plain")
        plain.suspendAfter = 300
        plain.proxy = ProxyEndpoint(host: "127.0.0.1", port: 6432, tls: "disable", sniDomain: nil)
        var odd = FakeFleet.tenant("odd")
        odd.state = .backoff
        odd.desiredState = .stopped
        odd.pid = nil
        odd.runningSince = nil
        odd.failureReason = "could not bind \"/run/x\": \\ é 日本 😀 \u{2028}\n\t\u{1}\u{1F}\u{7F}"
        odd.proxy = ProxyEndpoint(host: "::1", port: 6432, tls: "require", sniDomain: "db.example.test")
        odd.suspendAfter = 0
        odd.restarts = Int.max
        odd.port = Int.min
        var old = FakeFleet.tenant("old")
        old.pid = Int32.max
        old.createdAt = Date(timeIntervalSince1970: -12_212_553_600)  // 1583-01-01, the first date read by hand
        old.runningSince = Date(timeIntervalSince1970: 253_402_300_799)  // 9999-12-31T23:59:59
        return [plain, odd, old, FakeFleet.tenant("last")]
    }

    /// The reader's answer, checked against JSONDecoder's whenever it gives one.
    static func read(_ text: String) -> [TenantInfo]? {
        let bytes = Array(text.utf8)
        let fast = TenantListReader.read(bytes)
        if let fast {
            let slow = try? decoder().decode([TenantInfo].self, from: Data(bytes))
            #expect(fast == slow, "read by hand differently from JSONDecoder: \(text.prefix(300))")
        }
        return fast
    }

    @Test func readsWhatTheDaemonWrites() throws {
        let tenants = Self.tenants
        let compact = String(decoding: TenantJSON.encode(tenants, style: .compact), as: UTF8.self)
        #expect(Self.read(compact) == tenants)
        #expect(Self.read("[]") == [])
        #expect(Self.read(" [ ] \n") == [])
    }

    /// Other shapes JSONDecoder reads too: whitespace, nulls, escaped slashes and \u escapes,
    /// fields it does not know, another key order.
    @Test func readsOtherValidShapes() throws {
        let tenants = Self.tenants
        let pretty = String(decoding: try Self.encoder(pretty: true).encode(tenants), as: UTF8.self)
        #expect(pretty.contains("\\/"))
        #expect(Self.read(pretty) == tenants)
        let withNulls = String(decoding: TenantJSON.encode(tenants, style: .pretty), as: UTF8.self)
        #expect(Self.read(withNulls) == tenants)
        let escaped = #"[{"name":"a\u0062\uD83D\uDE00","version":"15.18","major":15,"bundle":"b","state":"running","desiredState":"running","#
            + #""superuser":"p","osUser":"o","socketDirectory":"\/s","port":1,"dataDirectory":"d","logFile":"l","#
            + #""createdAt":"2026-11-21T13:30:43Z","restarts":0,"extra":{"x":[1,2.5e3,true,false,null,{"y":"z"}]},"pid":null}]"#
        let read = try #require(Self.read(escaped))
        #expect(read.first?.name == "ab😀")
        #expect(read.first?.socketDirectory == "/s")
        #expect(read.first?.pid == nil)
    }

    /// Documents it leaves to JSONDecoder: some JSONDecoder reads (other date forms, numbers
    /// written with a fraction), the others are errors JSONDecoder reports as before.
    @Test func givesUpOnAnythingElse() throws {
        let base = String(decoding: TenantJSON.encode([FakeFleet.tenant("a")], style: .compact), as: UTF8.self)
        #expect(Self.read(base) != nil)
        let variants: [(String, String)] = [
            ("\"createdAt\":\"2023-11-14T22:13:20Z\"", "\"createdAt\":\"2023-11-14T22:13:20.5Z\""),
            ("\"createdAt\":\"2023-11-14T22:13:20Z\"", "\"createdAt\":\"2023-11-14T22:13:20+01:00\""),
            ("\"createdAt\":\"2023-11-14T22:13:20Z\"", "\"createdAt\":\"2023-02-30T22:13:20Z\""),
            ("\"createdAt\":\"2023-11-14T22:13:20Z\"", "\"createdAt\":\"1500-11-14T22:13:20Z\""),
            ("\"createdAt\":\"2023-11-14T22:13:20Z\"", "\"createdAt\":1700000000"),
            ("\"port\":5432", "\"port\":5432.0"),
            ("\"port\":5432", "\"port\":5.432e3"),
            ("\"port\":5432", "\"port\":05432"),
            ("\"port\":5432", "\"port\":99999999999999999999"),
            ("\"port\":5432", "\"port\":\"5432\""),
            ("\"pid\":777", "\"pid\":4294967296"),
            ("\"state\":\"running\"", "\"state\":\"sleeping\""),
            ("\"desiredState\":\"running\"", "\"desiredState\":null"),
            ("\"name\":\"a\"", "\"name\":\"\\ud800\""),
            ("\"name\":\"a\"", "\"name\":\"\\x\""),
            ("\"name\":\"a\"", "\"name\":\"a\u{1}\""),
            ("\"name\":\"a\",", ""),
            ("}]", "}"),
            ("}]", "}]]"),
            ("}]", "},]"),
        ]
        for (from, to) in variants {
            #expect(base.contains(from), "\(from)")
            #expect(Self.read(base.replacingOccurrences(of: from, with: to)) == nil, "\(to)")
        }
        var invalidUTF8 = Array(base.utf8)
        let at = try #require(invalidUTF8.firstIndex(of: UInt8(ascii: "a")))  // inside "name":"a"
        invalidUTF8[at + 0] = 0xC3
        #expect(TenantListReader.read(invalidUTF8) == nil)
        #expect(TenantListReader.read([]) == nil)
        #expect(TenantListReader.read(Array("null".utf8)) == nil)
        #expect(TenantListReader.read(Array(String(repeating: "[", count: 10_000).utf8)) == nil)
    }

    /// Damaged documents: whatever it reads by hand, JSONDecoder reads the same (checked in `read`).
    @Test func neverReadsWhatJSONDecoderWouldNot() throws {
        let base = Array(TenantJSON.encode(Self.tenants, style: .compact))
        let alphabet = Array("{}[],:\"\\ -0123456789.eEtrufalsn/uZT\u{1}".utf8) + [0xC3, 0xFF]
        var generator = SystemRandomNumberGenerator()
        var readByHand = 0
        for _ in 0..<3_000 {
            var bytes = base
            for _ in 0..<Int.random(in: 1...3, using: &generator) {
                let position = Int.random(in: 0..<bytes.count, using: &generator)
                switch Int.random(in: 0..<3, using: &generator) {
                case 0: bytes[position] = alphabet.randomElement(using: &generator)!
                case 1: bytes.remove(at: position)
                default: bytes.insert(alphabet.randomElement(using: &generator)!, at: position)
                }
            }
            if let fast = TenantListReader.read(bytes) {
                readByHand += 1
                let slow = try? Self.decoder().decode([TenantInfo].self, from: Data(bytes))
                #expect(fast == slow, "\(String(decoding: bytes, as: UTF8.self))")
            }
        }
        // Damage inside a string value leaves a list both read; the check above must have run.
        #expect(readByHand > 0)
    }
}
