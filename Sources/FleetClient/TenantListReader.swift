import FleetCore
import Foundation

/// Reads the daemon's answer to `GET /v1/tenants` without `JSONDecoder`, which took about 25 ms
/// of `pgfleet tenant list` for 2,000 tenants (a megabyte of JSON).
///
/// It reads only the shape the daemon writes: an array of objects whose values are strings,
/// whole numbers, null and the proxy object, dates as "YYYY-MM-DDTHH:MM:SSZ" in 1583...9999.
/// Anything else (a fraction, an exponent, another date form, an unknown state, a missing field,
/// invalid UTF-8) makes it give up with nil, and the caller decodes with `JSONDecoder` instead:
/// what that accepts and the errors it reports stay exactly as they were. Unknown keys are
/// skipped, as `JSONDecoder` skips them.
enum TenantListReader {
    /// Nesting deeper than this inside an unknown field is left to JSONDecoder.
    static let maxDepth = 64

    static func read(_ bytes: [UInt8]) -> [TenantInfo]? {
        bytes.withUnsafeBufferPointer { buffer in
            var reader = JSONCursor(buffer)
            guard let tenants = reader.tenantList(), reader.atEnd() else { return nil }
            return tenants
        }
    }
}

/// A position in a JSON document and the few readers the tenant list needs. Every reader
/// returns nil when the input is not what it expects.
private struct JSONCursor {
    let bytes: UnsafeBufferPointer<UInt8>
    var index = 0

    init(_ bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    // MARK: The tenant list

    mutating func tenantList() -> [TenantInfo]? {
        guard consume(UInt8(ascii: "[")) else { return nil }
        var tenants: [TenantInfo] = []
        // Each tenant is some 500 bytes of JSON: a guess that avoids most regrowth.
        tenants.reserveCapacity(bytes.count / 400)
        if consume(UInt8(ascii: "]")) { return tenants }
        repeat {
            guard let tenant = tenant() else { return nil }
            tenants.append(tenant)
        } while consume(UInt8(ascii: ","))
        guard consume(UInt8(ascii: "]")) else { return nil }
        return tenants
    }

    mutating func tenant() -> TenantInfo? {
        var name, version, bundle, superuser, osUser, socketDirectory, dataDirectory, logFile: String?
        var major, port, restarts: Int?
        var state: TenantState?
        var desiredState: DesiredState?
        var createdAt: Date?
        var pid: Int32?
        var runningSince: Date?
        var failureReason: String?
        var suspendAfter: Int?
        var proxy: ProxyEndpoint?
        var limits: TenantLimits?
        var usage: TenantUsage?
        var network: SandboxNetwork?
        var sandboxed: Bool?

        let complete = object { cursor, key in
            switch key {
            case "name": return cursor.string(into: &name)
            case "version": return cursor.string(into: &version)
            case "bundle": return cursor.string(into: &bundle)
            case "superuser": return cursor.string(into: &superuser)
            case "osUser": return cursor.string(into: &osUser)
            case "socketDirectory": return cursor.string(into: &socketDirectory)
            case "dataDirectory": return cursor.string(into: &dataDirectory)
            case "logFile": return cursor.string(into: &logFile)
            case "major": return cursor.int(into: &major)
            case "port": return cursor.int(into: &port)
            case "restarts": return cursor.int(into: &restarts)
            case "state":
                guard let raw = cursor.string(), let value = TenantState(rawValue: raw) else { return false }
                state = value
                return true
            case "desiredState":
                guard let raw = cursor.string(), let value = DesiredState(rawValue: raw) else { return false }
                desiredState = value
                return true
            case "createdAt":
                createdAt = cursor.date()
                return createdAt != nil
            // Optional fields: null or absent is nil, as `decodeIfPresent` has it.
            case "pid":
                if cursor.null() { pid = nil; return true }
                guard let value = cursor.int(), let narrow = Int32(exactly: value) else { return false }
                pid = narrow
                return true
            case "runningSince":
                if cursor.null() { runningSince = nil; return true }
                runningSince = cursor.date()
                return runningSince != nil
            case "failureReason":
                if cursor.null() { failureReason = nil; return true }
                return cursor.string(into: &failureReason)
            case "suspendAfter":
                if cursor.null() { suspendAfter = nil; return true }
                return cursor.int(into: &suspendAfter)
            case "proxy":
                if cursor.null() { proxy = nil; return true }
                proxy = cursor.proxy()
                return proxy != nil
            case "limits":
                if cursor.null() { limits = nil; return true }
                limits = cursor.limits()
                return limits != nil
            case "usage":
                if cursor.null() { usage = nil; return true }
                usage = cursor.usage()
                return usage != nil
            case "network":
                if cursor.null() { network = nil; return true }
                guard let raw = cursor.string(), let value = SandboxNetwork(rawValue: raw) else { return false }
                network = value
                return true
            case "sandboxed":
                if cursor.null() { sandboxed = nil; return true }
                sandboxed = cursor.bool()
                return sandboxed != nil
            default:
                return cursor.skipValue(depth: 0)
            }
        }
        guard complete, let name, let version, let major, let bundle, let state, let desiredState, let superuser,
              let osUser, let socketDirectory, let port, let dataDirectory, let logFile, let createdAt, let restarts
        else { return nil }
        var tenant = TenantInfo(
            name: name, version: version, major: major, bundle: bundle, state: state, desiredState: desiredState, pid: pid,
            superuser: superuser, osUser: osUser, socketDirectory: socketDirectory, port: port, dataDirectory: dataDirectory,
            logFile: logFile, createdAt: createdAt, runningSince: runningSince, restarts: restarts, failureReason: failureReason
        )
        tenant.suspendAfter = suspendAfter
        tenant.proxy = proxy
        tenant.limits = limits
        tenant.usage = usage
        tenant.network = network
        tenant.sandboxed = sandboxed
        return tenant
    }

    mutating func limits() -> TenantLimits? {
        var limits = TenantLimits()
        let complete = object { cursor, key in
            switch key {
            case "cpuMillicores": return cursor.optionalInt(into: &limits.cpuMillicores)
            case "diskBytes": return cursor.optionalUInt64(into: &limits.diskBytes)
            case "hugePages":
                if cursor.null() { limits.hugePages = nil; return true }
                guard let raw = cursor.string(), let mode = HugePagesMode(rawValue: raw) else { return false }
                limits.hugePages = mode
                return true
            case "ioWeight": return cursor.optionalInt(into: &limits.ioWeight)
            case "memoryBytes": return cursor.optionalUInt64(into: &limits.memoryBytes)
            case "pids": return cursor.optionalInt(into: &limits.pids)
            case "shmBytes": return cursor.optionalUInt64(into: &limits.shmBytes)
            default: return cursor.skipValue(depth: 1)
            }
        }
        return complete ? limits : nil
    }

    mutating func usage() -> TenantUsage? {
        var usage = TenantUsage()
        let complete = object { cursor, key in
            switch key {
            case "cpuMicroseconds": return cursor.optionalUInt64(into: &usage.cpuMicroseconds)
            case "diskUsedBytes": return cursor.optionalUInt64(into: &usage.diskUsedBytes)
            case "diskWarning":
                if cursor.null() { usage.diskWarning = nil; return true }
                return cursor.string(into: &usage.diskWarning)
            case "hugePagesBytes": return cursor.optionalUInt64(into: &usage.hugePagesBytes)
            case "hugePagesLimitBytes": return cursor.optionalUInt64(into: &usage.hugePagesLimitBytes)
            case "hugePagesNote":
                if cursor.null() { usage.hugePagesNote = nil; return true }
                return cursor.string(into: &usage.hugePagesNote)
            case "memoryBytes": return cursor.optionalUInt64(into: &usage.memoryBytes)
            case "oomKills": return cursor.optionalInt(into: &usage.oomKills)
            case "pids": return cursor.optionalInt(into: &usage.pids)
            case "shmSizeBytes": return cursor.optionalUInt64(into: &usage.shmSizeBytes)
            case "shmUsedBytes": return cursor.optionalUInt64(into: &usage.shmUsedBytes)
            default: return cursor.skipValue(depth: 1)
            }
        }
        return complete ? usage : nil
    }

    private mutating func optionalInt(into value: inout Int?) -> Bool {
        if null() { value = nil; return true }
        return int(into: &value)
    }

    private mutating func optionalUInt64(into value: inout UInt64?) -> Bool {
        if null() { value = nil; return true }
        guard let read = int(), read >= 0 else { return false }
        value = UInt64(read)
        return true
    }

    mutating func proxy() -> ProxyEndpoint? {
        var host, tls, sniDomain: String?
        var port: Int?
        let complete = object { cursor, key in
            switch key {
            case "host": return cursor.string(into: &host)
            case "port": return cursor.int(into: &port)
            case "tls": return cursor.string(into: &tls)
            case "sniDomain":
                if cursor.null() { sniDomain = nil; return true }
                return cursor.string(into: &sniDomain)
            default: return cursor.skipValue(depth: 1)
            }
        }
        guard complete, let host, let port, let tls else { return nil }
        return ProxyEndpoint(host: host, port: port, tls: tls, sniDomain: sniDomain)
    }

    // MARK: Structure

    /// `{ "key": value, … }`, handing each key to `field`, which reads the value and says whether
    /// it could.
    mutating func object(_ field: (inout JSONCursor, String) -> Bool) -> Bool {
        guard consume(UInt8(ascii: "{")) else { return false }
        if consume(UInt8(ascii: "}")) { return true }
        repeat {
            guard let key = string(), consume(UInt8(ascii: ":")), field(&self, key) else { return false }
        } while consume(UInt8(ascii: ","))
        return consume(UInt8(ascii: "}"))
    }

    /// Any value, read past without keeping it.
    mutating func skipValue(depth: Int) -> Bool {
        guard depth < TenantListReader.maxDepth else { return false }
        skipWhitespace()
        guard index < bytes.count else { return false }
        switch bytes[index] {
        case UInt8(ascii: "\""):
            return string() != nil
        case UInt8(ascii: "{"):
            return object { cursor, _ in cursor.skipValue(depth: depth + 1) }
        case UInt8(ascii: "["):
            index += 1
            if consume(UInt8(ascii: "]")) { return true }
            repeat {
                guard skipValue(depth: depth + 1) else { return false }
            } while consume(UInt8(ascii: ","))
            return consume(UInt8(ascii: "]"))
        case UInt8(ascii: "t"): return word("true")
        case UInt8(ascii: "f"): return word("false")
        case UInt8(ascii: "n"): return word("null")
        default:
            // Numbers of any form: the characters a JSON number is made of.
            let start = index
            while index < bytes.count, Self.isNumberCharacter(bytes[index]) { index += 1 }
            return index > start
        }
    }

    static func isNumberCharacter(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "+")
            || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E")
    }

    mutating func bool() -> Bool? {
        skipWhitespace()
        if word("true") { return true }
        if word("false") { return false }
        return nil
    }

    mutating func null() -> Bool {
        skipWhitespace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: "n") else { return false }
        return word("null")
    }

    private mutating func word(_ text: StaticString) -> Bool {
        let length = text.utf8CodeUnitCount
        guard index + length <= bytes.count else { return false }
        for offset in 0..<length where bytes[index + offset] != text.utf8Start[offset] { return false }
        index += length
        return true
    }

    mutating func consume(_ byte: UInt8) -> Bool {
        skipWhitespace()
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    mutating func atEnd() -> Bool {
        skipWhitespace()
        return index == bytes.count
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "\t"): index += 1
            default: return
            }
        }
    }

    // MARK: Values

    mutating func string(into value: inout String?) -> Bool {
        value = string()
        return value != nil
    }

    mutating func int(into value: inout Int?) -> Bool {
        value = int()
        return value != nil
    }

    /// A whole number; a fraction or an exponent is left to JSONDecoder.
    mutating func int() -> Int? {
        skipWhitespace()
        let negative = index < bytes.count && bytes[index] == UInt8(ascii: "-")
        if negative { index += 1 }
        let start = index
        var value = 0
        while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
            let digit = Int(bytes[index] - UInt8(ascii: "0"))
            // Accumulated as a negative number: Int.min has no positive counterpart.
            let (shifted, overflow) = value.multipliedReportingOverflow(by: 10)
            let (next, overflow2) = shifted.subtractingReportingOverflow(digit)
            guard !overflow, !overflow2 else { return nil }
            value = next
            index += 1
        }
        guard index > start else { return nil }
        // JSON allows no leading zeros.
        if bytes[start] == UInt8(ascii: "0") && index - start > 1 { return nil }
        if index < bytes.count, Self.isNumberCharacter(bytes[index]) { return nil }
        if negative { return value }
        return value == Int.min ? nil : -value
    }

    /// "YYYY-MM-DDTHH:MM:SSZ", as the daemon writes dates.
    mutating func date() -> Date? {
        skipWhitespace()
        guard index + 22 <= bytes.count, bytes[index] == UInt8(ascii: "\""), bytes[index + 21] == UInt8(ascii: "\"") else { return nil }
        let text = UnsafeBufferPointer(rebasing: bytes[(index + 1)..<(index + 21)])
        func number(_ from: Int, _ count: Int) -> Int? {
            var value = 0
            for offset in from..<(from + count) {
                let byte = text[offset]
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        }
        guard text[4] == UInt8(ascii: "-"), text[7] == UInt8(ascii: "-"), text[10] == UInt8(ascii: "T"),
              text[13] == UInt8(ascii: ":"), text[16] == UInt8(ascii: ":"), text[19] == UInt8(ascii: "Z"),
              let year = number(0, 4), let month = number(5, 2), let day = number(8, 2),
              let hour = number(11, 2), let minute = number(14, 2), let second = number(17, 2),
              let seconds = ISO8601Seconds(year: year, month: month, day: day, hour: hour, minute: minute, second: second)
        else { return nil }
        index += 22
        return seconds.date
    }

    /// A string; one with escapes is unescaped, one with raw control characters or invalid UTF-8
    /// is refused.
    mutating func string() -> String? {
        skipWhitespace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return nil }
        index += 1
        let start = index
        var ascii = true
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let text = Self.validated(UnsafeBufferPointer(rebasing: bytes[start..<index]), ascii: ascii)
                index += 1
                return text
            }
            if byte == UInt8(ascii: "\\") { return escapedString(from: start) }
            if byte < 0x20 { return nil }
            if byte >= 0x80 { ascii = false }
            index += 1
        }
        return nil
    }

    /// The text of valid UTF-8, or nil. `String(validating:)` is generic and went through the
    /// runtime for each string (a third of the reader's time); `String(decoding:)` is fast but
    /// repairs invalid bytes, so a repair is detected by comparing.
    static func validated(_ utf8: UnsafeBufferPointer<UInt8>, ascii: Bool) -> String? {
        let text = String(decoding: utf8, as: UTF8.self)
        if ascii { return text }
        return text.utf8.elementsEqual(utf8) ? text : nil
    }

    private mutating func escapedString(from start: Int) -> String? {
        var utf8 = Array(UnsafeBufferPointer(rebasing: bytes[start..<index]))
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            switch byte {
            case UInt8(ascii: "\""):
                return utf8.withUnsafeBufferPointer { Self.validated($0, ascii: false) }
            case UInt8(ascii: "\\"):
                guard index < bytes.count else { return nil }
                let escape = bytes[index]
                index += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(escape)
                case UInt8(ascii: "b"): utf8.append(0x08)
                case UInt8(ascii: "f"): utf8.append(0x0C)
                case UInt8(ascii: "n"): utf8.append(0x0A)
                case UInt8(ascii: "r"): utf8.append(0x0D)
                case UInt8(ascii: "t"): utf8.append(0x09)
                case UInt8(ascii: "u"):
                    guard var code = hex4() else { return nil }
                    if (0xD800..<0xDC00).contains(code) {
                        // A high surrogate must be followed by an escaped low one.
                        guard consumeRaw(UInt8(ascii: "\\")), consumeRaw(UInt8(ascii: "u")), let low = hex4(),
                              (0xDC00..<0xE000).contains(low)
                        else { return nil }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let scalar = Unicode.Scalar(code) else { return nil }
                    utf8.append(contentsOf: String(Character(scalar)).utf8)
                default:
                    return nil
                }
            default:
                if byte < 0x20 { return nil }
                utf8.append(byte)
            }
        }
        return nil
    }

    private mutating func consumeRaw(_ byte: UInt8) -> Bool {
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    private mutating func hex4() -> UInt32? {
        guard index + 4 <= bytes.count else { return nil }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: return nil
            }
            value = value << 4 | UInt32(digit)
            index += 1
        }
        return value
    }
}
