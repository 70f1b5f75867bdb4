import FleetCore
import Synchronization

/// Caps client connections overall and per tenant.
public final class ConnectionLimits: Sendable {
    public let maxTotal: Int
    public let maxPerTenant: Int
    private struct Counts {
        var total = 0
        var perTenant: [TenantName: Int] = [:]
    }
    private let counts = Mutex(Counts())

    public init(maxTotal: Int, maxPerTenant: Int) {
        self.maxTotal = maxTotal
        self.maxPerTenant = maxPerTenant
    }

    public func acquireConnection() -> Bool {
        counts.withLock { counts in
            guard counts.total < maxTotal else { return false }
            counts.total += 1
            return true
        }
    }

    public func releaseConnection() {
        counts.withLock { $0.total -= 1 }
    }

    public func acquire(tenant: TenantName) -> Bool {
        counts.withLock { counts in
            let current = counts.perTenant[tenant, default: 0]
            guard current < maxPerTenant else { return false }
            counts.perTenant[tenant] = current + 1
            return true
        }
    }

    public func release(tenant: TenantName) {
        counts.withLock { counts in
            let remaining = counts.perTenant[tenant, default: 1] - 1
            counts.perTenant[tenant] = remaining > 0 ? remaining : nil
        }
    }

    public func connections(of tenant: TenantName) -> Int {
        counts.withLock { $0.perTenant[tenant, default: 0] }
    }

    public var total: Int { counts.withLock { $0.total } }
}
