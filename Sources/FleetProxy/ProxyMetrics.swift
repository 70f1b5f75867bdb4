import FleetCore
import Metrics
import Synchronization

/// The proxy's metrics, through swift-metrics (the executable decides where they go).
///
/// A metric made from its label and dimensions is looked up in the backend's registry (a lock, a
/// dictionary keyed by strings) every time; a login touches half a dozen of them, so each
/// tenant's are made once and kept here.
///
/// Only tenants the route source knows get series of their own: a startup packet can name any
/// tenant, and a series per made-up name would let anyone who reaches the port grow the daemon's
/// memory and the scrape without limit. The rest share one series labelled `unknownTenantLabel`.
final class ProxyMetrics: Sendable {
    /// Not a valid tenant name (those start with a letter), so it never clashes with one.
    static let unknownTenantLabel = "_unknown"

    /// One tenant's metrics.
    final class TenantMetrics: Sendable {
        let connectionsTotal: Counter
        let connectionsOpen: Gauge
        let bytes: ByteCounters

        init(label name: String, factory: any MetricsFactory) {
            connectionsTotal = Counter(label: "pgfleet_proxy_connections_total", dimensions: [("tenant", name)], factory: factory)
            connectionsOpen = Gauge(label: "pgfleet_proxy_connections", dimensions: [("tenant", name)], factory: factory)
            bytes = ByteCounters(
                clientToServer: Counter(
                    label: "pgfleet_proxy_bytes_total", dimensions: [("tenant", name), ("direction", "client_to_server")], factory: factory
                ),
                serverToClient: Counter(
                    label: "pgfleet_proxy_bytes_total", dimensions: [("tenant", name), ("direction", "server_to_client")], factory: factory
                )
            )
        }
    }

    /// A connection's byte counters, counted as bytes flow (an atomic add each), so a long
    /// session shows its traffic while it lasts.
    struct ByteCounters: Sendable {
        let clientToServer: Counter
        let serverToClient: Counter
    }

    enum ServerSessionKind: String {
        /// A pooled server connection lent again.
        case reused
        /// A new server connection opened by the proxy for the pool.
        case opened
        /// A connection of the client's own (pooling off, or no SCRAM verifier for the user).
        case direct
    }

    private let tenants = Mutex<[TenantName: TenantMetrics]>([:])
    private let unknownConnections = Mutex<Counter?>(nil)
    /// Made on first use too: the metrics backend may be set up after the proxy is made.
    private let serverSessions = Mutex<[ServerSessionKind: Counter]>([:])
    /// Nil: the global backend, looked up when a metric is made (it may be bootstrapped after
    /// the proxy is made). Tests pass one of their own.
    private let injectedFactory: (any MetricsFactory)?

    init(factory: (any MetricsFactory)? = nil) {
        injectedFactory = factory
    }

    private var factory: any MetricsFactory { injectedFactory ?? MetricsSystem.factory }

    /// `tenant`'s metrics, made on first use. Call it only for a tenant the route source knows
    /// (see the type's comment); others count under `openedUnknownTenant()`.
    func tenant(_ tenant: TenantName) -> TenantMetrics {
        if let known = tenants.withLock({ $0[tenant] }) { return known }
        // Made outside the lock: the backend takes locks of its own.
        let made = TenantMetrics(label: tenant.rawValue, factory: factory)
        return tenants.withLock { tenants in
            if let known = tenants[tenant] { return known }
            tenants[tenant] = made
            return made
        }
    }

    /// A connection naming a tenant the route source does not know: one series for all of them.
    /// Such a client never reaches a server, so it has no bytes or open count to show.
    func openedUnknownTenant() {
        let counter = unknownConnections.withLock { counter in
            if let counter { return counter }
            let made = Counter(label: "pgfleet_proxy_connections_total", dimensions: [("tenant", Self.unknownTenantLabel)], factory: factory)
            counter = made
            return made
        }
        counter.increment()
    }

    func opened(_ metrics: TenantMetrics, open: Int) {
        metrics.connectionsTotal.increment()
        metrics.connectionsOpen.record(open)
    }

    func closed(_ metrics: TenantMetrics, open: Int) {
        metrics.connectionsOpen.record(open)
    }

    func serverSession(_ kind: ServerSessionKind) {
        let counter = serverSessions.withLock { counters in
            if let known = counters[kind] { return known }
            let made = Counter(label: "pgfleet_proxy_server_sessions_total", dimensions: [("kind", kind.rawValue)], factory: factory)
            counters[kind] = made
            return made
        }
        counter.increment()
    }

    func handshakeFailed(_ error: ProxyError) {
        Counter(label: "pgfleet_proxy_handshake_failures_total", dimensions: [("kind", error.metricLabel)], factory: factory).increment()
    }

    /// A client that found its tenant out of connection slots (53300) got a session after
    /// waiting (`served`) or the tenant's refusal (`refused`). Rare: made on use.
    func slotWaitEnded(_ tenant: TenantName, served: Bool) {
        Counter(
            label: "pgfleet_proxy_slot_waits_total", dimensions: [("tenant", tenant.rawValue), ("outcome", served ? "served" : "refused")],
            factory: factory
        ).increment()
    }

    func cancelForwarded(_ found: Bool) {
        Counter(label: "pgfleet_proxy_cancel_requests_total", dimensions: [("result", found ? "forwarded" : "unknown_key")], factory: factory)
            .increment()
    }
}
