import Foundation

/// Who sorts a database's or a collation's text. Values are PostgreSQL's own letters
/// (pg_database.datlocprovider, pg_collation.collprovider): "c" libc, "i" ICU, "b" builtin.
public enum CollationProvider: String, Codable, Sendable, Equatable {
    case libc = "c"
    case icu = "i"
    case builtin = "b"

    public var name: String {
        switch self {
        case .libc: "libc"
        case .icu: "icu"
        case .builtin: "builtin"
        }
    }
}

/// An index whose order a libc or ICU upgrade can change: one of its columns uses a versioned
/// collation (the database's default or another).
public struct CollationIndex: Codable, Sendable, Hashable, Comparable {
    public var database: String
    public var schema: String
    public var name: String
    /// The provider whose version it depends on: libc or ICU (never builtin, C or POSIX).
    public var provider: CollationProvider

    public init(database: String, schema: String, name: String, provider: CollationProvider) {
        self.database = database
        self.schema = schema
        self.name = name
        self.provider = provider
    }

    /// `db.schema.index`, as listed to the operator.
    public var qualified: String { "\(database).\(schema).\(name)" }

    public static func < (a: CollationIndex, b: CollationIndex) -> Bool { a.qualified < b.qualified }
}

/// A non-default collation some index uses (pg_collation).
public struct CollationInUse: Codable, Sendable, Equatable {
    public var name: String
    public var schema: String
    public var provider: CollationProvider
    public var version: String?

    public init(name: String, schema: String, provider: CollationProvider, version: String?) {
        self.name = name
        self.schema = schema
        self.provider = provider
        self.version = version
    }
}

/// One database's collation facts (pg_database), as read over its own session.
public struct DatabaseCollation: Codable, Sendable, Equatable {
    public var name: String
    /// datlocprovider (15+); libc on 14.
    public var provider: CollationProvider
    public var collate: String
    public var ctype: String
    /// daticulocale (15, 16) or datlocale (17+).
    public var locale: String?
    /// datcollversion (15+).
    public var collationVersion: String?
    public var collations: [CollationInUse]
    public var indexes: [CollationIndex]

    public init(
        name: String, provider: CollationProvider, collate: String, ctype: String, locale: String?, collationVersion: String?,
        collations: [CollationInUse] = [], indexes: [CollationIndex] = []
    ) {
        self.name = name
        self.provider = provider
        self.collate = collate
        self.ctype = ctype
        self.locale = locale
        self.collationVersion = collationVersion
        self.collations = collations
        self.indexes = indexes
    }
}

/// What a tenant's text order depends on, recorded after it ran on a bundle on this host.
public struct CollationFingerprint: Codable, Sendable, Equatable {
    public var bundleID: String
    /// The bundle's ICU (BundleRecord.icuVersion); nil: built without ICU.
    public var icuVersion: String?
    /// The host's glibc when it was collected.
    public var glibcVersion: String?
    public var collectedAt: Date
    public var databases: [DatabaseCollation]
    /// Databases the daemon's role could not connect to (CONNECT revoked): their indexes are unknown.
    public var unreadable: [String]

    public init(bundleID: String, icuVersion: String?, glibcVersion: String?, collectedAt: Date, databases: [DatabaseCollation], unreadable: [String] = []) {
        self.bundleID = bundleID
        self.icuVersion = icuVersion
        self.glibcVersion = glibcVersion
        self.collectedAt = collectedAt
        self.databases = databases
        self.unreadable = unreadable
    }

    /// Every index a libc or ICU change can reorder, sorted.
    /// An index with both libc and ICU columns is listed once (as ICU's).
    public var indexes: [CollationIndex] { Self.unique(databases.flatMap(\.indexes)) }

    static func unique(_ indexes: [CollationIndex]) -> [CollationIndex] {
        var seen: Set<String> = []
        return indexes.sorted { $0.qualified != $1.qualified ? $0.qualified < $1.qualified : $0.provider == .icu }.filter { seen.insert($0.qualified).inserted }
    }

    /// Whether any database or collation in use is ICU's (such a tenant cannot run without ICU).
    public var usesICU: Bool {
        databases.contains { $0.provider == .icu || $0.collations.contains { $0.provider == .icu } }
    }

    /// "libc", "icu", "builtin" or a mix such as "libc+icu", over the databases and collations in use.
    public var providerSummary: String {
        var seen: [CollationProvider] = []
        for provider in databases.flatMap({ [$0.provider] + $0.collations.map(\.provider) }) where !seen.contains(provider) {
            seen.append(provider)
        }
        return seen.isEmpty ? "unknown" : seen.map(\.name).joined(separator: "+")
    }
}

/// Where a tenant is about to run: its bundle and the libraries that sort its text there.
public struct CollationTarget: Sendable, Equatable {
    public var bundleID: String
    public var major: Int
    /// The ICU the target bundle uses (vendored, or the host's for an unvendored bundle); nil: none.
    public var icuVersion: String?
    public var glibcVersion: String?

    public init(bundleID: String, major: Int, icuVersion: String?, glibcVersion: String?) {
        self.bundleID = bundleID
        self.major = major
        self.icuVersion = icuVersion
        self.glibcVersion = glibcVersion
    }
}

/// Decides whether a tenant may run on a target without its indexes silently going out of order.
public enum CollationGuard {
    public enum Verdict: Sendable, Equatable {
        /// Nothing that sorts the tenant's indexes changes.
        case fine
        /// The target cannot run the tenant at all: ICU databases (or collations) on a bundle without ICU.
        case lacksProvider(provider: CollationProvider, databases: [String])
        /// The library versions differ and these indexes may be out of order; nothing was done.
        case versionsDiffer(changes: [String], indexes: [CollationIndex])
        /// As `versionsDiffer`, with the reindex asked for: exactly these indexes to rebuild.
        case reindex(changes: [String], indexes: [CollationIndex])
    }

    public static func decide(recorded: CollationFingerprint, target: CollationTarget, reindex: Bool) -> Verdict {
        let icuDatabases = recorded.databases.filter { $0.provider == .icu || $0.collations.contains { $0.provider == .icu } }.map(\.name)
        if target.icuVersion == nil && !icuDatabases.isEmpty {
            return .lacksProvider(provider: .icu, databases: icuDatabases.sorted())
        }
        var changes: [String] = []
        var affected: Set<CollationIndex> = []
        let indexes = recorded.databases.flatMap(\.indexes)
        if let before = recorded.glibcVersion, let after = target.glibcVersion, before != after {
            let libc = indexes.filter { $0.provider == .libc }
            if !libc.isEmpty {
                changes.append("glibc \(before) → \(after)")
                affected.formUnion(libc)
            }
        }
        if let before = recorded.icuVersion, let after = target.icuVersion, before != after {
            let icu = indexes.filter { $0.provider == .icu }
            if !icu.isEmpty {
                changes.append("ICU \(before) → \(after)")
                affected.formUnion(icu)
            }
        }
        if affected.isEmpty { return .fine }
        let sorted = CollationFingerprint.unique(Array(affected))
        return reindex ? .reindex(changes: changes, indexes: sorted) : .versionsDiffer(changes: changes, indexes: sorted)
    }

    /// The refusal's text: what changed, which indexes, and the command that fixes it.
    public static func refusal(_ verdict: Verdict, tenant: String, target: CollationTarget) -> String? {
        switch verdict {
        case .fine, .reindex:
            return nil
        case .lacksProvider(let provider, let databases):
            return "tenant \(tenant) has \(provider.name) collations (database\(databases.count == 1 ? "" : "s") \(databases.joined(separator: ", "))) "
                + "and bundle \(target.bundleID) is built without ICU, so PostgreSQL would refuse them; nothing was changed. "
                + "Use a bundle with ICU (`pgfleet bundle list` shows each one's ICU)"
        case .versionsDiffer(let changes, let indexes):
            let shown = indexes.prefix(20).map(\.qualified).joined(separator: ", ")
            let more = indexes.count > 20 ? " and \(indexes.count - 20) more" : ""
            return "tenant \(tenant)'s text order may have changed (\(changes.joined(separator: ", "))): \(indexes.count) index"
                + "\(indexes.count == 1 ? "" : "es") may be out of order: \(shown)\(more); nothing was changed. "
                + "Rebuild and verify them with `pgfleet tenant update \(tenant) --bundle \(target.bundleID) --reindex`"
        }
    }
}
