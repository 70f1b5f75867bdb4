import FleetCore
import FleetSystem
import Foundation
import Testing

/// Server-side session pooling through the proxy, with psql against real PostgreSQL: sessions
/// are reused, reset between clients, never shared between roles or tenants, and the proxy's own
/// SCRAM check follows password changes.
@Suite(.serialized, integrationTrait)
struct ServerPoolIntegrationTests {
    @Test func pooledSessionsAreReusedResetAndKeptApart() async throws {
        try await withPooledProxy { harness, port in
            let (tenant, password) = try await harness.createTenant("pooled")
            let (_, otherPassword) = try await harness.createTenant("neighbour")
            try await harness.mustQuery(tenant, password: password, "create role alice login password 'alice-pw'; create table kept(x int); grant all on kept to alice")
            // A new tenant gets its verifier-lookup connection (one per proxy thread) right after
            // its create, before any client: the first login does not wait for a backend to start.
            // It is opened in the background, so wait for it (not for a guess at how long it takes).
            let lookups = try await harness.waitForQuery(
                tenant, password: password, "select count(*) from pg_stat_activity where application_name = 'pgfleet-proxy'", toPrint: "1")
            #expect(lookups == "1")

            func through(_ user: String, _ pw: String, _ commands: String...) async throws -> CommandResult {
                try await psqlCommands("host=127.0.0.1 port=\(port) user=\(user) dbname=postgres", password: pw, commands)
            }
            func must(_ user: String, _ pw: String, _ commands: String...) async throws -> [String] {
                let result = try await psqlCommands("host=127.0.0.1 port=\(port) user=\(user) dbname=postgres", password: pw, commands)
                #expect(result.succeeded, "\(commands): \(result.stderr)")
                return result.stdout.split(separator: "\n").map(String.init)
            }

            // A session left in every kind of state …
            let first = try await must("postgres@pooled", password,
                "select pg_backend_pid()", "set work_mem = '77MB'", "create temp table scratch(x int)", "prepare p as select 1",
                "select pg_advisory_lock(42)", "listen somewhere", "set role alice")
            let pid = try #require(first.first)
            // … is the next client's, reset: same backend, nothing of the previous client left.
            let second = try await must("postgres@pooled", password,
                "select pg_backend_pid()", "show work_mem", "select count(*) from pg_class where relname = 'scratch'",
                "select count(*) from pg_prepared_statements", "select count(*) from pg_locks where locktype = 'advisory'",
                "select count(*) from pg_listening_channels()", "select current_user")
            #expect(second.count == 7 && second[0] == pid && second[1] != "77MB", "\(second)")
            #expect(second.dropFirst(2) == ["0", "0", "0", "0", "postgres"], "\(second)")

            // Another role never gets that session.
            let alice = try await must("alice@pooled", "alice-pw", "select pg_backend_pid()", "select current_user")
            #expect(alice.count == 2 && alice[0] != pid && alice[1] == "alice", "\(alice)")
            // The lookup function is the pgfleet role's only.
            let snooping = try await through("alice@pooled", "alice-pw", "select pgfleet.auth_secret('postgres')")
            #expect(snooping.stderr.contains("permission denied"), "\(snooping.stderr)")

            // A client that leaves inside a transaction: its session ends (rolled back), it is not lent again.
            let open = try await must("postgres@pooled", password, "select pg_backend_pid()", "begin", "insert into kept values (1)")
            let afterOpen = try await must("postgres@pooled", password, "select pg_backend_pid()", "select count(*) from kept")
            #expect(afterOpen.count == 2 && afterOpen[0] != open.first && afterOpen[1] == "0", "\(open) then \(afterOpen)")

            // The proxy checks passwords itself, as PostgreSQL would: wrong ones are refused with
            // PostgreSQL's message, and a password change counts at once.
            let wrong = try await through("alice@pooled", "nope", "select 1")
            #expect(!wrong.succeeded && wrong.stderr.contains("password authentication failed for user \"alice\""), "\(wrong.stderr)")
            try await harness.mustQuery(tenant, password: password, "alter role alice password 'alice-new'")
            let old = try await through("alice@pooled", "alice-pw", "select 1")
            #expect(!old.succeeded && old.stderr.contains("password authentication failed"), "\(old.stderr)")
            #expect(try await must("alice@pooled", "alice-new", "select current_user") == ["alice"])
            // NOLOGIN and unknown roles: the tenant's own answer.
            try await harness.mustQuery(tenant, password: password, "alter role alice nologin")
            let barred = try await through("alice@pooled", "alice-new", "select 1")
            #expect(!barred.succeeded && barred.stderr.contains("not permitted to log in"), "\(barred.stderr)")
            let ghost = try await through("ghost@pooled", "x", "select 1")
            #expect(!ghost.succeeded && ghost.stderr.contains("password authentication failed for user \"ghost\""), "\(ghost.stderr)")
            // A password stored as MD5 is no SCRAM verifier: the client authenticates with the
            // tenant directly, which asked for SCRAM (its pg_hba.conf) and says no, as PostgreSQL does.
            try await harness.mustQuery(tenant, password: password, "set password_encryption = 'md5'; create role carol login password 'carol-pw'")
            let md5 = try await through("carol@pooled", "carol-pw", "select 1")
            #expect(!md5.succeeded && md5.stderr.contains("password authentication failed for user \"carol\""), "\(md5.stderr)")
            // The client is asked for SCRAM before the tenant is: were pg_hba.conf changed to ask
            // for something else, the client gets a clear error, never a stuck login.
            let hba = tenant.dataDirectory + "/pg_hba.conf"
            let original = try String(contentsOfFile: hba, encoding: .utf8)
            try original.replacingOccurrences(of: "scram-sha-256", with: "md5").write(toFile: hba, atomically: false, encoding: .utf8)
            try await harness.mustQuery(tenant, password: password, "select pg_reload_conf()")
            let changed = try await through("carol@pooled", "carol-pw", "select 1")
            #expect(!changed.succeeded && changed.stderr.contains("asks for an MD5 password, not SCRAM-SHA-256"), "\(changed.stderr)")
            try original.write(toFile: hba, atomically: false, encoding: .utf8)
            try await harness.mustQuery(tenant, password: password, "select pg_reload_conf()")

            // One tenant's password does not open another's pooled sessions.
            let crossed = try await through("postgres@neighbour", password, "select 1")
            #expect(!crossed.succeeded && crossed.stderr.contains("password authentication failed"), "\(crossed.stderr)")
            #expect(try await must("postgres@neighbour", otherPassword, "show cluster_name") == ["neighbour"])

            // pgbench, connection per transaction: every one passes through the pool.
            let conn = "host=127.0.0.1 port=\(port) user=postgres@pooled dbname=postgres"
            _ = try await pgbench(["-i", "-s", "1", "-q"], conninfo: conn, password: password)
            let bench = try await pgbench(["-S", "-C", "-c", "4", "-j", "2", "-T", "3"], conninfo: conn, password: password)
            #expect(bench.succeeded && bench.stdout.contains("number of failed transactions: 0"), "\(bench.stdout)\(bench.stderr)")

            let metrics = try await harness.mustRun(["status", "--metrics"])
            #expect(metrics.contains("pgfleet_proxy_server_sessions_total{kind=\"reused\"}"), "\(metrics.prefix(3000))")
            #expect(metrics.contains("pgfleet_proxy_server_connections{tenant=\"pooled\"}"), "\(metrics.prefix(3000))")
            // pgbench opened hundreds of connections; a handful of backends stay behind (pgbench's
            // four, one per earlier role, the lookup connection, this query, maybe one still resetting).
            let backends = try await harness.mustQuery(tenant, password: password, "select count(*) from pg_stat_activity where backend_type = 'client backend'")
            #expect((Int(backends) ?? 99) <= 12, "\(backends) client backends")

            // Without the lookup function (a tenant made by an older pgfleet, or one whose
            // superuser dropped it), the lookup connection's prepared statement fails: clients
            // authenticate with the tenant directly, and wrong passwords are still refused.
            try await harness.mustQuery(tenant, password: password, "drop function pgfleet.auth_secret(text)")
            #expect(try await must("postgres@pooled", password, "select current_user") == ["postgres"])
            let refused = try await through("postgres@pooled", "nope", "select 1")
            #expect(!refused.succeeded && refused.stderr.contains("password authentication failed"), "\(refused.stderr)")
        }
    }

    /// Idle pooled sessions and the verifier-lookup connection close after
    /// `--server-idle-timeout`, so a quiet tenant's backends go away (and it can be suspended).
    @Test func idleServerConnectionsCloseAfterTheTimeout() async throws {
        // 5 s: long enough that a loaded machine still finds the session pooled right after use.
        try await withPooledProxy(["--server-idle-timeout", "5"]) { harness, port in
            let (tenant, password) = try await harness.createTenant("sweep")
            let conninfo = "host=127.0.0.1 port=\(port) user=postgres@sweep dbname=postgres sslmode=disable"
            let used = try await psql(conninfo, password: password, "select pg_backend_pid()")
            #expect(used.succeeded, "\(used.stderr)")
            let pid = used.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            let alive = "select count(*) from pg_stat_activity where pid = \(Int(pid) ?? 0) or application_name = 'pgfleet-proxy'"
            // Right after the client left: its session waits in the pool, beside the lookup connection.
            #expect(try await harness.mustQuery(tenant, password: password, alive) == "2")
            let left = try await harness.waitForQuery(tenant, password: password, alive, toPrint: "0", timeout: .seconds(40))
            #expect(left == "0", "pooled backends still there 40 s after a 5 s idle timeout")
        }
    }

    /// More clients at once than the tenant has connection slots, each holding its session a
    /// while: the proxy waits for sessions to come back (and closes idle ones it cannot use)
    /// instead of passing "too many clients" on after a few tries.
    @Test func aBurstLargerThanMaxConnectionsWaitsForSessions() async throws {
        try await withPooledProxy { harness, port in
            let (narrow, password) = try await harness.createTenant("narrow")
            try await harness.mustRun(["tenant", "set", "narrow", "max_connections=8", "--restart"])
            let logBefore = (try? String(contentsOfFile: narrow.logFile, encoding: .utf8)) ?? ""
            let conninfo = "host=127.0.0.1 port=\(port) user=postgres@narrow dbname=postgres sslmode=disable"
            let results = try await withThrowingTaskGroup(of: CommandResult.self) { group in
                for _ in 0..<20 { group.addTask { try await psql(conninfo, password: password, "select pg_sleep(0.15)") } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let failed = results.filter { !$0.succeeded }
            #expect(failed.isEmpty, "\(failed.count) of 20 failed: \(failed.first?.stderr ?? "")")
            // Clients wait for sessions of their kind to come back rather than asking the tenant
            // again and again: each refused ask is a backend started for nothing and a FATAL line
            // in the tenant's log. Asking on a timer instead gave 20 to 58 of them here; waiting,
            // with at most four logins under way and one client asking again each second, 1 to 7.
            let log = try String(contentsOfFile: narrow.logFile, encoding: .utf8)
            let refused = log.dropFirst(logBefore.count).components(separatedBy: "too many clients already").count - 1
            #expect(refused <= 12, "\(refused) logins refused for 20 clients")

            // Sessions that do not come back: a client waits a few seconds, then gets the
            // tenant's own refusal, while the clients holding the sessions carry on.
            let holders = Task {
                let results = try await withThrowingTaskGroup(of: CommandResult.self) { group in
                    for _ in 0..<7 { group.addTask { try await psql(conninfo, password: password, "select pg_sleep(15)") } }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                return (results, ContinuousClock.now)
            }
            // All seven are running their query (with the lookup connection, every slot is taken);
            // counted from process titles, as a query on the socket would need a slot of its own.
            let allBusy = try await Harness.eventually(timeout: .seconds(10)) { Harness.busyBackends(of: narrow) == 7 }
            #expect(allBusy, "\(Harness.busyBackends(of: narrow)) of 7 holders running")
            let started = ContinuousClock.now
            let shut = try await psql(conninfo, password: password, "select 1")
            let refusedAt = ContinuousClock.now
            #expect(!shut.succeeded && shut.stderr.contains("too many clients already"), "\(shut.stdout)\(shut.stderr)")
            // It waited its few seconds (load only lengthens that), then was refused while the
            // holders still held their sessions, rather than waiting for one to come back.
            #expect(refusedAt - started > .milliseconds(2500), "refused after \(refusedAt - started)")
            let (held, holdersEnded) = try await holders.value
            #expect(refusedAt < holdersEnded, "refused only after the holders were done")
            let heldOK = held.allSatisfy { $0.succeeded }
            #expect(heldOK, "\(held.map(\.stderr))")
            // Both ends of a wait are counted for the tenant.
            let metrics = try await harness.mustRun(["status", "--metrics"])
            let served = metrics.split(separator: "\n").first { $0.hasPrefix("pgfleet_proxy_slot_waits_total{tenant=\"narrow\",outcome=\"served\"}") }
            #expect(served.flatMap { Int($0.split(separator: " ").last ?? "") }.map { $0 >= 1 } == true, "\(served ?? "no served line")")
            #expect(metrics.contains("pgfleet_proxy_slot_waits_total{tenant=\"narrow\",outcome=\"refused\"} 1"), "\(metrics.prefix(4000))")
        }
    }
}

/// A running daemon with Debian's PostgreSQL 15 imported and its proxy on a free port, without
/// TLS and with one thread: every client lands on the same event loop, so the same pool.
private func withPooledProxy(_ extraServeArguments: [String] = [], _ body: (Harness, Int) async throws -> Void) async throws {
    let port = try freePort()
    try await withHarness(extraServeArguments: [
        "--no-system-bundles", "--listen", "127.0.0.1:\(port)", "--tls", "disable", "--proxy-threads", "1",
    ] + extraServeArguments) { harness in
        try await harness.startDaemon()
        try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
        try await body(harness, port)
    }
}

/// psql with several -c commands, each one's output on its own line.
func psqlCommands(_ conninfo: String, password: String, _ commands: [String]) async throws -> CommandResult {
    var environment = SpawnSpec.baseEnvironment
    environment["PGPASSWORD"] = password
    environment["PGCONNECT_TIMEOUT"] = "30"  // a ceiling: a loaded machine can be slow to wake a tenant
    environment["PGSSLMODE"] = "disable"
    var arguments = ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conninfo]
    for command in commands { arguments += ["-c", command] }
    return try await Command.run(Harness.psql, arguments, environment: environment)
}
