import FleetCore
#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Testing

@Suite struct RouteCacheTests {
    let acme = try! TenantName(validating: "acme")
    let beta = try! TenantName(validating: "beta")

    /// A clock and a set of socket files the test moves and changes by hand.
    final class World: Sendable {
        let start = ContinuousClock.now
        let offset = Mutex<Duration>(.zero)
        let sockets = Mutex<Set<String>>([])
        var now: ContinuousClock.Instant { start + offset.withLock { $0 } }
        func advance(_ by: Duration) { offset.withLock { $0 += by } }
        func cache(ttl: Duration = .seconds(3)) -> RouteCache {
            RouteCache(ttl: ttl, now: { self.now }, socketExists: { path in self.sockets.withLock { $0.contains(path) } })
        }
    }

    @Test func anAvailableRouteIsKeptUntilItExpires() {
        let world = World()
        let cache = world.cache()
        world.sockets.withLock { _ = $0.insert("/a/.s.PGSQL.5432") }
        #expect(cache.route(for: acme) == nil)
        cache.store(.available(socketPath: "/a/.s.PGSQL.5432"), for: acme)
        #expect(cache.route(for: acme) == .available(socketPath: "/a/.s.PGSQL.5432"))
        #expect(cache.route(for: beta) == nil)
        world.advance(.milliseconds(2999))
        #expect(cache.route(for: acme) == .available(socketPath: "/a/.s.PGSQL.5432"))
        world.advance(.milliseconds(2))
        #expect(cache.route(for: acme) == nil)
        #expect(cache.count == 0, "an expired entry is dropped when seen")
    }

    /// PostgreSQL removes its socket when it shuts down: a tenant stopped or suspended since the
    /// route was kept must be asked about again, not reached through a dead socket.
    @Test func aRouteWhoseSocketIsGoneIsNotUsed() {
        let world = World()
        let cache = world.cache()
        world.sockets.withLock { _ = $0.insert("/a/.s.PGSQL.5432") }
        cache.store(.available(socketPath: "/a/.s.PGSQL.5432"), for: acme)
        world.sockets.withLock { _ = $0.remove("/a/.s.PGSQL.5432") }
        #expect(cache.route(for: acme) == nil)
        world.sockets.withLock { _ = $0.insert("/a/.s.PGSQL.5432") }
        #expect(cache.route(for: acme) == nil, "once missed, the entry is gone")
    }

    @Test func otherAnswersAreNotKeptAndReplaceAKeptOne() {
        let world = World()
        let cache = world.cache()
        world.sockets.withLock { _ = $0.insert("/a/.s.PGSQL.5432") }
        for route in [TenantRoute.stopped, .suspended, .unknown, .failed, .wakeRefused, .unavailable(.starting)] {
            cache.store(route, for: acme)
            #expect(cache.route(for: acme) == nil)
        }
        cache.store(.available(socketPath: "/a/.s.PGSQL.5432"), for: acme)
        cache.store(.suspended, for: acme)
        #expect(cache.route(for: acme) == nil)
        #expect(cache.count == 0)
    }

    @Test func forgetDropsOneTenant() {
        let world = World()
        let cache = world.cache()
        world.sockets.withLock { $0.formUnion(["/a/.s.PGSQL.5432", "/b/.s.PGSQL.5432"]) }
        cache.store(.available(socketPath: "/a/.s.PGSQL.5432"), for: acme)
        cache.store(.available(socketPath: "/b/.s.PGSQL.5432"), for: beta)
        cache.forget(acme)
        #expect(cache.route(for: acme) == nil)
        #expect(cache.route(for: beta) == .available(socketPath: "/b/.s.PGSQL.5432"))
    }

    @Test func isSocketTellsSocketsFromFiles() throws {
        #expect(!RouteCache.isSocket("/nonexistent/.s.PGSQL.5432"))
        #expect(!RouteCache.isSocket("/etc/hostname"))
        #expect(!RouteCache.isSocket("/tmp"))
        let path = "/tmp/pgfleet-route-cache-\(UInt32.random(in: 0..<UInt32.max)).sock"
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd); unlink(path) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        try #require(bound == 0)
        #expect(RouteCache.isSocket(path))
        unlink(path)
        #expect(!RouteCache.isSocket(path))
    }
}
