import FleetCore
import Foundation
import Testing

@Suite struct TenantLimitsTests {
    @Test func parsesEachLimitAsWritten() throws {
        let limits = try LimitsChange(cpu: "0.5", memory: "256MB", pids: "200", ioWeight: "100", disk: "10GB").applied(to: .none)
        #expect(limits == TenantLimits(cpuMillicores: 500, memoryBytes: 256 << 20, pids: 200, ioWeight: 100, diskBytes: 10 << 30))
        #expect(limits.summary == "cpu 0.5, memory 256MB, pids 200, io-weight 100, disk 10GB")
    }

    @Test func noneRemovesALimitAndNilKeepsIt() throws {
        let current = TenantLimits(cpuMillicores: 2000, memoryBytes: 1 << 30)
        let changed = try LimitsChange(memory: "none").applied(to: current)
        #expect(changed == TenantLimits(cpuMillicores: 2000))
    }

    @Test(arguments: [
        (LimitsChange(cpu: "half"), "--cpu takes a number of cores"),
        (LimitsChange(cpu: "0"), "--cpu 0 is out of range"),
        (LimitsChange(memory: "12 parsecs"), "--memory takes a size"),
        (LimitsChange(memory: "1MB"), "--memory 1MB is out of range: from 32MB"),
        (LimitsChange(pids: "-3"), "--pids -3 is out of range"),
        (LimitsChange(ioWeight: "20000"), "--io-weight 20000 is out of range: from 1 to 10000"),
        (LimitsChange(disk: "1kB"), "--disk 1kB is out of range"),
    ])
    func refusesBadValuesNamingTheOption(change: LimitsChange, message: String) {
        #expect {
            _ = try change.applied(to: .none)
        } throws: { error in
            guard case FleetError.invalidRequest(let text) = error else { return false }
            return text.hasPrefix(message)
        }
    }

    @Test func jsonTakesNumbersOrStrings() throws {
        let json = #"{"cpu": 0.25, "memory": "512MB", "pids": 300, "ioWeight": null}"#
        let change = try JSONDecoder().decode(LimitsChange.self, from: Data(json.utf8))
        #expect(try change.applied(to: .none) == TenantLimits(cpuMillicores: 250, memoryBytes: 512 << 20, pids: 300))
    }

    @Test func sizesReadAsPostgreSQLWritesThem() {
        #expect(ByteSize.parse("64kB") == 64 << 10)
        #expect(ByteSize.parse("1.5GB") == 3 << 29)
        #expect(ByteSize.parse("512M") == 512 << 20)
        #expect(ByteSize.parse("2GiB") == 2 << 30)
        #expect(ByteSize.parse("100") == 100)
        #expect(ByteSize.parse("lots") == nil)
        #expect(ByteSize.format(256 << 20) == "256MB")
        #expect(ByteSize.format(3 << 29) == "1.5GB")
    }

    @Test func defaultsFillOnlyWhatIsUnset() {
        let own = TenantLimits(memoryBytes: 1 << 30)
        let defaults = TenantLimits(cpuMillicores: 1000, memoryBytes: 256 << 20, pids: 500)
        #expect(own.filled(from: defaults) == TenantLimits(cpuMillicores: 1000, memoryBytes: 1 << 30, pids: 500))
    }
}

@Suite struct LimitFitTests {
    /// PostgreSQL 15's defaults, as `postgres -C` prints them (base units).
    static let defaults: [String: String] = [
        "shared_buffers": "16384", "wal_buffers": "-1", "max_connections": "100", "autovacuum_max_workers": "3",
        "max_worker_processes": "8", "max_wal_senders": "10", "max_prepared_transactions": "0", "max_locks_per_transaction": "64",
        "work_mem": "4096", "hash_mem_multiplier": "2", "maintenance_work_mem": "65536", "autovacuum_work_mem": "-1", "block_size": "8192",
        "max_parallel_workers": "8", "max_parallel_workers_per_gather": "2",
    ]

    @Test func readsPostgresBaseUnits() throws {
        let settings = try MemorySettings(values: Self.defaults)
        #expect(settings.sharedBuffers == 128 << 20)
        #expect(settings.walBuffers == 4 << 20)
        #expect(settings.workMem == 4 << 20)
        #expect(settings.maintenanceWorkMem == 64 << 20)
        #expect(settings.autovacuumWorkMem == nil)
        #expect(settings.processSlots == 122)
    }

    @Test func sharedMemoryIsCloseToWhatPostgreSQLReports() throws {
        // `postgres -C shared_memory_size` says 143 (MB) for these settings; the docs' table a little more.
        let shared = LimitFit.sharedMemory(try MemorySettings(values: Self.defaults))
        #expect(shared > 143 << 20 && shared < 150 << 20)
    }

    @Test func refusesAMemoryLimitTheSettingsCannotFitWithTheArithmetic() throws {
        let settings = try MemorySettings(values: Self.defaults)
        let problem = try #require(LimitFit.memoryProblem(settings, limit: 128 << 20))
        #expect(problem.contains("the memory limit 128MB is too small for these settings, which need 22"))
        #expect(problem.contains("shared_buffers 128MB"))
        #expect(problem.contains("shared_buffers=32MB"))
        #expect(LimitFit.memoryProblem(settings, limit: 512 << 20) == nil)
    }

    @Test func theAdviceNamesTheSettingThatTakesMost() throws {
        // pgfleet's own defaults under 64MB: maintenance_work_mem (64MB) is what does not fit, not shared_buffers (16MB).
        let settings = MemorySettings(sharedBuffers: 16 << 20, walBuffers: 128 << 10, maxConnections: 40, maxWorkerProcesses: 2, maxWalSenders: 2)
        let problem = try #require(LimitFit.memoryProblem(settings, limit: 64 << 20))
        #expect(problem.contains("lower maintenance_work_mem (e.g. maintenance_work_mem=22MB)"), "\(problem)")
        #expect(problem.contains("or give a limit of at least 106MB"), "\(problem)")
        var fixed = settings
        fixed.maintenanceWorkMem = 22 << 20
        #expect(LimitFit.memoryProblem(fixed, limit: 64 << 20) == nil)
    }

    @Test func notesHowManyBusyConnectionsFit() throws {
        var settings = MemorySettings(sharedBuffers: 16 << 20, maxConnections: 40)
        #expect(LimitFit.memoryNote(settings, limit: 4 << 30) == nil)
        let note = try #require(LimitFit.memoryNote(settings, limit: 256 << 20))
        #expect(note.contains("room for about 15 of max_connections 40"))
        settings.maxConnections = 10
        #expect(LimitFit.memoryNote(settings, limit: 256 << 20) == nil)
    }

    @Test func refusesTooFewProcessesForMaxConnections() throws {
        let settings = try MemorySettings(values: Self.defaults)
        #expect(LimitFit.processes(settings) == 128)
        let problem = try #require(LimitFit.pidsProblem(settings, pids: 50))
        #expect(problem.contains("give at least --pids 132"))
        #expect(LimitFit.pidsProblem(settings, pids: 132) == nil)
    }
}
