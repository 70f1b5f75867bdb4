import FleetCore
import Testing

@testable import FleetProxy

@Suite struct CancelRegistryTests {
    let acme = try! TenantName(validating: "acme")
    let other = try! TenantName(validating: "other")

    @Test func issuedKeysAreRandomAndMapToExactlyOneBackend() {
        let registry = CancelRegistry()
        let target = CancelRegistry.Target(tenant: acme, socketPath: "/a/.s.PGSQL.5432", processID: 4242, secretKey: [1, 2, 3, 4])
        let first = registry.register(target)
        let second = registry.register(CancelRegistry.Target(tenant: other, socketPath: "/o/.s.PGSQL.5432", processID: 4242, secretKey: [1, 2, 3, 4]))
        #expect(first != second)
        #expect(first.processID != 4242 || first.secret != [1, 2, 3, 4])
        #expect(registry.lookup(first) == target)
        #expect(registry.lookup(second)?.tenant == other)
        // A key with the right pid and a wrong secret finds nothing.
        #expect(registry.lookup(CancelRegistry.Key(processID: first.processID, secret: [0, 0, 0, 0])) == nil)
        registry.remove(first)
        #expect(registry.lookup(first) == nil)
        #expect(registry.count == 1)
    }
}

@Suite struct ConnectionLimitsTests {
    @Test func totalAndPerTenantCaps() throws {
        let limits = ConnectionLimits(maxTotal: 3, maxPerTenant: 2)
        let acme = try TenantName(validating: "acme")
        #expect(limits.acquireConnection() && limits.acquireConnection() && limits.acquireConnection())
        #expect(!limits.acquireConnection())
        limits.releaseConnection()
        #expect(limits.acquireConnection())
        #expect(limits.acquire(tenant: acme) && limits.acquire(tenant: acme))
        #expect(!limits.acquire(tenant: acme))
        limits.release(tenant: acme)
        #expect(limits.connections(of: acme) == 1)
        #expect(limits.acquire(tenant: acme))
        #expect(ProxyError.tooManyTenantConnections("acme").sqlstate == "53300")
    }
}
