import ArgumentParser
import FleetClient
import FleetCore
import FleetProxy
import FleetSystem
import Foundation
import Logging
import ServiceLifecycle

struct ProxyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "proxy",
        abstract: "Run the PostgreSQL routing proxy on its own, routing through a daemon's API.",
        discussion: """
            `pgfleet serve` already runs the proxy (see its --listen); this command runs one more, \
            e.g. on another port or with other TLS settings. It asks the daemon of --root where each \
            tenant is, so it needs access to ROOT/run/api.sock and to the tenants' socket directories.
            """
    )

    @OptionGroup var rootOptions: RootOptions
    @OptionGroup(title: "Proxy") var proxyOptions: ProxyOptions

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    func validate() throws {
        guard proxyOptions.enabled else { throw ValidationError("--listen none leaves nothing to run") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("invalid --log-level \(logLevel)") }
    }

    func run() async throws {
        let logger = bootstrapLogging(label: "pgfleet-proxy", level: logLevel)
        let descriptors = raiseFileLimit(logger: logger)
        let layout = rootOptions.layout
        let proxy: ProxyServer
        do {
            proxy = ProxyServer(
                configuration: try proxyOptions.configuration(), routes: APIRoutes(client: FleetClient(layout: layout)),
                tls: try proxyOptions.tlsContext(root: layout.root), logger: logger,
                group: proxyOptions.eventLoopGroup(), descriptors: descriptors
            )
            _ = try await proxy.bind()
        } catch {
            printError(error)
            throw ExitCode(1)
        }
        let group = ServiceGroup(configuration: .init(services: [.init(service: proxy)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

/// Routes from a daemon's HTTP API. A running tenant's socket is kept for a few seconds (see
/// `RouteCache`: a hit needs the socket file to be there), so a burst of connections costs one
/// request, not one each (about 1.5 ms of a login through a standalone proxy).
struct APIRoutes: RouteProvider {
    let client: FleetClient
    let cache = RouteCache(ttl: .seconds(3))

    func cachedRoute(for tenant: TenantName) -> TenantRoute? {
        cache.route(for: tenant)
    }

    func forget(_ tenant: TenantName) {
        cache.forget(tenant)
    }

    func route(for tenant: TenantName) async -> TenantRoute {
        let route = await route { try await client.tenantInfo(tenant) }
        cache.store(route, for: tenant)
        return route
    }

    /// Through the API a wake is a start; the daemon's own proxy also rate-limits wakes.
    func wake(_ tenant: TenantName) async -> TenantRoute {
        let route = await route { try await client.startTenant(tenant) }
        cache.store(route, for: tenant)
        return route == .suspended ? .failed : route
    }

    private func route(_ fetch: () async throws -> TenantInfo) async -> TenantRoute {
        do {
            let info = try await fetch()
            switch info.state {
            case .suspended: return .suspended
            case .running: return .available(socketPath: "\(info.socketDirectory)/.s.PGSQL.\(info.port)")
            case .stopped: return .stopped
            case .failed: return .failed
            case .starting, .stopping, .backoff: return .unavailable(info.state)
            }
        } catch let error as APIErrorBody where error.code == FleetError.tenantNotFound("").code {
            return .unknown
        } catch let error as APIErrorBody where error.code == FleetError.failed("").code {
            return .failed
        } catch {
            return .unavailable(.stopped)
        }
    }
}
