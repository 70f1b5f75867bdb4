import FleetCore
import Metrics

/// The proxy's metrics, through swift-metrics (the executable decides where they go).
struct ProxyMetrics: Sendable {
    func opened(_ tenant: TenantName, open: Int) {
        Counter(label: "pgfleet_proxy_connections_total", dimensions: [("tenant", tenant.rawValue)]).increment()
        Gauge(label: "pgfleet_proxy_connections", dimensions: [("tenant", tenant.rawValue)]).record(open)
    }

    func closed(_ tenant: TenantName, open: Int, clientToServer: Int, serverToClient: Int) {
        Gauge(label: "pgfleet_proxy_connections", dimensions: [("tenant", tenant.rawValue)]).record(open)
        Counter(label: "pgfleet_proxy_bytes_total", dimensions: [("tenant", tenant.rawValue), ("direction", "client_to_server")])
            .increment(by: clientToServer)
        Counter(label: "pgfleet_proxy_bytes_total", dimensions: [("tenant", tenant.rawValue), ("direction", "server_to_client")])
            .increment(by: serverToClient)
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
