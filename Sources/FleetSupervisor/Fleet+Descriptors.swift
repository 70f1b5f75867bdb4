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

    /// Reads the tenant's settings as its own PostgreSQL does (`postgres -C`, so `ALTER SYSTEM`
    /// and `pgfleet tenant set` count) and stores its postmaster's limit for the next start.
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

    private func descriptorSettings(record: TenantRecord) async throws -> DescriptorSettings {
        let bundle = try loadBundle(id: record.bundleID)
        let owner = options.isolated ? UserIdentity(name: record.osUser, uid: uid_t(record.uid), gid: gid_t(record.gid)) : nil
        // One `postgres -C` per setting (it prints only the last one asked for), side by side.
        let values = try await withThrowingTaskGroup(of: (String, String).self) { group in
            for name in DescriptorSettings.names {
                group.addTask {
                    let result = try await self.runTenantPostgres(["-D", record.dataDirectory, "-C", name], record: record, bundle: bundle, owner: owner)
                    guard result.succeeded else {
                        throw FleetError.failed("could not read \(name): \(result.stderr.trimmingCharacters(in: .whitespacesAndNewlines))")
                    }
                    return (name, result.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
                }
            }
            var values: [String: String] = [:]
            for try await (name, value) in group { values[name] = value }
            return values
        }
        return try DescriptorSettings(values: values)
    }
}
