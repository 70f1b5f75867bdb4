/// The ready pool's bookkeeping: which pre-initialised clusters each bundle has, which bundle to
/// build one for next, and claims. Pure: `ReadyPool` in FleetSupervisor does the I/O and passes
/// the time in.
public struct ReadyPoolState: Sendable, Equatable {
    /// Ready clusters kept per bundle; 0 turns the pool off.
    public let size: Int
    /// Entry names per bundle, oldest first.
    public private(set) var ready: [String: [String]] = [:]
    /// The bundle an entry is being built for: one initdb at a time, so the pool never takes
    /// more than one core from the tenants.
    public private(set) var building: String?
    /// After a failed build a bundle waits until then, so a broken bundle cannot keep a core busy.
    public private(set) var retryAt: [String: Duration] = [:]

    public static let retryDelay: Duration = .seconds(30)

    public init(size: Int) {
        self.size = max(0, size)
    }

    /// Entries found on disk at start-up (left by the previous daemon).
    public mutating func found(bundle: String, entries: [String]) {
        ready[bundle, default: []].append(contentsOf: entries.filter { !ready[bundle, default: []].contains($0) })
    }

    /// Takes the oldest ready entry of `bundle`, if any. Never returns one entry twice.
    public mutating func claim(bundle: String) -> String? {
        guard var entries = ready[bundle], !entries.isEmpty else { return nil }
        let entry = entries.removeFirst()
        ready[bundle] = entries
        return entry
    }

    /// The bundle to build an entry for now, or nil: nothing while an entry is building or a
    /// tenant is being created (that create wants the CPU and the disk), else the bundle furthest
    /// below `size` (ties: in the order given) that is not waiting after a failure.
    public func nextBuild(bundles: [String], createsInProgress: Int, now: Duration) -> String? {
        guard size > 0, building == nil, createsInProgress == 0 else { return nil }
        var best: (bundle: String, count: Int)?
        for bundle in bundles {
            let count = ready[bundle]?.count ?? 0
            guard count < size else { continue }
            if let at = retryAt[bundle], now < at { continue }
            if best == nil || count < best!.count { best = (bundle, count) }
        }
        return best?.bundle
    }

    public mutating func buildStarted(bundle: String) {
        building = bundle
    }

    /// `entry` is the new ready entry, or nil when the build failed.
    public mutating func buildFinished(bundle: String, entry: String?, now: Duration) {
        building = nil
        if let entry {
            ready[bundle, default: []].append(entry)
            retryAt[bundle] = nil
        } else {
            retryAt[bundle] = now + Self.retryDelay
        }
    }

    /// Forgets every bundle not in `bundles` (removed from the catalog) and returns their entries,
    /// so that their directories can be removed.
    public mutating func keepOnly(bundles: Set<String>) -> [String: [String]] {
        var removed: [String: [String]] = [:]
        for (bundle, entries) in ready where !bundles.contains(bundle) {
            removed[bundle] = entries
            ready[bundle] = nil
            retryAt[bundle] = nil
        }
        return removed
    }

    public func status(bundles: [String]) -> [PoolStatus] {
        bundles.map { PoolStatus(bundle: $0, ready: ready[$0]?.count ?? 0, size: size, building: building == $0) }
    }
}

/// Names of the directories under `ROOT/pool/<bundle>/`: a finished entry is renamed from
/// `building-<token>` to `ready-<token>` in one step, so a crash leaves only `building-*`
/// directories half-made, and the next daemon removes them.
public enum PoolEntryName {
    public static func building(_ token: String) -> String { "building-" + token }
    public static func ready(_ token: String) -> String { "ready-" + token }

    public static func isReady(_ name: String) -> Bool {
        guard name.hasPrefix("ready-") else { return false }
        let token = name.dropFirst("ready-".count)
        return !token.isEmpty && token.utf8.allSatisfy { ($0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z")) || ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9")) }
    }

    /// A random token for a new entry.
    public static func token() -> String {
        var generator = SystemRandomNumberGenerator()
        return String(UInt64.random(in: 0...UInt64.max, using: &generator), radix: 36)
    }
}
