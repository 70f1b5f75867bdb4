import FleetCore
import Foundation
import Testing

/// The hand-written writer must be indistinguishable from JSONEncoder with the API's settings.
@Suite struct TenantJSONTests {
    /// Every ASCII character, then characters of two, three and four UTF-8 bytes, the line and
    /// paragraph separators, a byte-order mark.
    static let everyKindOfCharacter: String = {
        var text = ""
        for byte in 0..<0x80 { text.unicodeScalars.append(Unicode.Scalar(UInt8(byte))) }
        return text + "é ü ß 日本語 😀 👩‍👩‍👧 \u{2028}\u{2029}\u{FEFF}\u{FFFD} /a/b\\c \"q\""
    }()

    static func tenant(_ name: String, running: Bool = true) -> TenantInfo {
        let directory = "/var/lib/pgfleet/tenants/\(name)"
        var tenant = TenantInfo(
            name: name, version: "15.18", major: 15, bundle: "15.18-debian", state: running ? .running : .suspended,
            desiredState: .running, pid: running ? 4242 : nil, superuser: "postgres", osUser: "pgf-\(name)",
            socketDirectory: directory + "/socket", port: 5432, dataDirectory: directory + "/data",
            logFile: directory + "/log/postgresql.log", createdAt: Date(timeIntervalSince1970: 1_763_731_843.295),
            runningSince: running ? Date(timeIntervalSince1970: 1_763_731_856.123_456) : nil, restarts: 0, failureReason: nil
        )
        tenant.suspendAfter = 300
        tenant.network = SandboxNetwork.none
        tenant.sandboxed = running ? true : nil
        tenant.collation = running ? CollationSummary(providers: "libc+icu", bundle: "15.18-debian", glibcVersion: "2.36", icuVersion: "72", indexes: 3) : nil
        return tenant
    }

    /// Tenants that between them use every field, present and absent, with awkward values.
    static var awkward: [TenantInfo] {
        var tricky = tenant("tricky")
        tricky.failureReason = everyKindOfCharacter
        tricky.superuser = "ro\"le\\"
        tricky.osUser = ""
        tricky.proxy = ProxyEndpoint(host: "::1", port: 6432, tls: "require", sniDomain: "db.example.test")
        tricky.pid = Int32.max
        tricky.restarts = Int.max
        tricky.port = Int.min
        tricky.major = -1
        tricky.state = .backoff
        tricky.desiredState = .stopped
        tricky.network = .host
        tricky.sandboxed = false
        tricky.limits = TenantLimits(cpuMillicores: 500, memoryBytes: 256 << 20, pids: 200, ioWeight: 10, diskBytes: 128 << 20)
        tricky.usage = TenantUsage(memoryBytes: 1, cpuMicroseconds: 2, pids: 3, oomKills: 0, diskUsedBytes: 5, diskWarning: everyKindOfCharacter)
        var bare = tenant("bare", running: false)
        bare.suspendAfter = nil
        bare.proxy = ProxyEndpoint(host: "127.0.0.1", port: 6432, tls: "disable", sniDomain: nil)
        bare.createdAt = Date(timeIntervalSince1970: -1.5)
        var old = tenant("old")
        old.createdAt = Date(timeIntervalSince1970: -12_212_553_601)  // 1582, where Foundation's calendar is Julian
        old.runningSince = Date(timeIntervalSince1970: 253_402_300_800)  // 10000-01-01
        var edge = tenant("edge")
        edge.createdAt = Date(timeIntervalSince1970: -12_212_553_600)  // 1583-01-01, the first date written by hand
        edge.runningSince = Date(timeIntervalSince1970: 253_402_300_799.999)  // 9999-12-31T23:59:59
        return [tenant("plain"), tricky, bare, old, edge]
    }

    static func encoder(pretty: Bool) -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    /// What `--json` printed before TenantJSON: JSONEncoder with nulls for the fields a tenant
    /// that is not running lacks.
    struct WithNulls: Encodable {
        let tenant: TenantInfo
        struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(_ name: String) { stringValue = name }
            init?(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }
        func encode(to encoder: any Encoder) throws {
            try tenant.encode(to: encoder)
            var container = encoder.container(keyedBy: Key.self)
            if tenant.pid == nil { try container.encodeNil(forKey: Key("pid")) }
            if tenant.runningSince == nil { try container.encodeNil(forKey: Key("runningSince")) }
            if tenant.failureReason == nil { try container.encodeNil(forKey: Key("failureReason")) }
        }
    }

    static func text(_ bytes: some Sequence<UInt8>) -> String { String(decoding: Array(bytes), as: UTF8.self) }

    @Test func compactIsWhatJSONEncoderWrites() throws {
        let tenants = Self.awkward
        #expect(Self.text(TenantJSON.encode(tenants, style: .compact)) == Self.text(try Self.encoder(pretty: false).encode(tenants)))
        for tenant in tenants {
            #expect(Self.text(TenantJSON.encode(tenant, style: .compact)) == Self.text(try Self.encoder(pretty: false).encode(tenant)))
        }
    }

    @Test func prettyIsWhatJSONEncoderWritesWithNulls() throws {
        let tenants = Self.awkward
        #expect(Self.text(TenantJSON.encode(tenants, style: .pretty)) == Self.text(try Self.encoder(pretty: true).encode(tenants.map(WithNulls.init))))
        for tenant in tenants {
            #expect(Self.text(TenantJSON.encode(tenant, style: .pretty)) == Self.text(try Self.encoder(pretty: true).encode(WithNulls(tenant: tenant))))
        }
    }

    @Test func emptyLists() throws {
        let none: [TenantInfo] = []
        #expect(Self.text(TenantJSON.encode(none, style: .compact)) == "[]")
        #expect(Self.text(TenantJSON.encode(none, style: .pretty)) == Self.text(try Self.encoder(pretty: true).encode(none)))
    }

    @Test func eachCharacterAloneIsEscapedAsJSONEncoderDoes() throws {
        var tenant = Self.tenant("chars")
        for scalar in Self.everyKindOfCharacter.unicodeScalars {
            tenant.failureReason = "a" + String(scalar) + "b"
            #expect(Self.text(TenantJSON.encode(tenant, style: .compact)) == Self.text(try Self.encoder(pretty: false).encode(tenant)), "U+\(String(scalar.value, radix: 16))")
        }
    }

    @Test func datesAcrossTheYearsAsJSONEncoderWritesThem() throws {
        var generator = SystemRandomNumberGenerator()
        var dates = (0..<2_000).map { _ in Date(timeIntervalSince1970: Double.random(in: -13_000_000_000...260_000_000_000, using: &generator)) }
        // Whole seconds, and just below and above them, where rounding would show.
        for whole in [0.0, 1.0, -1.0, 978_307_200, 1_763_731_843, -12_212_553_600, 253_402_300_799, 951_782_400 /* 2000-02-29 */] {
            dates += [whole, whole.nextDown, whole.nextUp, whole - 1e-7, whole + 0.999_999].map { Date(timeIntervalSince1970: $0) }
        }
        dates += [Date(timeIntervalSinceReferenceDate: 100 - 1e-12), Date(timeIntervalSinceReferenceDate: 800_000_000.999_999_9)]
        var tenant = Self.tenant("dates")
        for date in dates {
            tenant.createdAt = date
            #expect(Self.text(TenantJSON.encode(tenant, style: .compact)) == Self.text(try Self.encoder(pretty: false).encode(tenant)), "\(date.timeIntervalSince1970)")
        }
    }

    @Test func calendarFieldsRoundTrip() throws {
        for seconds in stride(from: -12_212_553_600, to: 253_402_300_800, by: 86_399 * 37 + 13) {
            let value = try #require(ISO8601Seconds(Date(timeIntervalSince1970: Double(seconds))))
            let fields = value.fields
            let back = ISO8601Seconds(year: fields.year, month: fields.month, day: fields.day, hour: fields.hour, minute: fields.minute, second: fields.second)
            #expect(back == value)
        }
        #expect(ISO8601Seconds(year: 2023, month: 2, day: 29, hour: 0, minute: 0, second: 0) == nil)
        #expect(ISO8601Seconds(year: 2024, month: 2, day: 29, hour: 0, minute: 0, second: 0) != nil)
        #expect(ISO8601Seconds(year: 2024, month: 1, day: 1, hour: 24, minute: 0, second: 0) == nil)
        #expect(ISO8601Seconds(year: 1582, month: 12, day: 31, hour: 0, minute: 0, second: 0) == nil)
    }

    /// A field added to TenantInfo or ProxyEndpoint must be added to the writer too.
    @Test func theWriterKnowsEveryField() {
        var tenant = Self.tenant("fields")
        tenant.proxy = ProxyEndpoint(host: "h", port: 1, tls: "allow", sniDomain: "d")
        #expect(Set(Mirror(reflecting: tenant).children.compactMap(\.label)) == TenantJSON.tenantKeys)
        #expect(Set(Mirror(reflecting: tenant.proxy!).children.compactMap(\.label)) == TenantJSON.proxyKeys)
    }
}
