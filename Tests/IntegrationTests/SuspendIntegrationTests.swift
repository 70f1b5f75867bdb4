import FleetCore
import FleetSystem
import Foundation
import Testing

/// Scale to zero: idle tenants are suspended and woken by the next connection through the proxy.
@Suite(.serialized, integrationTrait)
struct SuspendIntegrationTests {
    @Test func idleTenantsSuspendAndWakeOnConnect() async throws {
        let port = try freePort()
        try await withHarness(extraServeArguments: ["--no-system-bundles", "--listen", "127.0.0.1:\(port)", "--tls", "disable"]) { harness in
            try await harness.startDaemon()
            try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
            // 5 s, not less: the direct session below must begin before the tenant is idle that long,
            // and on a loaded CI machine (the isolation suites spin CPUs beside it) 2 s was too short.
            let (sleepy, password) = try await harness.createTenant("sleepy", extra: ["--suspend-after", "5s"])
            #expect(sleepy.suspendAfter == 5)
            let conn = "host=127.0.0.1 port=\(port) user=postgres@sleepy dbname=postgres sslmode=disable"
            let write = try await psql(conn, password: password, "create table t as select 'kept' as v")
            #expect(write.succeeded, "\(write.stderr)")

            // A session on the socket, bypassing the proxy, keeps it awake.
            let direct = Task { try await harness.psql(sleepy, password: password, "select pg_sleep(12)") }
            let holding = try await harness.waitForQuery(
                sleepy, password: password, "select count(*) from pg_stat_activity where query = 'select pg_sleep(12)' and state = 'active'", toPrint: "1")
            #expect(holding == "1")
            try await Task.sleep(for: .seconds(6))  // longer than --suspend-after: time passing is the point
            #expect(try await harness.info("sleepy").state == .running)
            _ = try await direct.value

            // No client for 5 s: suspended, no postmaster left.
            let suspended = try await harness.waitFor("sleepy", state: .suspended, timeout: .seconds(40))
            #expect(suspended.state == .suspended)
            #expect(suspended.pid == nil)
            #expect(Harness.postmasters(of: sleepy.dataDirectory).isEmpty)
            #expect(try String(contentsOfFile: sleepy.logFile, encoding: .utf8).contains("database system is shut down"))

            // The next connection wakes it, and the data is there.
            let read = try await psql(conn, password: password, "select v from t")
            #expect(read.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "kept", "\(read.stderr)")
            #expect(try await harness.info("sleepy").state == .running)

            // A daemon restart keeps a suspended tenant suspended, without a postmaster.
            try await harness.mustRun(["tenant", "suspend", "sleepy"])
            #expect(try await harness.info("sleepy").state == .suspended)
            _ = try await harness.stopDaemon()
            try await harness.startDaemon()
            #expect(try await harness.info("sleepy").state == .suspended)
            #expect(Harness.postmasters(of: sleepy.dataDirectory).isEmpty)
            let again = try await psql(conn, password: password, "select v from t")
            #expect(again.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "kept", "\(again.stderr)")
        }
    }

    @Test func fiftyClientsWakeOneTenantOnceAndStopDiffersFromSuspend() async throws {
        let port = try freePort()
        try await withHarness(extraServeArguments: ["--no-system-bundles", "--listen", "127.0.0.1:\(port)", "--tls", "disable", "--wake-timeout", "20"]) { harness in
            try await harness.startDaemon()
            try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
            let (crowd, password) = try await harness.createTenant("crowd")
            let conn = "host=127.0.0.1 port=\(port) user=postgres@crowd dbname=postgres sslmode=disable"
            try await harness.mustRun(["tenant", "suspend", "crowd"])
            #expect(try await harness.info("crowd").state == .suspended)

            let results = try await withThrowingTaskGroup(of: CommandResult.self) { group in
                for _ in 0..<50 { group.addTask { try await psql(conn, password: password, "select 1") } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let failed = results.filter { !$0.succeeded }
            #expect(failed.isEmpty, "\(failed.count) of 50 failed: \(failed.first?.stderr ?? "")")
            #expect(Harness.postmasters(of: crowd.dataDirectory).count == 1)
            let log = try String(contentsOfFile: crowd.logFile, encoding: .utf8)
            // One start for all fifty: the log shows exactly one more "ready" after the first start.
            #expect(log.components(separatedBy: "database system is ready to accept connections").count - 1 == 2, "\(log.suffix(3000))")

            // Stopped is not suspended: it refuses clients until started.
            try await harness.mustRun(["tenant", "stop", "crowd"])
            let refused = try await psql(conn, password: password, "select 1")
            #expect(!refused.succeeded)
            #expect(refused.stderr.contains("is stopped"), "\(refused.stderr)")
            #expect(try await harness.info("crowd").state == .stopped)
            let suspendStopped = try await harness.cli(["tenant", "suspend", "crowd"])
            #expect(!suspendStopped.succeeded && suspendStopped.stderr.contains("only a running tenant"))
            try await harness.mustRun(["tenant", "start", "crowd"])

            // A tenant whose start fails gives the waiting clients a clear error, not a hang.
            try await harness.mustRun(["tenant", "suspend", "crowd"])
            let autoConf = try FileHandle(forWritingTo: URL(fileURLWithPath: crowd.dataDirectory + "/postgresql.auto.conf"))
            try autoConf.seekToEnd()
            try autoConf.write(contentsOf: Data("shared_buffers = 'plenty'\n".utf8))
            try autoConf.close()
            let started = ContinuousClock.now
            let broken = try await psql(conn, password: password, "select 1")
            #expect(!broken.succeeded)
            #expect(broken.stderr.contains("could not be started"), "\(broken.stderr)")
            #expect(ContinuousClock.now - started < .seconds(15))
        }
    }
}
