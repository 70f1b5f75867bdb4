import Synchronization

/// The latest snapshot of every supervised tenant, published by its supervisor after each event.
/// Listing, metrics and idle suspension read it under one lock instead of awaiting each
/// supervisor actor in turn: with thousands of tenants those hops made `tenant list` and the
/// once-a-second idle check cost time in proportion to the whole fleet.
///
/// Each entry belongs to the supervisor that claimed it: a dropped tenant's old supervisor may
/// still finish a pending event, and must not overwrite (or bring back) the entry of a new tenant
/// of the same name.
public final class SnapshotBoard<Snapshot: Sendable>: Sendable {
    private let entries = Mutex<[TenantName: (owner: ObjectIdentifier, snapshot: Snapshot)]>([:])

    public init() {}

    /// A new supervisor takes the tenant's entry, replacing whatever was there.
    public func claim(_ tenant: TenantName, by owner: ObjectIdentifier, _ snapshot: Snapshot) {
        entries.withLock { $0[tenant] = (owner, snapshot) }
    }

    /// Updates the entry if `owner` still holds it; otherwise does nothing.
    public func publish(_ tenant: TenantName, by owner: ObjectIdentifier, _ snapshot: Snapshot) {
        entries.withLock { all in
            if all[tenant]?.owner == owner { all[tenant] = (owner, snapshot) }
        }
    }

    public func remove(_ tenant: TenantName) {
        _ = entries.withLock { $0.removeValue(forKey: tenant) }
    }

    public func snapshot(of tenant: TenantName) -> Snapshot? {
        entries.withLock { $0[tenant]?.snapshot }
    }

    /// Every entry as it is now, taken under one lock, for reading thousands (a tenant list)
    /// without taking the lock for each. A copy: what is published later does not show in it.
    public func current() -> Snapshots {
        // Copy-on-write: O(1) here; a publish while the copy lives copies the table once.
        Snapshots(entries: entries.withLock { $0 })
    }

    public struct Snapshots: Sendable {
        fileprivate let entries: [TenantName: (owner: ObjectIdentifier, snapshot: Snapshot)]

        public subscript(tenant: TenantName) -> Snapshot? {
            entries[tenant]?.snapshot
        }
    }

    /// The tenants whose snapshot matches, in no particular order.
    public func tenants(where matches: (Snapshot) -> Bool) -> [TenantName] {
        entries.withLock { all in all.compactMap { matches($0.value.snapshot) ? $0.key : nil } }
    }

    /// How many of `tenants` fall under each key (a tenant not on the board is not counted).
    public func counts<Key: Hashable>(of tenants: some Sequence<TenantName>, by key: (Snapshot) -> Key) -> [Key: Int] {
        entries.withLock { all in
            var counts: [Key: Int] = [:]
            for tenant in tenants {
                if let entry = all[tenant] { counts[key(entry.snapshot), default: 0] += 1 }
            }
            return counts
        }
    }
}
