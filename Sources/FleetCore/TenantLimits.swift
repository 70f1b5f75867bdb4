import Foundation

/// The resources one tenant may use: enforced by its cgroups (cpu, memory, pids, io, hugetlb), its
/// disk and its sandbox's /dev/shm. Nil: no limit of this kind (or, in a request, the daemon's default).
public struct TenantLimits: Sendable, Equatable, Codable {
    /// CPU time as thousandths of a core: 500 is half a core (`--cpu 0.5`).
    public var cpuMillicores: Int?
    public var memoryBytes: UInt64?
    public var pids: Int?
    /// Relative I/O weight, 1–10000 as on cgroup v2 (`io.weight`; v1's `blkio.weight` 10–1000 is scaled).
    public var ioWeight: Int?
    public var diskBytes: UInt64?
    /// The size of the sandbox's private /dev/shm; nil: derived from the memory limit and the
    /// parallel-query settings (`ShmSizing`).
    public var shmBytes: UInt64?
    /// Whether the postmaster may map its shared memory on huge pages; nil: the daemon's default.
    public var hugePages: HugePagesMode?

    public init(
        cpuMillicores: Int? = nil, memoryBytes: UInt64? = nil, pids: Int? = nil, ioWeight: Int? = nil, diskBytes: UInt64? = nil,
        shmBytes: UInt64? = nil, hugePages: HugePagesMode? = nil
    ) {
        self.shmBytes = shmBytes
        self.hugePages = hugePages
        self.cpuMillicores = cpuMillicores
        self.memoryBytes = memoryBytes
        self.pids = pids
        self.ioWeight = ioWeight
        self.diskBytes = diskBytes
    }

    public static let none = TenantLimits()

    public var isEmpty: Bool { self == .none }

    /// These limits, with every unset one taken from `defaults`.
    public func filled(from defaults: TenantLimits) -> TenantLimits {
        TenantLimits(
            cpuMillicores: cpuMillicores ?? defaults.cpuMillicores, memoryBytes: memoryBytes ?? defaults.memoryBytes,
            pids: pids ?? defaults.pids, ioWeight: ioWeight ?? defaults.ioWeight, diskBytes: diskBytes ?? defaults.diskBytes,
            shmBytes: shmBytes ?? defaults.shmBytes, hugePages: hugePages ?? defaults.hugePages
        )
    }

    // Bounds: below these PostgreSQL cannot run at all; above them the number is a typo.
    public static let cpuRange = 10...1_024_000
    public static let memoryRange: ClosedRange<UInt64> = (32 << 20)...(1 << 50)
    public static let pidsRange = 16...4_194_304
    public static let ioWeightRange = 1...10_000
    public static let diskRange: ClosedRange<UInt64> = (64 << 20)...(1 << 50)
    public static let shmRange: ClosedRange<UInt64> = (1 << 20)...(1 << 44)
}

/// One limit as a person writes it: `--cpu 0.5`, `--memory 256MB`, `--pids 200`, `--io-weight 100`,
/// `--disk 10GB`; `none` removes the limit.
public enum LimitValue<Value: Sendable & Equatable>: Sendable, Equatable {
    case unlimited
    case value(Value)

    public var value: Value? {
        if case .value(let value) = self { return value }
        return nil
    }
}

/// A change of limits (`tenant set --memory …`): nil leaves a limit as it is.
public struct LimitsChange: Sendable, Equatable, Codable {
    public var cpu: String?
    public var memory: String?
    public var pids: String?
    public var ioWeight: String?
    public var disk: String?
    public var shm: String?
    public var hugePages: String?

    public init(
        cpu: String? = nil, memory: String? = nil, pids: String? = nil, ioWeight: String? = nil, disk: String? = nil, shm: String? = nil,
        hugePages: String? = nil
    ) {
        self.shm = shm
        self.hugePages = hugePages
        self.cpu = cpu
        self.memory = memory
        self.pids = pids
        self.ioWeight = ioWeight
        self.disk = disk
    }

    public var isEmpty: Bool { cpu == nil && memory == nil && pids == nil && ioWeight == nil && disk == nil && shm == nil && hugePages == nil }

    enum CodingKeys: String, CodingKey {
        case cpu, memory, pids, ioWeight, disk, shm, hugePages
    }

    /// JSON may give numbers (`"cpu": 0.5`, `"memory": 268435456`) or the command line's strings.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        func text(_ key: CodingKeys) throws -> String? {
            guard container.contains(key), try !container.decodeNil(forKey: key) else { return nil }
            if let string = try? container.decode(String.self, forKey: key) { return string }
            if let integer = try? container.decode(Int64.self, forKey: key) { return String(integer) }
            if let number = try? container.decode(Double.self, forKey: key) { return String(number) }
            throw DecodingError.dataCorruptedError(forKey: key, in: container, debugDescription: "expected a number or a string")
        }
        self.init(
            cpu: try text(.cpu), memory: try text(.memory), pids: try text(.pids), ioWeight: try text(.ioWeight), disk: try text(.disk),
            shm: try text(.shm), hugePages: try text(.hugePages)
        )
    }

    /// `current` with this change applied; throws `FleetError.invalidRequest` naming the bad value.
    public func applied(to current: TenantLimits, spelling: LimitSpelling = .commandLine) throws -> TenantLimits {
        var limits = current
        if let cpu { limits.cpuMillicores = try LimitParser.cpu(cpu, spelling: spelling).value }
        if let memory { limits.memoryBytes = try LimitParser.memory(memory, spelling: spelling).value }
        if let pids { limits.pids = try LimitParser.pids(pids, spelling: spelling).value }
        if let ioWeight { limits.ioWeight = try LimitParser.ioWeight(ioWeight, spelling: spelling).value }
        if let disk { limits.diskBytes = try LimitParser.disk(disk, spelling: spelling).value }
        if let shm { limits.shmBytes = try LimitParser.shm(shm, spelling: spelling).value }
        if let hugePages { limits.hugePages = try HugePagesMode(validating: hugePages, field: spelling.field("huge-pages", json: "hugePages")) }
        return limits
    }
}

public enum LimitSpelling: Sendable {
    case commandLine, json

    func field(_ option: String, json: String) -> String {
        switch self {
        case .commandLine: "--\(option)"
        case .json: "\"\(json)\""
        }
    }
}

/// Parses the limits' spellings; every error names the option and says what is accepted.
public enum LimitParser {
    public static func cpu(_ text: String, spelling: LimitSpelling = .commandLine) throws -> LimitValue<Int> {
        let field = spelling.field("cpu", json: "cpu")
        if isNone(text) { return .unlimited }
        guard let cores = Double(text.trimmingCharacters(in: .whitespaces)), cores.isFinite else {
            throw FleetError.invalidRequest("\(field) takes a number of cores such as 0.5 or 2 (or none), not \"\(text.debugClipped)\"")
        }
        let millicores = Int((cores * 1000).rounded())
        guard TenantLimits.cpuRange.contains(millicores) else {
            throw FleetError.invalidRequest("\(field) \(text.debugClipped) is out of range: from 0.01 to 1024 cores")
        }
        return .value(millicores)
    }

    public static func memory(_ text: String, spelling: LimitSpelling = .commandLine) throws -> LimitValue<UInt64> {
        try size(text, field: spelling.field("memory", json: "memory"), range: TenantLimits.memoryRange)
    }

    public static func disk(_ text: String, spelling: LimitSpelling = .commandLine) throws -> LimitValue<UInt64> {
        try size(text, field: spelling.field("disk", json: "disk"), range: TenantLimits.diskRange)
    }

    /// `none` here is the derived size, not an unbounded /dev/shm (a tmpfs always has a size).
    public static func shm(_ text: String, spelling: LimitSpelling = .commandLine) throws -> LimitValue<UInt64> {
        try size(text, field: spelling.field("shm", json: "shm"), range: TenantLimits.shmRange)
    }

    public static func pids(_ text: String, spelling: LimitSpelling = .commandLine) throws -> LimitValue<Int> {
        try integer(text, field: spelling.field("pids", json: "pids"), range: TenantLimits.pidsRange, what: "a number of processes")
    }

    public static func ioWeight(_ text: String, spelling: LimitSpelling = .commandLine) throws -> LimitValue<Int> {
        try integer(text, field: spelling.field("io-weight", json: "ioWeight"), range: TenantLimits.ioWeightRange, what: "a weight")
    }

    private static func isNone(_ text: String) -> Bool {
        ["none", "unlimited", "max"].contains(text.trimmingCharacters(in: .whitespaces).lowercased())
    }

    private static func integer(_ text: String, field: String, range: ClosedRange<Int>, what: String) throws -> LimitValue<Int> {
        if isNone(text) { return .unlimited }
        guard let value = Int(text.trimmingCharacters(in: .whitespaces)) else {
            throw FleetError.invalidRequest("\(field) takes \(what) from \(range.lowerBound) to \(range.upperBound) (or none), not \"\(text.debugClipped)\"")
        }
        guard range.contains(value) else {
            throw FleetError.invalidRequest("\(field) \(value) is out of range: from \(range.lowerBound) to \(range.upperBound)")
        }
        return .value(value)
    }

    private static func size(_ text: String, field: String, range: ClosedRange<UInt64>) throws -> LimitValue<UInt64> {
        if isNone(text) { return .unlimited }
        guard let bytes = ByteSize.parse(text) else {
            throw FleetError.invalidRequest("\(field) takes a size such as 256MB or 2GB (or none), not \"\(text.debugClipped)\"")
        }
        guard range.contains(bytes) else {
            throw FleetError.invalidRequest(
                "\(field) \(ByteSize.format(bytes)) is out of range: from \(ByteSize.format(range.lowerBound)) to \(ByteSize.format(range.upperBound))"
            )
        }
        return .value(bytes)
    }
}

/// Sizes as PostgreSQL writes them: units of 1024 (`kB`, `MB`, `GB`, `TB`), also `K`/`M`/`G`/`T`,
/// `KiB`/`MiB`/`GiB`/`TiB` and bare bytes.
public enum ByteSize {
    public static func parse(_ text: String) -> UInt64? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let digits = trimmed.prefix { $0.isNumber || $0 == "." }
        let unit = trimmed.dropFirst(digits.count).trimmingCharacters(in: .whitespaces).lowercased()
        guard let number = Double(digits), number >= 0, number.isFinite else { return nil }
        let shift: Int
        switch unit {
        case "", "b": shift = 0
        case "k", "kb", "kib": shift = 10
        case "m", "mb", "mib": shift = 20
        case "g", "gb", "gib": shift = 30
        case "t", "tb", "tib": shift = 40
        default: return nil
        }
        let bytes = number * Double(UInt64(1) << shift)
        guard bytes < 9.0e18 else { return nil }
        return UInt64(bytes.rounded())
    }

    /// `256MB`, `1.5GB`: the largest unit that keeps at least 1, one decimal at most.
    public static func format(_ bytes: UInt64) -> String {
        let units = [(40, "TB"), (30, "GB"), (20, "MB"), (10, "kB")]
        for (shift, name) in units where bytes >= UInt64(1) << shift {
            let value = Double(bytes) / Double(UInt64(1) << shift)
            let rounded = (value * 10).rounded() / 10
            return rounded == rounded.rounded() ? "\(Int(rounded))\(name)" : "\(rounded)\(name)"
        }
        return "\(bytes)B"
    }
}

extension TenantLimits {
    /// `cpu 0.5, memory 256MB, pids 200`; "none" when there is no limit.
    public var summary: String {
        var parts: [String] = []
        if let cpuMillicores { parts.append("cpu \(Self.cores(cpuMillicores))") }
        if let memoryBytes { parts.append("memory \(ByteSize.format(memoryBytes))") }
        if let pids { parts.append("pids \(pids)") }
        if let ioWeight { parts.append("io-weight \(ioWeight)") }
        if let diskBytes { parts.append("disk \(ByteSize.format(diskBytes))") }
        if let shmBytes { parts.append("shm \(ByteSize.format(shmBytes))") }
        if let hugePages { parts.append("huge-pages \(hugePages.rawValue)") }
        return parts.isEmpty ? "none" : parts.joined(separator: ", ")
    }

    /// 500 → "0.5", 2000 → "2".
    public static func cores(_ millicores: Int) -> String {
        millicores % 1000 == 0 ? "\(millicores / 1000)" : "\(Double(millicores) / 1000)"
    }
}
