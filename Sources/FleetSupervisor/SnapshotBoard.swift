import FleetCore
import Synchronization

/// The latest snapshot of every supervised tenant, published by each supervisor whenever its
/// machine changed. Listing, metrics and idle suspension read it under one lock instead of
/// awaiting each supervisor actor in turn: with thousands of tenants those hops made
/// `tenant list` and the once-a-second idle check cost time in proportion to the whole fleet.
public final class SnapshotBoard: Sendable {
    private let snapshots = Mutex<[TenantName: SupervisorSnapshot]>([:])

    public init() {}

    func publish(_ tenant: TenantName, _ snapshot: SupervisorSnapshot) {
        snapshots.withLock { $0[tenant] = snapshot }
    }

    func remove(_ tenant: TenantName) {
        _ = snapshots.withLock { $0.removeValue(forKey: tenant) }
    }

    public func snapshot(of tenant: TenantName) -> SupervisorSnapshot? {
        snapshots.withLock { $0[tenant] }
    }

    /// Tenants in `state` right now.
    public func tenants(in state: TenantState) -> [TenantName] {
        snapshots.withLock { all in all.compactMap { $0.value.state == state ? $0.key : nil } }
    }

    /// How many of `tenants` are in each state (a tenant not on the board is not counted).
    public func countsByState(of tenants: some Sequence<TenantName>) -> [TenantState: Int] {
        snapshots.withLock { all in
            var counts: [TenantState: Int] = [:]
            for tenant in tenants {
                if let snapshot = all[tenant] { counts[snapshot.state, default: 0] += 1 }
            }
            return counts
        }
    }
}
