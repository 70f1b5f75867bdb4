import FleetCore
import Metrics

/// The proxy's metrics, through swift-metrics (the executable decides where they go).
struct ProxyMetrics: Sendable {
    func opened(_ tenant: TenantName, open: Int) {
        Counter(label: "pgfleet_proxy_connections_total", dimensions: [("tenant", tenant.rawValue)]).increment()
        Gauge(label: "pgfleet_proxy_connections", dimensions: [("tenant", tenant.rawValue)]).record(open)
    }

    func closed(_ tenant: TenantName, open: Int) {
        Gauge(label: "pgfleet_proxy_connections", dimensions: [("tenant", tenant.rawValue)]).record(open)
    }

    /// A connection's byte counters, made once when its tenant is known and counted as bytes
    /// flow (an atomic add each), so a long session shows its traffic while it lasts.
    struct ByteCounters {
        let clientToServer: Counter
        let serverToClient: Counter
    }

    func byteCounters(_ tenant: TenantName) -> ByteCounters {
        ByteCounters(
            clientToServer: Counter(label: "pgfleet_proxy_bytes_total", dimensions: [("tenant", tenant.rawValue), ("direction", "client_to_server")]),
            serverToClient: Counter(label: "pgfleet_proxy_bytes_total", dimensions: [("tenant", tenant.rawValue), ("direction", "server_to_client")])
        )
    }

    enum ServerSessionKind: String {
        /// A pooled server connection lent again.
        case reused
        /// A new server connection opened by the proxy for the pool.
        case opened
        /// A connection of the client's own (pooling off, or no SCRAM verifier for the user).
        case direct
    }

    func serverSession(_ kind: ServerSessionKind) {
        Counter(label: "pgfleet_proxy_server_sessions_total", dimensions: [("kind", kind.rawValue)]).increment()
    }

    func handshakeFailed(_ error: ProxyError) {
        Counter(label: "pgfleet_proxy_handshake_failures_total", dimensions: [("kind", error.metricLabel)]).increment()
    }

    func cancelForwarded(_ found: Bool) {
        Counter(label: "pgfleet_proxy_cancel_requests_total", dimensions: [("result", found ? "forwarded" : "unknown_key")]).increment()
    }
}
