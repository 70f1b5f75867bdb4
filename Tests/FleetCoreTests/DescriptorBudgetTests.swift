import FleetCore
import Testing

@Suite struct DescriptorBudgetTests {
    @Test func aTenantWithPgfleetsDefaultsGetsMaxFilesPerProcessAndTheMargin() {
        let budget = DescriptorBudget(.tenantDefaults, hardLimit: 1_048_576)
        // 40 connections + 3 autovacuum workers + 2 background workers + 2 WAL senders + 6 of its own.
        #expect(budget.processes == 53)
        #expect(budget.perProcess == 1000 + DescriptorBudget.margin)
        #expect(budget.limit == 1064)
        #expect(budget.worstCase == 53 * 1064)
        #expect(budget.note == nil)
    }

    @Test func aHardLimitBelowWhatABackendMayOpenCapsTheLimitAndSaysSo() throws {
        let budget = DescriptorBudget(.tenantDefaults, hardLimit: 256)
        #expect(budget.limit == 256)
        let note = try #require(budget.note)
        #expect(note.contains("hard descriptor limit (RLIMIT_NOFILE) is 256"))
        #expect(note.contains("below the 1064 each of the tenant's 53 processes may need"))
        #expect(note.contains("max_files_per_process to 192"))
    }

    @Test func theTenantsOwnSettingsAreRead() throws {
        let settings = try DescriptorSettings(values: [
            "max_connections": "200", "autovacuum_max_workers": "3", "max_worker_processes": "8", "max_wal_senders": "10",
            "max_files_per_process": "4000",
        ])
        let budget = DescriptorBudget(settings, hardLimit: 524_288)
        #expect(budget.processes == 200 + 3 + 8 + 10 + 6)
        #expect(budget.limit == 4064)
        #expect(budget.note == nil)
    }

    @Test func aValueThatIsNotACountIsNamed() {
        #expect(throws: FleetError.failed("cannot read max_files_per_process = lots")) {
            try DescriptorSettings(values: [
                "max_connections": "40", "autovacuum_max_workers": "3", "max_worker_processes": "2", "max_wal_senders": "2",
                "max_files_per_process": "lots",
            ])
        }
    }
}
