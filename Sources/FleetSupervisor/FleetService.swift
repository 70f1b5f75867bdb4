import Logging
import ServiceLifecycle

/// The fleet as a service: tenants are resumed when it starts and stopped on graceful shutdown.
public struct FleetService: Service {
    let fleet: Fleet
    let logger: Logger

    public init(fleet: Fleet, logger: Logger) {
        self.fleet = fleet
        self.logger = logger
    }

    public func run() async throws {
        do {
            try await fleet.resumeTenants()
        } catch {
            logger.error("could not resume tenants", metadata: ["error": "\(error)"])
        }
        logger.info("fleet ready")
        // Idle suspension once a second, and the ready pool's refill, until the daemon is asked to stop.
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: .seconds(1))
                        await fleet.suspendIdleTenants()
                    }
                }
                group.addTask { await fleet.pool.run() }
                group.addTask { await fleet.diskPool.run() }
            }
        }
        await fleet.shutdown()
    }
}
