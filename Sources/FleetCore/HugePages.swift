/// `--huge-pages`: whether a tenant's postmaster maps its main shared memory on huge pages.
/// `try` uses them when the host's pool can give every page the tenant needs, and starts on
/// normal pages otherwise; `on` refuses to start without them; `off` never uses them.
public enum HugePagesMode: String, Sendable, Equatable, Codable, CaseIterable {
    case off
    case `try`
    case on

    public init(validating text: String, field: String = "--huge-pages") throws(FleetError) {
        guard let mode = HugePagesMode(rawValue: text.trimmingCharacters(in: .whitespaces).lowercased()) else {
            throw FleetError.invalidRequest("\(field) takes off, try or on, not \"\(text.debugClipped)\"")
        }
        self = mode
    }
}

/// The host's pool of huge pages of one size, as `/sys/kernel/mm/hugepages/hugepages-<size>kB` tells it.
public struct HugePagePool: Sendable, Equatable {
    public var pageBytes: UInt64
    /// `nr_hugepages`: the persistent pool.
    public var total: Int
    /// Pages no process has touched yet (`free_hugepages`), some of which are promised.
    public var free: Int
    /// Pages promised to mappings that have not touched them yet (`resv_hugepages`).
    public var reserved: Int

    public init(pageBytes: UInt64, total: Int, free: Int, reserved: Int) {
        self.pageBytes = pageBytes
        self.total = total
        self.free = free
        self.reserved = reserved
    }

    /// Pages a new mapping can still reserve.
    public var available: Int { max(0, free - reserved) }

    /// "2MB", "1GB": how the kernel names the size in hugetlb cgroup files.
    public var sizeName: String { HugePagePool.sizeName(pageBytes) }

    public static func sizeName(_ bytes: UInt64) -> String {
        if bytes >= 1 << 30, bytes % (1 << 30) == 0 { return "\(bytes >> 30)GB" }
        if bytes >= 1 << 20, bytes % (1 << 20) == 0 { return "\(bytes >> 20)MB" }
        return "\(bytes >> 10)KB"
    }
}

/// What pgfleet gives one tenant at a start: every page its shared memory needs, limited to
/// exactly those by its hugetlb cgroup (usage and reservation), or none at all.
public enum HugePagesGrant: Sendable, Equatable {
    /// The postmaster runs with `huge_pages=on` (mode `on`) or `try` and a hugetlb limit of `pages`.
    case pages(Int, pageBytes: UInt64)
    /// `huge_pages=off`, hugetlb limit 0; `note` says why when the tenant asked for them.
    case without(note: String?)

    public var pages: Int {
        if case .pages(let pages, _) = self { return pages }
        return 0
    }
}

/// The one decision for huge pages at a start, from what the tenant asked for, what it needs and
/// what the host has. Pure: `Fleet+HugePages` reads the inputs and carries the outcome out.
public enum HugePagesDecision {
    public struct Inputs: Sendable, Equatable {
        public var mode: HugePagesMode
        /// `shared_memory_size_in_huge_pages`; nil when PostgreSQL cannot say (before 15).
        public var neededPages: Int?
        /// Nil when there is no pool of the default size at all.
        public var pool: HugePagePool?
        /// Pages already granted to the other running tenants (they may not all be reserved yet).
        public var grantedToOthers: Int
        /// Why huge pages cannot be limited here (no reservation limit: kernel before 5.7, no
        /// hugetlb controller reachable); nil when they can.
        public var unlimitable: String?

        public init(mode: HugePagesMode, neededPages: Int?, pool: HugePagePool?, grantedToOthers: Int = 0, unlimitable: String? = nil) {
            self.mode = mode
            self.neededPages = neededPages
            self.pool = pool
            self.grantedToOthers = grantedToOthers
            self.unlimitable = unlimitable
        }
    }

    /// A grant, or for `on` a refusal (`FleetError.invalidRequest` with the numbers).
    public static func decide(_ inputs: Inputs) throws(FleetError) -> HugePagesGrant {
        if inputs.mode == .off { return .without(note: nil) }
        func without(_ why: String) throws(FleetError) -> HugePagesGrant {
            if inputs.mode == .on { throw FleetError.invalidRequest("huge pages (--huge-pages on) cannot be given: \(why); use --huge-pages try or off") }
            return .without(note: "started without huge pages: \(why)")
        }
        if let unlimitable = inputs.unlimitable { return try without(unlimitable) }
        guard let needed = inputs.neededPages else {
            return try without("this PostgreSQL cannot report how many huge pages it needs (shared_memory_size_in_huge_pages is 15 or later)")
        }
        guard let pool = inputs.pool, pool.total > 0 else {
            return try without("the host has no huge page pool (vm.nr_hugepages is 0; `serve --huge-pages-pool` manages one)")
        }
        guard needed > 0 else { return try without("PostgreSQL reports no huge page size for this host") }
        let size = ByteSize.format(pool.pageBytes)
        // What is free now, less what other tenants were granted but may not have reserved yet.
        let promisedElsewhere = max(0, inputs.grantedToOthers - pool.reserved - (pool.total - pool.free))
        let available = max(0, pool.available - promisedElsewhere)
        if needed > available {
            return try without("needs \(needed) × \(size) pages, \(available) free (pool \(pool.total), \(pool.total - pool.free) in use, \(pool.reserved) reserved)")
        }
        if inputs.grantedToOthers + needed > pool.total {
            return try without("needs \(needed) × \(size) pages; the other tenants hold \(inputs.grantedToOthers) of the pool's \(pool.total)")
        }
        return .pages(needed, pageBytes: pool.pageBytes)
    }

    /// The `huge_pages` setting the postmaster is started with (its command line wins over
    /// postgresql.auto.conf, so a tenant's superuser cannot ask for pages it was not given).
    public static func setting(mode: HugePagesMode, grant: HugePagesGrant) -> String {
        guard grant.pages > 0 else { return "off" }
        return mode == .on ? "on" : "try"
    }
}
