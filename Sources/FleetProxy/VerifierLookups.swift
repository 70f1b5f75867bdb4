import FleetCore
import Logging
import NIOCore
import PGWire

/// One event loop's verifier-lookup connections, one per tenant socket. Loop-bound.
final class VerifierLookups {
    private unowned let pool: ServerPool
    private let loop: any EventLoop
    private let logger: Logger
    private var lookups: [String: Lookup] = [:]

    private enum Lookup {
        case connecting(waiting: [(role: String, promise: EventLoopPromise<String?>)])
        case ready(AuthLookupHandler, channel: any Channel, lastUsed: NIODeadline)
        /// The tenant cannot answer lookups (no lookup function, peer authentication refused):
        /// its clients authenticate with the server directly until then.
        case unavailable(until: NIODeadline)
    }

    init(pool: ServerPool, loop: any EventLoop, logger: Logger) {
        self.pool = pool
        self.loop = loop
        self.logger = logger
    }

    /// The SCRAM verifier of `role` in the tenant at `socketPath`; nil when there is none, or the
    /// tenant cannot tell (then the client authenticates with the server directly).
    func lookupSecret(tenant: TenantName, socketPath: String, role: String) -> EventLoopFuture<String?> {
        let promise = loop.makePromise(of: String?.self)
        switch lookups[socketPath] {
        case .ready(let handler, let channel, _) where channel.isActive:
            lookups[socketPath] = .ready(handler, channel: channel, lastUsed: .now())
            handler.lookup(role, promise: promise)
        case .connecting(let waiting):
            lookups[socketPath] = .connecting(waiting: waiting + [(role, promise)])
        case .unavailable(let until) where until > .now():
            promise.succeed(nil)
        default:
            lookups[socketPath] = .connecting(waiting: [(role, promise)])
            connect(tenant: tenant, socketPath: socketPath)
        }
        return promise.futureResult.assumeIsolated().flatMapErrorThrowing { error in
            if case AuthLookupHandler.LookupError.refused(let reason) = error {
                // A tenant without the lookup function (made by an older pgfleet), or one that
                // took the pgfleet role's right to it away: stop asking for a while.
                self.markUnavailable(socketPath, waiting: [], reason: reason)
            }
            return nil
        }.nonisolated()
    }

    /// Opens the lookup connection to a tenant if there is none, so that its first login does
    /// not wait for a backend to start (see `ProxyServer.prepare`).
    func prepare(tenant: TenantName, socketPath: String) {
        guard lookups[socketPath] == nil else { return }
        lookups[socketPath] = .connecting(waiting: [])
        connect(tenant: tenant, socketPath: socketPath)
    }

    /// Closes the lookup connections unused since before `cutoff`.
    func sweep(before cutoff: NIODeadline) {
        for (path, lookup) in lookups {
            if case .ready(_, let channel, let lastUsed) = lookup, lastUsed < cutoff {
                lookups[path] = nil
                channel.close(promise: nil)
            }
        }
    }

    private func connect(tenant: TenantName, socketPath: String) {
        let key = PoolKey(tenant: tenant, socketPath: socketPath, parameters: [
            StartupParameter(name: "user", value: TenantRoles.daemon), StartupParameter(name: "database", value: "postgres"),
            StartupParameter(name: "application_name", value: "pgfleet-proxy"),
        ])
        pool.connect(key, scram: nil).assumeIsolated().whenComplete { result in
            guard case .connecting(let waiting) = self.lookups[socketPath] else { return }
            switch result {
            case .success(let (channel, _)):
                let handler = AuthLookupHandler()
                do {
                    try channel.pipeline.syncOperations.addHandler(handler)
                } catch {
                    channel.close(promise: nil)
                    self.lookups[socketPath] = nil
                    for (_, promise) in waiting { promise.succeed(nil) }
                    return
                }
                self.lookups[socketPath] = .ready(handler, channel: channel, lastUsed: .now())
                channel.closeFuture.assumeIsolated().whenComplete { _ in
                    if case .ready(_, let current, _) = self.lookups[socketPath], current === channel {
                        self.lookups[socketPath] = nil
                    }
                }
                for (role, promise) in waiting { handler.lookup(role, promise: promise) }
            case .failure(ServerLoginError.refused(let error)):
                // Peer authentication refused: a proxy not running as the daemon's OS user.
                self.markUnavailable(socketPath, waiting: waiting, reason: error.message ?? "refused")
            case .failure:
                // Not running (suspended, starting): ask again next time.
                self.lookups[socketPath] = nil
                for (_, promise) in waiting { promise.succeed(nil) }
            }
        }
    }

    private func markUnavailable(_ socketPath: String, waiting: [(role: String, promise: EventLoopPromise<String?>)], reason: String) {
        if case .ready(_, let channel, _) = lookups[socketPath] { channel.close(promise: nil) }
        lookups[socketPath] = .unavailable(until: .now() + .seconds(30))
        logger.info("verifier lookup unavailable for 30 s; clients authenticate with the tenant directly", metadata: [
            "socket": "\(socketPath)", "reason": "\(reason)",
        ])
        for (_, promise) in waiting { promise.succeed(nil) }
    }
}
