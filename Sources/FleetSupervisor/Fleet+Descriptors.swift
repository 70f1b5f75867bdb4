import FleetCatalog
import FleetCore
import FleetSystem
import Foundation
import Logging

// Each postmaster's RLIMIT_NOFILE, from its tenant's settings (`DescriptorBudget`).
extension Fleet {
    /// What a tenant's postmaster is started with: the limit last computed for the tenant, or
    /// one for pgfleet's defaults until its settings have been read.
    func fileLimitSource(for record: TenantRecord) -> @Sendable () -> Int? {
        let board = fileLimitBoard
        let name = record.name
        return { board[name] }
    }

    /// The limit for pgfleet's tenant defaults under the daemon's hard limit.
    static func defaultFileLimit() -> Int {
        DescriptorBudget(.tenantDefaults, hardLimit: ResourceLimits.fileLimits().hard).limit
    }

    /// Reads the tenant's settings as its own PostgreSQL does (its configuration files, so
    /// `ALTER SYSTEM` and `pgfleet tenant set` count) and stores its postmaster's limit for the next start.
    /// Called before the starts someone asked for, not before a wake, which waits for nothing
    /// it need not. A failed reading keeps the limit as it was.
    func refreshFileLimit(_ record: TenantRecord) async {
        let budget: DescriptorBudget
        do {
            budget = DescriptorBudget(try await descriptorSettings(record: record), hardLimit: ResourceLimits.fileLimits().hard)
        } catch {
            logger.warning("could not read the tenant's descriptor settings; its postmaster keeps its last limit", metadata: [
                "tenant": "\(record.name)", "error": "\(error)", "limit": "\(fileLimitBoard[record.name])",
            ])
            return
        }
        fileLimitBoard[record.name] = budget.limit
        let metadata: Logger.Metadata = [
            "tenant": "\(record.name)", "limit": "\(budget.limit)", "processes": "\(budget.processes)", "worst_case": "\(budget.worstCase)",
        ]
        if let note = budget.note {
            logger.warning("descriptor limit: \(note)", metadata: metadata)
        } else {
            logger.debug("descriptor limit of the tenant's postmaster", metadata: metadata)
        }
    }

    /// From the tenant's configuration files as PostgreSQL reads them (postgresql.conf with its
    /// includes, then postgresql.auto.conf), PostgreSQL's defaults for the rest: no process is
    /// run, so a start with hundreds of tenants costs a few small reads each.
    private func descriptorSettings(record: TenantRecord) async throws -> DescriptorSettings {
        let demand = TenantDemand(name: record.name, settings: Self.configuredSettings(dataDirectory: record.dataDirectory))
        return DescriptorSettings(
            maxConnections: demand.maxConnections, autovacuumMaxWorkers: demand.autovacuumMaxWorkers,
            maxWorkerProcesses: demand.maxWorkerProcesses, maxWalSenders: demand.maxWalSenders, maxFilesPerProcess: demand.maxFilesPerProcess
        )
    }
}
