import FleetCore
import NIOCore
import NIOPosix
import PGWire

/// Route and wake: finds the tenant's server for a routed client, waking a suspended tenant.
extension ClientConnectionHandler {
    func route(_ request: RouteRequest, negotiate: NegotiateProtocolVersion?, context: ChannelHandlerContext) {
        let tenant = request.tenant
        guard shared.limits.acquire(tenant: tenant) else {
            fail(.tooManyTenantConnections(tenant.rawValue), context: context)
            return
        }
        self.tenant = tenant
        phase = .routing
        let routes = shared.routes
        if let known = routes.cachedRoute(for: tenant) {
            follow(known, request: request, negotiate: negotiate, context: context, woken: false)
            return
        }
        context.eventLoop.makeFutureWithTask { await routes.route(for: tenant) }
            .assumeIsolated().whenSuccess { route in
                self.follow(route, request: request, negotiate: negotiate, context: context, woken: false)
            }
    }

    func follow(_ route: TenantRoute, request: RouteRequest, negotiate: NegotiateProtocolVersion?, context: ChannelHandlerContext, woken: Bool) {
        guard case .routing = phase else { return }
        countConnection(request.tenant, route: route)
        let name = request.tenant.rawValue
        switch route {
        case .available(let socketPath):
            connect(socketPath: socketPath, request: request, negotiate: negotiate, context: context)
        case .suspended where !woken, .unavailable(.starting) where !woken:
            // Suspended, or already waking for another client: wait for the same start.
            wake(request, negotiate: negotiate, context: context)
        case .suspended, .unavailable(.backoff), .unavailable(.failed):
            fail(woken ? .wakeFailed(name) : .tenantUnavailable(name, .backoff), context: context)
        case .wakeRefused: fail(.wakeRateLimited(name), context: context)
        case .unknown: fail(.unknownTenant(name), context: context)
        case .stopped: fail(.tenantStopped(name), context: context)
        case .unavailable(let state): fail(.tenantUnavailable(name, state), context: context)
        case .failed: fail(woken ? .wakeFailed(name) : .tenantFailed(name), context: context)
        }
    }

    /// Counted once the route source has said whether the tenant exists: a made-up name must
    /// not get series of its own (see `ProxyMetrics`).
    func countConnection(_ tenant: TenantName, route: TenantRoute) {
        guard tenantMetrics == nil, !countedUnknown else { return }
        if route == .unknown {
            countedUnknown = true
            shared.metrics.openedUnknownTenant()
            return
        }
        let metrics = shared.metrics.tenant(tenant)
        tenantMetrics = metrics
        shared.metrics.opened(metrics, open: shared.limits.connections(of: tenant))
    }

    /// A suspended tenant: hold the client while the fleet starts it (one start for all waiting
    /// clients), up to the wake timeout instead of the startup timeout.
    func wake(_ request: RouteRequest, negotiate: NegotiateProtocolVersion?, context: ChannelHandlerContext) {
        let tenant = request.tenant
        let limit = shared.configuration.wakeTimeout
        timeout?.cancel()
        timeout = context.eventLoop.assumeIsolated().scheduleTask(in: limit) {
            guard case .routing = self.phase else { return }
            self.fail(.wakeTimeout(tenant.rawValue, seconds: limit.nanoseconds / 1_000_000_000), context: context)
        }
        let routes = shared.routes
        context.eventLoop.makeFutureWithTask { await routes.wake(tenant) }
            .assumeIsolated().whenSuccess { route in
                self.follow(route, request: request, negotiate: negotiate, context: context, woken: true)
            }
    }
}
