import Foundation

/// `TenantInfo` as JSON, written by hand: byte for byte what `JSONEncoder` writes with the API's
/// settings (sorted keys, ISO-8601 dates, slashes unescaped), about ten times faster. The list of
/// 2,000 tenants is a megabyte, and `JSONEncoder` spent most of `GET /v1/tenants` building it.
///
/// Keys are written in sorted order by the code below; `TenantJSONTests` checks it against
/// `JSONEncoder` and fails when `TenantInfo` or `ProxyEndpoint` gains a field this file does not
/// write.
public enum TenantJSON {
    public enum Style: Sendable {
        /// The API's answer: no whitespace, a nil field left out (as `Codable` does).
        case compact
        /// `--json` for people and scripts (`JSONEncoder`'s `.prettyPrinted`): two-space indents,
        /// `"key" : value`, and `null` for the fields that are absent when a tenant is not running
        /// (pid, runningSince, failureReason) so that every tenant shows the same keys.
        case pretty
    }

    /// The stored properties of `TenantInfo` and `ProxyEndpoint` this writer knows about.
    public static let tenantKeys: Set<String> = [
        "bundle", "collation", "createdAt", "dataDirectory", "desiredState", "failureReason", "limits", "logFile", "major", "name", "network",
        "osUser", "pid", "port", "proxy", "restarts", "runningSince", "sandboxed", "socketDirectory", "state", "superuser", "suspendAfter", "usage", "version",
    ]
    public static let limitsKeys: Set<String> = ["cpuMillicores", "diskBytes", "hugePages", "ioWeight", "memoryBytes", "pids", "shmBytes"]
    public static let usageKeys: Set<String> = [
        "cpuMicroseconds", "diskUsedBytes", "diskWarning", "hugePagesBytes", "hugePagesLimitBytes", "hugePagesNote", "memoryBytes", "oomKills",
        "pids", "shmSizeBytes", "shmUsedBytes",
    ]
    public static let proxyKeys: Set<String> = ["host", "port", "sniDomain", "tls"]

    public static func encode(_ tenants: [TenantInfo], style: Style) -> [UInt8] {
        var writer = JSONBytes(style: style)
        // About 500 bytes per tenant compact, 700 pretty.
        writer.bytes.reserveCapacity(64 + tenants.count * (style == .compact ? 640 : 900))
        writer.array(tenants, depth: 0)
        return writer.bytes
    }

    public static func encode(_ tenant: TenantInfo, style: Style) -> [UInt8] {
        var writer = JSONBytes(style: style)
        writer.tenant(tenant, depth: 0)
        return writer.bytes
    }
}

/// The few pieces of JSON the writer above needs, appended to a byte array.
struct JSONBytes {
    private static let hexDigits = Array("0123456789abcdef".utf8)

    let style: TenantJSON.Style
    var bytes: [UInt8] = []

    init(style: TenantJSON.Style) {
        self.style = style
    }

    mutating func array(_ tenants: [TenantInfo], depth: Int) {
        bytes.append(UInt8(ascii: "["))
        if style == .pretty {
            // JSONEncoder writes an empty array as "[", an empty line, "]".
            if tenants.isEmpty { bytes.append(UInt8(ascii: "\n")) }
            for (index, tenant) in tenants.enumerated() {
                if index > 0 { bytes.append(UInt8(ascii: ",")) }
                bytes.append(UInt8(ascii: "\n"))
                indent(depth + 1)
                self.tenant(tenant, depth: depth + 1)
            }
            bytes.append(UInt8(ascii: "\n"))
            indent(depth)
        } else {
            for (index, tenant) in tenants.enumerated() {
                if index > 0 { bytes.append(UInt8(ascii: ",")) }
                self.tenant(tenant, depth: depth + 1)
            }
        }
        bytes.append(UInt8(ascii: "]"))
    }

    /// Keys in sorted order (JSONEncoder's `.sortedKeys` compares them as UTF-8 bytes).
    mutating func tenant(_ tenant: TenantInfo, depth: Int) {
        var object = ObjectState(depth: depth)
        bytes.append(UInt8(ascii: "{"))
        key("bundle", &object); string(tenant.bundle)
        if let collation = tenant.collation {
            key("collation", &object)
            self.collation(collation, depth: depth + 1)
        }
        key("createdAt", &object); date(tenant.createdAt)
        key("dataDirectory", &object); string(tenant.dataDirectory)
        key("desiredState", &object); string(tenant.desiredState.rawValue)
        optional(tenant.failureReason, "failureReason", &object) { $0.string($1) }
        if let limits = tenant.limits {
            key("limits", &object)
            self.limits(limits, depth: depth + 1)
        }
        key("logFile", &object); string(tenant.logFile)
        key("major", &object); int(tenant.major)
        key("name", &object); string(tenant.name)
        if let network = tenant.network {
            key("network", &object); string(network.rawValue)
        }
        key("osUser", &object); string(tenant.osUser)
        optional(tenant.pid, "pid", &object) { $0.int(Int($1)) }
        key("port", &object); int(tenant.port)
        if let proxy = tenant.proxy {
            key("proxy", &object)
            self.proxy(proxy, depth: depth + 1)
        }
        key("restarts", &object); int(tenant.restarts)
        optional(tenant.runningSince, "runningSince", &object) { $0.date($1) }
        if let sandboxed = tenant.sandboxed {
            key("sandboxed", &object); literal(sandboxed ? "true" : "false")
        }
        key("socketDirectory", &object); string(tenant.socketDirectory)
        key("state", &object); string(tenant.state.rawValue)
        key("superuser", &object); string(tenant.superuser)
        if let suspendAfter = tenant.suspendAfter {
            key("suspendAfter", &object); int(suspendAfter)
        }
        if let usage = tenant.usage {
            key("usage", &object)
            self.usage(usage, depth: depth + 1)
        }
        key("version", &object); string(tenant.version)
        close(object)
    }

    /// Absent members left out in both styles, as `Codable` does (no tenant lacks a whole object's worth).
    mutating func limits(_ limits: TenantLimits, depth: Int) {
        var object = ObjectState(depth: depth)
        bytes.append(UInt8(ascii: "{"))
        if let value = limits.cpuMillicores { key("cpuMillicores", &object); int(value) }
        if let value = limits.diskBytes { key("diskBytes", &object); int(Int(clamping: value)) }
        if let value = limits.hugePages { key("hugePages", &object); string(value.rawValue) }
        if let value = limits.ioWeight { key("ioWeight", &object); int(value) }
        if let value = limits.memoryBytes { key("memoryBytes", &object); int(Int(clamping: value)) }
        if let value = limits.pids { key("pids", &object); int(value) }
        if let value = limits.shmBytes { key("shmBytes", &object); int(Int(clamping: value)) }
        close(object)
    }

    mutating func usage(_ usage: TenantUsage, depth: Int) {
        var object = ObjectState(depth: depth)
        bytes.append(UInt8(ascii: "{"))
        if let value = usage.cpuMicroseconds { key("cpuMicroseconds", &object); int(Int(clamping: value)) }
        if let value = usage.diskUsedBytes { key("diskUsedBytes", &object); int(Int(clamping: value)) }
        if let value = usage.diskWarning { key("diskWarning", &object); string(value) }
        if let value = usage.hugePagesBytes { key("hugePagesBytes", &object); int(Int(clamping: value)) }
        if let value = usage.hugePagesLimitBytes { key("hugePagesLimitBytes", &object); int(Int(clamping: value)) }
        if let value = usage.hugePagesNote { key("hugePagesNote", &object); string(value) }
        if let value = usage.memoryBytes { key("memoryBytes", &object); int(Int(clamping: value)) }
        if let value = usage.oomKills { key("oomKills", &object); int(value) }
        if let value = usage.pids { key("pids", &object); int(value) }
        if let value = usage.shmSizeBytes { key("shmSizeBytes", &object); int(Int(clamping: value)) }
        if let value = usage.shmUsedBytes { key("shmUsedBytes", &object); int(Int(clamping: value)) }
        close(object)
    }

    mutating func collation(_ collation: CollationSummary, depth: Int) {
        var object = ObjectState(depth: depth)
        bytes.append(UInt8(ascii: "{"))
        key("bundle", &object); string(collation.bundle)
        if let value = collation.glibcVersion { key("glibcVersion", &object); string(value) }
        if let value = collation.icuVersion { key("icuVersion", &object); string(value) }
        key("indexes", &object); int(collation.indexes)
        key("providers", &object); string(collation.providers)
        close(object)
    }

    mutating func proxy(_ proxy: ProxyEndpoint, depth: Int) {
        var object = ObjectState(depth: depth)
        bytes.append(UInt8(ascii: "{"))
        key("host", &object); string(proxy.host)
        key("port", &object); int(proxy.port)
        if let sniDomain = proxy.sniDomain {
            key("sniDomain", &object); string(sniDomain)
        }
        key("tls", &object); string(proxy.tls)
        close(object)
    }

    // MARK: Objects

    struct ObjectState {
        var depth: Int
        var first = true
    }

    private mutating func close(_ object: ObjectState) {
        if style == .pretty {
            bytes.append(UInt8(ascii: "\n"))
            indent(object.depth)
        }
        bytes.append(UInt8(ascii: "}"))
    }

    private mutating func key(_ name: StaticString, _ object: inout ObjectState) {
        if !object.first { bytes.append(UInt8(ascii: ",")) }
        object.first = false
        if style == .pretty {
            bytes.append(UInt8(ascii: "\n"))
            indent(object.depth + 1)
        }
        bytes.append(UInt8(ascii: "\""))
        literal(name)
        bytes.append(UInt8(ascii: "\""))
        if style == .pretty { bytes.append(UInt8(ascii: " ")) }
        bytes.append(UInt8(ascii: ":"))
        if style == .pretty { bytes.append(UInt8(ascii: " ")) }
    }

    /// A field `Codable` leaves out when nil; `--json` shows it as null.
    private mutating func optional<T>(_ value: T?, _ name: StaticString, _ object: inout ObjectState, _ write: (inout JSONBytes, T) -> Void) {
        if let value {
            key(name, &object)
            write(&self, value)
        } else if style == .pretty {
            key(name, &object)
            literal("null")
        }
    }

    private mutating func literal(_ text: StaticString) {
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    private mutating func indent(_ depth: Int) {
        for _ in 0..<(depth * 2) { bytes.append(UInt8(ascii: " ")) }
    }

    // MARK: Values

    mutating func int(_ value: Int) {
        if value < 0 { bytes.append(UInt8(ascii: "-")) }
        // The magnitude: Int.min has no positive counterpart.
        var rest = value.magnitude
        let start = bytes.count
        repeat {
            bytes.append(UInt8(ascii: "0") + UInt8(rest % 10))
            rest /= 10
        } while rest > 0
        bytes[start...].reverse()
    }

    /// Escapes as JSONEncoder does: `"` and `\`, the short forms \b \t \n \f \r, other control
    /// characters as \u00XX; everything else (`/`, DEL, all of Unicode) as it is.
    mutating func string(_ value: String) {
        bytes.append(UInt8(ascii: "\""))
        var value = value
        value.withUTF8 { utf8 in
            var start = 0
            for index in 0..<utf8.count {
                let byte = utf8[index]
                guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start..<index]))
                start = index + 1
                bytes.append(UInt8(ascii: "\\"))
                switch byte {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"): bytes.append(byte)
                case 0x08: bytes.append(UInt8(ascii: "b"))
                case 0x09: bytes.append(UInt8(ascii: "t"))
                case 0x0A: bytes.append(UInt8(ascii: "n"))
                case 0x0C: bytes.append(UInt8(ascii: "f"))
                case 0x0D: bytes.append(UInt8(ascii: "r"))
                default:
                    literal("u00")
                    bytes.append(Self.hexDigits[Int(byte >> 4)])
                    bytes.append(Self.hexDigits[Int(byte & 0xF)])
                }
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start...]))
        }
        bytes.append(UInt8(ascii: "\""))
    }

    /// `.iso8601` as JSONEncoder writes it: "2026-11-21T13:30:43Z", the seconds rounded down.
    mutating func date(_ date: Date) {
        guard let seconds = ISO8601Seconds(date) else {
            // Foundation's calendar is Julian before 1582 and years past 9999 take more digits:
            // rare enough to leave to Foundation itself.
            bytes.append(UInt8(ascii: "\""))
            bytes.append(contentsOf: date.formatted(.iso8601).utf8)
            bytes.append(UInt8(ascii: "\""))
            return
        }
        bytes.append(UInt8(ascii: "\""))
        let (year, month, day, hour, minute, second) = seconds.fields
        digits(year, 4); bytes.append(UInt8(ascii: "-"))
        digits(month, 2); bytes.append(UInt8(ascii: "-"))
        digits(day, 2); bytes.append(UInt8(ascii: "T"))
        digits(hour, 2); bytes.append(UInt8(ascii: ":"))
        digits(minute, 2); bytes.append(UInt8(ascii: ":"))
        digits(second, 2); bytes.append(UInt8(ascii: "Z"))
        bytes.append(UInt8(ascii: "\""))
    }

    private mutating func digits(_ value: Int, _ width: Int) {
        var divisor = 1
        for _ in 1..<width { divisor *= 10 }
        var rest = value
        while divisor > 0 {
            bytes.append(UInt8(ascii: "0") + UInt8(rest / divisor))
            rest %= divisor
            divisor /= 10
        }
    }
}

/// Whole seconds since 1970 (UTC) of a date in 1583...9999, where Foundation's Gregorian calendar
/// and the proleptic one below agree and years have four digits.
public struct ISO8601Seconds: Equatable, Sendable {
    public let sinceEpoch: Int

    /// 1583-01-01T00:00:00Z and 10000-01-01T00:00:00Z.
    static let lowerBound = -12_212_553_600
    static let upperBound = 253_402_300_800
    /// Seconds from 1970 to 2001, Foundation's reference date.
    static let referenceOffset = 978_307_200

    public init?(_ date: Date) {
        // Foundation rounds the reference-date interval down, not the 1970 one (they differ for a
        // fraction just below a whole second).
        let reference = date.timeIntervalSinceReferenceDate.rounded(.down)
        guard reference.isFinite,
              reference >= Double(Self.lowerBound - Self.referenceOffset),
              reference < Double(Self.upperBound - Self.referenceOffset)
        else { return nil }
        self.init(sinceEpoch: Int(reference) + Self.referenceOffset)
    }

    init?(sinceEpoch: Int) {
        guard sinceEpoch >= Self.lowerBound, sinceEpoch < Self.upperBound else { return nil }
        self.sinceEpoch = sinceEpoch
    }

    /// From "YYYY-MM-DD" and "HH:MM:SS" fields, or nil when any is out of range.
    public init?(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int) {
        guard (1...12).contains(month), (1...Self.daysIn(month: month, year: year)).contains(day),
              (0...23).contains(hour), (0...59).contains(minute), (0...59).contains(second)
        else { return nil }
        let days = Self.daysFromCivil(year: year, month: month, day: day)
        self.init(sinceEpoch: days * 86_400 + hour * 3_600 + minute * 60 + second)
    }

    public var date: Date {
        Date(timeIntervalSinceReferenceDate: Double(sinceEpoch - Self.referenceOffset))
    }

    public var fields: (year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int) {
        // Floor division: the range includes dates before 1970.
        let days = sinceEpoch >= 0 ? sinceEpoch / 86_400 : (sinceEpoch - 86_399) / 86_400
        let secondOfDay = sinceEpoch - days * 86_400
        let (year, month, day) = Self.civilFromDays(days)
        return (year, month, day, secondOfDay / 3_600, secondOfDay % 3_600 / 60, secondOfDay % 60)
    }

    // Howard Hinnant's algorithms for the proleptic Gregorian calendar (chrono-Compatible
    // Low-Level Date Algorithms), on years that start in March.
    static func civilFromDays(_ days: Int) -> (year: Int, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }
}
