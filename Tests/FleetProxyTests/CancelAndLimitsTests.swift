import FleetCore
import Testing

@testable import FleetProxy

@Suite struct CancelRegistryTests {
    let acme = try! TenantName(validating: "acme")
    let other = try! TenantName(validating: "other")

    @Test func clientsGetTheBackendsPidWithASecretOfTheProxys() {
        let registry = CancelRegistry()
        let target = CancelRegistry.Target(tenant: acme, socketPath: "/a/.s.PGSQL.5432", processID: 4242, secretKey: [1, 2, 3, 4])
        let first = registry.register(target)
        // The same backend lent again (a pooled session) and another tenant's backend with the
        // same pid: each gets a key of its own.
        let again = registry.register(target)
        let second = registry.register(CancelRegistry.Target(tenant: other, socketPath: "/o/.s.PGSQL.5432", processID: 4242, secretKey: [1, 2, 3, 4]))
        #expect(first.processID == 4242 && again.processID == 4242 && second.processID == 4242)
        #expect(Set([first, again, second]).count == 3)
        #expect(first.secret != [1, 2, 3, 4] && first.secret.count == 4)
        #expect(registry.lookup(first) == target)
        #expect(registry.lookup(again) == target)
        #expect(registry.lookup(second)?.tenant == other)
        // The right pid with a wrong secret, or the right secret with another pid, finds nothing.
        #expect(registry.lookup(CancelRegistry.Key(processID: 4242, secret: [0, 0, 0, 0])) == nil)
        #expect(registry.lookup(CancelRegistry.Key(processID: 4243, secret: first.secret)) == nil)
        // Nor does the backend's own key: only the proxy's reaches it.
        #expect(registry.lookup(CancelRegistry.Key(processID: 4242, secret: [1, 2, 3, 4])) == nil)
        registry.remove(first)
        #expect(registry.lookup(first) == nil)
        #expect(registry.lookup(again) == target)
        #expect(registry.count == 2)
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
