import FleetCore
import Metrics
import Synchronization

/// The proxy's metrics, through swift-metrics (the executable decides where they go).
///
/// A metric made from its label and dimensions is looked up in the backend's registry (a lock, a
/// dictionary keyed by strings) every time; a login touches half a dozen of them, so each
/// tenant's are made once and kept here.
final class ProxyMetrics: Sendable {
    /// One tenant's metrics.
    final class TenantMetrics: Sendable {
        let connectionsTotal: Counter
        let connectionsOpen: Gauge
        let bytes: ByteCounters

        init(_ tenant: TenantName) {
            let name = tenant.rawValue
            connectionsTotal = Counter(label: "pgfleet_proxy_connections_total", dimensions: [("tenant", name)])
            connectionsOpen = Gauge(label: "pgfleet_proxy_connections", dimensions: [("tenant", name)])
            bytes = ByteCounters(
                clientToServer: Counter(label: "pgfleet_proxy_bytes_total", dimensions: [("tenant", name), ("direction", "client_to_server")]),
                serverToClient: Counter(label: "pgfleet_proxy_bytes_total", dimensions: [("tenant", name), ("direction", "server_to_client")])
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
    /// Made on first use too: the metrics backend may be set up after the proxy is made.
    private let serverSessions = Mutex<[ServerSessionKind: Counter]>([:])

    /// `tenant`'s metrics, made on first use.
    func tenant(_ tenant: TenantName) -> TenantMetrics {
        if let known = tenants.withLock({ $0[tenant] }) { return known }
        // Made outside the lock: the backend takes locks of its own.
        let made = TenantMetrics(tenant)
        return tenants.withLock { tenants in
            if let known = tenants[tenant] { return known }
            tenants[tenant] = made
            return made
        }
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
            let made = Counter(label: "pgfleet_proxy_server_sessions_total", dimensions: [("kind", kind.rawValue)])
            counters[kind] = made
            return made
        }
        counter.increment()
    }

    func handshakeFailed(_ error: ProxyError) {
        Counter(label: "pgfleet_proxy_handshake_failures_total", dimensions: [("kind", error.metricLabel)]).increment()
    }

    /// A client that found its tenant out of connection slots (53300) got a session after
    /// waiting (`served`) or the tenant's refusal (`refused`). Rare: made on use.
    func slotWaitEnded(_ tenant: TenantName, served: Bool) {
        Counter(label: "pgfleet_proxy_slot_waits_total", dimensions: [("tenant", tenant.rawValue), ("outcome", served ? "served" : "refused")])
            .increment()
    }

    func cancelForwarded(_ found: Bool) {
        Counter(label: "pgfleet_proxy_cancel_requests_total", dimensions: [("result", found ? "forwarded" : "unknown_key")]).increment()
    }
}
