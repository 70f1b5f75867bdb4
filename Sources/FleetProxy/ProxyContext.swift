import FleetCore
import Logging
import NIOCore
import NIOSSL

public struct ProxyConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var tlsMode: TLSMode
    /// Tenants are named by TLS SNI as `<tenant>.<sniDomain>`.
    public var sniDomain: String?
    /// A connection that has not reached its tenant's server by then is closed.
    public var startupTimeout: TimeAmount
    public var maxConnections: Int
    public var maxConnectionsPerTenant: Int
    /// How long a client waits for a suspended tenant to wake before it gets an error.
    public var wakeTimeout: TimeAmount
    /// Server connections kept and lent to the next client of the same tenant, user and database.
    public var pool: PoolConfiguration

    public init(
        host: String = "127.0.0.1", port: Int = 6432, tlsMode: TLSMode = .allow, sniDomain: String? = nil,
        startupTimeout: TimeAmount = .seconds(10), maxConnections: Int = 10_000, maxConnectionsPerTenant: Int = 1_000,
        wakeTimeout: TimeAmount = .seconds(30), pool: PoolConfiguration = PoolConfiguration()
    ) {
        self.pool = pool
        self.wakeTimeout = wakeTimeout
        self.host = host
        self.port = port
        self.tlsMode = tlsMode
        self.sniDomain = sniDomain
        self.startupTimeout = startupTimeout
        self.maxConnections = maxConnections
        self.maxConnectionsPerTenant = maxConnectionsPerTenant
    }

    /// Bounds what the tenant's server may send before ReadyForQuery (auth requests, parameters, errors).
    static let handshakeMessageLimit = 1 << 20
    /// What a client may send before its session is ready (authentication messages are tiny).
    static let authenticationBytesLimit = 1 << 20
    /// One SASL message from a client (a few hundred bytes in practice).
    static let authenticationMessageLimit = 16_384
    /// What a client may send while the proxy is still looking for its tenant (normally nothing).
    static let pendingClientBytesLimit = 1 << 16
}

/// What every connection of one proxy shares.
final class ProxyContext: Sendable {
    let configuration: ProxyConfiguration
    let routes: any RouteProvider
    let tls: NIOSSLContext?
    let cancels: CancelRegistry
    let limits: ConnectionLimits
    let metrics: ProxyMetrics
    let logger: Logger
    let pools: ServerPools
    let descriptors: DescriptorGauge

    init(
        configuration: ProxyConfiguration, routes: any RouteProvider, tls: NIOSSLContext?, cancels: CancelRegistry, limits: ConnectionLimits,
        logger: Logger, metrics: ProxyMetrics = ProxyMetrics(), descriptors: DescriptorGauge = .unlimited()
    ) {
        self.descriptors = descriptors
        self.metrics = metrics
        self.configuration = configuration
        self.routes = routes
        self.tls = tls
        self.cancels = cancels
        self.limits = limits
        self.logger = logger
        self.pools = ServerPools(configuration: configuration.pool, logger: logger, descriptors: descriptors)
    }
}
