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
    /// One listening socket per event loop (SO_REUSEPORT): the kernel spreads new connections
    /// over them, and each connection stays on the loop that accepted it, with no hand-over to
    /// another thread on the way in.
    private let bound = Mutex<[any Channel]>([])

    /// `descriptors`: the daemon's descriptor count and limit, against which clients are
    /// refused before the daemon runs out (`DescriptorHeadroom`).
    public init(
        configuration: ProxyConfiguration, routes: any RouteProvider, tls: NIOSSLContext?, logger: Logger,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, descriptors: DescriptorGauge = .unlimited()
    ) {
        self.shared = ProxyContext(
            configuration: configuration, routes: routes, tls: tls, cancels: CancelRegistry(),
            limits: ConnectionLimits(maxTotal: configuration.maxConnections, maxPerTenant: configuration.maxConnectionsPerTenant),
            logger: logger, descriptors: descriptors
        )
        self.group = group
    }

    /// Binds the listening sockets; `run()` binds on its own if this was not called first.
    public func bind() async throws -> SocketAddress? {
        if let first = bound.withLock({ $0.first }) { return first.localAddress }
        let shared = shared
        let (host, port) = (shared.configuration.host, shared.configuration.port)
        var channels: [any Channel] = []
        do {
            // SO_REUSEPORT would let a second daemon on the same port share it silently (as
            // root, both are the same user): a plain bind first says if the port is taken.
            try Self.checkFree(host: host, port: port)
            var address: SocketAddress? = nil
            for loop in group.makeIterator() {
                let channel = try await ServerBootstrap(group: loop, childGroup: loop)
                    .serverChannelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(AcceptGate(descriptors: shared.descriptors) { holding in
                                shared.logger.log(
                                    level: holding ? .warning : .info,
                                    holding ? "out of file descriptors: new clients wait in the listen backlog" : "accepting new clients again",
                                    metadata: ["in_use": "\(shared.descriptors.inUse)", "limit": "\(shared.descriptors.headroom.limit)"]
                                )
                            })
                        }
                    }
                    .serverChannelOption(.backlog, value: 4096)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .serverChannelOption(ChannelOptions.Types.SocketOption(level: .socket, name: NIOBSDSocket.Option(rawValue: CInt(SO_REUSEPORT))), value: 1)
                    .childChannelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            // Set here rather than as child channel options, which NIO applies
                            // through a chain of futures on every accepted connection.
                            let options = channel.syncOptions
                            try options?.setOption(.socketOption(.tcp_nodelay), value: 1)
                            try options?.setOption(.allowRemoteHalfClosure, value: true)
                            shared.descriptors.track(channel)
                            // Refused clients are still answered: see `HandshakeMachine.refusal`.
                            let holdsSlot = shared.limits.acquireConnection()
                            let refusal = holdsSlot
                                ? shared.descriptors.admit(logger: shared.logger) { shared.pools.trimIdle() } : .tooManyConnections
                            try channel.pipeline.syncOperations.addHandler(
                                ClientConnectionHandler(shared: shared, refusal: refusal, holdsSlot: holdsSlot)
                            )
                        }
                    }
                    // Port 0: the first socket's port, for the others.
                    .bind(to: address ?? (try SocketAddress.makeAddressResolvingHost(host, port: port)))
                    .get()
                channels.append(channel)
                if address == nil { address = channel.localAddress }
            }
        } catch {
            for channel in channels { try? await channel.close() }
            throw FleetError.failed("the proxy cannot listen on \(host):\(port): \(error)")
        }
        bound.withLock { $0 = channels }
        shared.logger.info("proxy listening", metadata: [
            "address": "\(channels.first?.localAddress.map { "\($0)" } ?? "?")", "tls": "\(shared.tls == nil ? "disable" : shared.configuration.tlsMode.rawValue)",
            "sockets": "\(channels.count)",
        ])
        return channels.first?.localAddress
    }

    /// Throws if something listens on `host:port` already (port 0: nothing to check).
    private static func checkFree(host: String, port: Int) throws {
        guard port != 0 else { return }
        let address = try SocketAddress.makeAddressResolvingHost(host, port: port)
        let fd = socket(Int32(address.protocol.rawValue), Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var one: Int32 = 1
        // SO_REUSEADDR only lets a port in TIME_WAIT be reused, not one that is listened on.
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let result = address.withSockAddr { pointer, size in Glibc.bind(fd, pointer, socklen_t(size)) }
        if result != 0 && errno == EADDRINUSE {
            throw FleetError.failed("address already in use (is another pgfleet or PostgreSQL listening there?); stop it or choose another --listen")
        }
    }

    public func run() async throws {
        _ = try await bind()
        let channels = bound.withLock { $0 }
        guard !channels.isEmpty else { return }
        try? await gracefulShutdown()
        shared.logger.info("proxy stops accepting connections")
        for channel in channels { try? await channel.close() }
    }

    /// A tenant that just came into being will have clients soon: each event loop opens its
    /// verifier-lookup connection now, so the first login does not wait for a backend to start.
    /// Unused, they close after the pool's idle timeout.
    public func prepare(tenant: TenantName, socketPath: String) {
        shared.pools.prepareLookups(tenant: tenant, socketPath: socketPath, on: Array(group.makeIterator()))
    }

    /// For tests and metrics: connections open now.
    public var openConnections: Int { shared.limits.total }

    /// Client connections routed to `tenant` right now.
    public func connections(of tenant: TenantName) -> Int { shared.limits.connections(of: tenant) }

    /// Server connections the proxy's pools hold for `tenant` now (idle or lent, verifier lookups
    /// included): sessions on the tenant that are the proxy's, not a client's of its own.
    public func pooledServerConnections(of tenant: TenantName) -> Int { shared.pools.serverConnections(of: tenant) }
}
