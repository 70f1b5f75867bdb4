import FleetCore
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Synchronization

/// The routing proxy: one TCP port in front of every tenant. A `Service`, so `pgfleet serve`
/// runs it beside the supervisor and `pgfleet proxy` runs it on its own.
public final class ProxyServer: Service, Sendable {
    private let shared: ProxyContext
    private let group: any EventLoopGroup
    private let bound = Mutex<(any Channel)?>(nil)

    public init(
        configuration: ProxyConfiguration, routes: any RouteProvider, tls: NIOSSLContext?, logger: Logger,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.shared = ProxyContext(
            configuration: configuration, routes: routes, tls: tls, cancels: CancelRegistry(),
            limits: ConnectionLimits(maxTotal: configuration.maxConnections, maxPerTenant: configuration.maxConnectionsPerTenant),
            logger: logger
        )
        self.group = group
    }

    /// Binds the listening socket; `run()` binds on its own if this was not called first.
    public func bind() async throws -> SocketAddress? {
        if let channel = bound.withLock({ $0 }) { return channel.localAddress }
        let shared = shared
        let channel: any Channel
        do {
            channel = try await ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 4096)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelOption(.allowRemoteHalfClosure, value: true)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let overLimit = !shared.limits.acquireConnection()
                        try channel.pipeline.syncOperations.addHandler(ClientConnectionHandler(shared: shared, overLimit: overLimit))
                    }
                }
                .bind(host: shared.configuration.host, port: shared.configuration.port)
                .get()
        } catch {
            throw FleetError.failed("the proxy cannot listen on \(shared.configuration.host):\(shared.configuration.port): \(error)")
        }
        bound.withLock { $0 = channel }
        shared.logger.info("proxy listening", metadata: [
            "address": "\(channel.localAddress.map { "\($0)" } ?? "?")", "tls": "\(shared.tls == nil ? "disable" : shared.configuration.tlsMode.rawValue)",
        ])
        return channel.localAddress
    }

    public func run() async throws {
        _ = try await bind()
        guard let channel = bound.withLock({ $0 }) else { return }
        try? await gracefulShutdown()
        shared.logger.info("proxy stops accepting connections")
        try? await channel.close()
    }

    /// For tests and metrics: connections open now.
    public var openConnections: Int { shared.limits.total }

    /// Client connections routed to `tenant` right now.
    public func connections(of tenant: TenantName) -> Int { shared.limits.connections(of: tenant) }

    /// Server connections the proxy's pools hold for `tenant` now (idle or lent, verifier lookups
    /// included): sessions on the tenant that are the proxy's, not a client's of its own.
    public func pooledServerConnections(of tenant: TenantName) -> Int { shared.pools.serverConnections(of: tenant) }
}
