import FleetCore
import Foundation
import GRDB

// Rows of the catalog. Columns are snake_case (explicit CodingKeys) so the file reads naturally in
// `sqlite3`; dates are stored by GRDB as UTC text "YYYY-MM-DD HH:MM:SS.SSS", so they keep
// millisecond precision only.

/// One imported PostgreSQL build (table `bundle`).
public struct BundleRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    /// e.g. "15.18-debian".
    public var id: String
    public var major: Int
    /// e.g. "15.18".
    public var version: String
    /// "system" | "tarball".
    public var sourceKind: String
    /// The path it was imported from.
    public var source: String
    /// The bundle directory.
    public var path: String
    /// The fleet's default: what `tenant create` without `--pg` runs. Always also its major's default.
    public var isDefault: Bool
    /// Its major's default: what `tenant create --pg N` runs. One per major that has bundles.
    public var isMajorDefault: Bool
    public var importedAt: Date
    public var glibcVersion: String?
    public var icuVersion: String?
    public var fileCount: Int

    public init(
        id: String, major: Int, version: String, sourceKind: String, source: String, path: String,
        isDefault: Bool, isMajorDefault: Bool = false, importedAt: Date, glibcVersion: String?, icuVersion: String?, fileCount: Int
    ) {
        self.id = id
        self.major = major
        self.version = version
        self.sourceKind = sourceKind
        self.source = source
        self.path = path
        self.isDefault = isDefault
        self.isMajorDefault = isMajorDefault || isDefault
        self.importedAt = importedAt
        self.glibcVersion = glibcVersion
        self.icuVersion = icuVersion
        self.fileCount = fileCount
    }

    public static let databaseTableName = "bundle"

    enum CodingKeys: String, CodingKey {
        case id
        case major
        case version
        case sourceKind = "source_kind"
        case source
        case path
        case isDefault = "is_default"
        case isMajorDefault = "is_major_default"
        case importedAt = "imported_at"
        case glibcVersion = "glibc_version"
        case icuVersion = "icu_version"
        case fileCount = "file_count"
    }

    // Public only because GRDB's TableRecord names it; the columns themselves stay internal.
    public enum Columns {
        static let id = Column(CodingKeys.id)
        static let isDefault = Column(CodingKeys.isDefault)
        static let isMajorDefault = Column(CodingKeys.isMajorDefault)
        static let major = Column(CodingKeys.major)
        static let icuVersion = Column(CodingKeys.icuVersion)
    }
}

/// One tenant's cluster (table `tenant`).
public struct TenantRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    /// Assigned by the catalog on insert; AUTOINCREMENT, so never reused after a delete.
    public var id: Int64?
    /// Unique.
    public var name: String
    /// References `bundle.id` (ON DELETE RESTRICT).
    public var bundleID: String
    public var superuser: String
    public var osUser: String
    /// The OS uid/gid the cluster runs as.
    public var uid: Int
    public var gid: Int
    /// The tenant directory.
    public var directory: String
    public var dataDirectory: String
    public var socketDirectory: String
    public var logFile: String
    public var port: Int
    /// Stored as the text "running" / "stopped".
    public var desiredState: DesiredState
    public var createdAt: Date
    public var failureReason: String?
    /// Shut down for idleness; the next connection wakes it. The desired state stays running.
    public var suspended: Bool
    /// Seconds without a client connection before it is suspended; nil: the daemon's default; 0: never.
    public var suspendAfter: Int?
    /// The tenant's own limits (each nil: the daemon's default applies).
    public var cpuMillicores: Int?
    public var memoryBytes: Int64?
    public var pidsMax: Int?
    public var ioWeight: Int?
    public var diskBytes: Int64?
    public var shmBytes: Int64?
    public var hugePages: String?
    /// The sandbox's network: "none" or "host" (tenants an older pgfleet made keep "host").
    public var network: String

    public init(
        id: Int64? = nil, name: String, bundleID: String, superuser: String, osUser: String, uid: Int, gid: Int,
        directory: String, dataDirectory: String, socketDirectory: String, logFile: String, port: Int,
        desiredState: DesiredState, createdAt: Date, failureReason: String?, suspended: Bool = false, suspendAfter: Int? = nil,
        limits: TenantLimits = .none, network: SandboxNetwork = .none
    ) {
        self.network = network.rawValue
        self.suspended = suspended
        self.suspendAfter = suspendAfter
        self.id = id
        self.name = name
        self.bundleID = bundleID
        self.superuser = superuser
        self.osUser = osUser
        self.uid = uid
        self.gid = gid
        self.directory = directory
        self.dataDirectory = dataDirectory
        self.socketDirectory = socketDirectory
        self.logFile = logFile
        self.port = port
        self.desiredState = desiredState
        self.createdAt = createdAt
        self.failureReason = failureReason
        self.limits = limits
    }

    public static let databaseTableName = "tenant"

    enum CodingKeys: String, CodingKey, CaseIterable {
        case id
        case name
        case bundleID = "bundle_id"
        case superuser
        case osUser = "os_user"
        case uid
        case gid
        case directory
        case dataDirectory = "data_directory"
        case socketDirectory = "socket_directory"
        case logFile = "log_file"
        case port
        case desiredState = "desired_state"
        case createdAt = "created_at"
        case failureReason = "failure_reason"
        case suspended
        case suspendAfter = "suspend_after"
        case cpuMillicores = "cpu_millicores"
        case memoryBytes = "memory_bytes"
        case pidsMax = "pids_max"
        case ioWeight = "io_weight"
        case diskBytes = "disk_bytes"
        case network
        case shmBytes = "shm_bytes"
        case hugePages = "huge_pages"
    }

    public enum Columns {
        static let id = Column(CodingKeys.id)
        static let name = Column(CodingKeys.name)
        static let bundleID = Column(CodingKeys.bundleID)
        static let desiredState = Column(CodingKeys.desiredState)
        static let failureReason = Column(CodingKeys.failureReason)
        static let suspended = Column(CodingKeys.suspended)
        static let suspendAfter = Column(CodingKeys.suspendAfter)
        static let network = Column(CodingKeys.network)
    }

    /// The sandbox's network; a value the catalog should never hold reads as the safer "none".
    public var sandboxNetwork: SandboxNetwork { SandboxNetwork(rawValue: network) ?? .none }

    /// The tenant's own limits, as the catalog keeps them (SQLite integers are signed).
    public var limits: TenantLimits {
        get {
            TenantLimits(
                cpuMillicores: cpuMillicores, memoryBytes: memoryBytes.map { UInt64($0) }, pids: pidsMax, ioWeight: ioWeight,
                diskBytes: diskBytes.map { UInt64($0) }, shmBytes: shmBytes.map { UInt64($0) },
                hugePages: hugePages.flatMap(HugePagesMode.init(rawValue:))
            )
        }
        set {
            cpuMillicores = newValue.cpuMillicores
            memoryBytes = newValue.memoryBytes.map { Int64(clamping: $0) }
            pidsMax = newValue.pids
            ioWeight = newValue.ioWeight
            diskBytes = newValue.diskBytes.map { Int64(clamping: $0) }
            shmBytes = newValue.shmBytes.map { Int64(clamping: $0) }
            hugePages = newValue.hugePages?.rawValue
        }
    }
}

extension TenantRecord {
    /// A new tenant's row: what it is (`spec`, its bundle resolved to an id) and where it lives.
    public init(
        spec: TenantSpec, osUser: String, uid: Int, gid: Int, directory: String, dataDirectory: String, socketDirectory: String,
        logFile: String, port: Int, desiredState: DesiredState, createdAt: Date
    ) throws {
        guard case .id(let bundleID) = spec.bundle else {
            throw FleetError.failed("catalog: a tenant row names its bundle by id; \(spec.bundle) was not resolved")
        }
        self.init(
            name: spec.name.rawValue, bundleID: bundleID, superuser: spec.superuser, osUser: osUser, uid: uid, gid: gid,
            directory: directory, dataDirectory: dataDirectory, socketDirectory: socketDirectory, logFile: logFile, port: port,
            desiredState: desiredState, createdAt: createdAt, failureReason: nil, suspendAfter: spec.suspendAfter, limits: spec.limits,
            network: spec.network
        )
    }

    /// What the tenant is, as it was created (and changed since).
    public var spec: TenantSpec {
        get throws {
            TenantSpec(
                name: try TenantName(validating: name), bundle: .id(bundleID), superuser: superuser, suspendAfter: suspendAfter, limits: limits,
                network: sandboxNetwork
            )
        }
    }

    /// The columns `init(columnsOf:)` reads.
    static let selection = CodingKeys.allCases.map(\.rawValue).joined(separator: ", ")

    /// A row of `SELECT \(selection)`, read column by column by name (a migration may add or
    /// reorder columns). Values convert as GRDB's `Decodable` support converts them (dates too);
    /// a NULL or a mistyped value throws as it does there; an optional column an older schema
    /// lacks reads as nil.
    init(columnsOf row: Row) throws {
        func value<Value: DatabaseValueConvertible>(_ key: CodingKeys) throws -> Value {
            try row.decode(Value.self, forColumn: key.rawValue)
        }
        let desiredState: String = try value(.desiredState)
        guard let desired = DesiredState(rawValue: desiredState) else {
            throw FleetError.failed("catalog: tenant row with an unknown desired state \"\(desiredState.debugClipped)\"")
        }
        self.init(
            id: try value(.id), name: try value(.name), bundleID: try value(.bundleID), superuser: try value(.superuser),
            osUser: try value(.osUser), uid: try value(.uid), gid: try value(.gid), directory: try value(.directory),
            dataDirectory: try value(.dataDirectory), socketDirectory: try value(.socketDirectory), logFile: try value(.logFile),
            port: try value(.port), desiredState: desired, createdAt: try value(.createdAt), failureReason: try value(.failureReason),
            suspended: try value(.suspended), suspendAfter: try value(.suspendAfter)
        )
        cpuMillicores = try value(.cpuMillicores)
        memoryBytes = try value(.memoryBytes)
        pidsMax = try value(.pidsMax)
        ioWeight = try value(.ioWeight)
        diskBytes = try value(.diskBytes)
        network = try value(.network)
        shmBytes = try value(.shmBytes)
        hugePages = try value(.hugePages)
    }
}

/// A daemon fact (table `meta`), e.g. "instance_id".
struct MetaRecord: Codable, Sendable, FetchableRecord, PersistableRecord {
    var key: String
    var value: String

    static let databaseTableName = "meta"

    enum Columns {
        static let key = Column("key")
    }
}

/// A tenant's collation fingerprint (table `tenant_collation`), as JSON: its shape is FleetCore's.
struct TenantCollationRecord: Codable, Sendable, FetchableRecord, PersistableRecord {
    var tenantID: Int64
    var fingerprint: String
    var collectedAt: Date

    static let databaseTableName = "tenant_collation"

    enum CodingKeys: String, CodingKey {
        case tenantID = "tenant_id"
        case fingerprint
        case collectedAt = "collected_at"
    }

    init(tenantID: Int64, fingerprint: CollationFingerprint) throws {
        self.tenantID = tenantID
        self.fingerprint = String(decoding: try Self.encoder.encode(fingerprint), as: UTF8.self)
        self.collectedAt = fingerprint.collectedAt
    }

    func decoded() throws -> CollationFingerprint {
        try Self.decoder.decode(CollationFingerprint.self, from: Data(fingerprint.utf8))
    }

    private static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = .sortedKeys
        return encoder
    }

    private static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}
