import FleetCore
import FleetSystem
import Foundation
import Testing

/// The proxy with real clients: psql in every sslmode, pgbench, psycopg (libpq 18), raw bytes.
@Suite(.serialized, integrationTrait)
struct ProxyIntegrationTests {
    @Test func realClientsThroughTheProxy() async throws {
        let port = try freePort()
        try await withHarness(extraServeArguments: [
            "--no-system-bundles", "--listen", "127.0.0.1:\(port)", "--sni-domain", "db.test", "--startup-timeout", "3",
        ]) { harness in
            try await harness.startDaemon()
            try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
            let (acme, acmePassword) = try await harness.createTenant("acme")
            let (beta, betaPassword) = try await harness.createTenant("beta")
            let (gamma, _) = try await harness.createTenant("gamma")
            try await harness.mustRun(["tenant", "stop", gamma.name])
            let rootCert = harness.root + "/tls/server.crt"
            #expect(FileManager.default.fileExists(atPath: rootCert))

            // psql in each sslmode, routed by user@tenant; \conninfo tells whether TLS was used.
            for (mode, extra) in [("disable", ""), ("require", ""), ("verify-ca", " sslrootcert=\(rootCert)"),
                                  ("verify-full", " sslrootcert=\(rootCert)")] {
                let host = mode == "verify-full" ? "localhost" : "127.0.0.1"
                let result = try await psql(
                    "host=\(host) port=\(port) user=postgres@acme dbname=postgres sslmode=\(mode)\(extra)",
                    password: acmePassword, "show cluster_name", "\\conninfo"
                )
                #expect(result.succeeded, "sslmode=\(mode): \(result.stderr)")
                #expect(result.stdout.contains("acme"), "\(result.stdout)")
                #expect(result.stdout.contains("SSL connection") == (mode != "disable"), "sslmode=\(mode): \(result.stdout)")
            }
            // Routing by options and by SNI.
            let byOptions = try await psql("host=127.0.0.1 port=\(port) user=postgres options=-ctenant=beta dbname=postgres sslmode=disable", password: betaPassword, "show cluster_name")
            #expect(byOptions.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "beta", "\(byOptions.stderr)")
            let bySNI = try await psql("host=beta.db.test hostaddr=127.0.0.1 port=\(port) user=postgres dbname=postgres sslmode=require", password: betaPassword, "show cluster_name")
            #expect(bySNI.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "beta", "\(bySNI.stderr)")
            // What `tenant info` prints can be pasted as it is.
            let info = try await harness.mustRun(["tenant", "info", "acme"])
            let uriLine = try #require(info.split(separator: "\n").first { $0.hasPrefix("uri (proxy)") })
            let uri = String(uriLine.split(separator: " ").last!)
            #expect(uri.contains("postgres%40acme@127.0.0.1:\(port)"), "\(uri)")
            let viaURI = try await psql(uri, password: acmePassword, "select current_user")
            #expect(viaURI.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "postgres", "\(viaURI.stderr)")
            #expect(info.contains("host=127.0.0.1 port=\(port) user=postgres@acme"))

            // pgbench: select-only and connect-per-transaction, no failures.
            let conn = "host=127.0.0.1 port=\(port) user=postgres@acme dbname=postgres sslmode=disable"
            for arguments in [["-i", "-s", "1", "-q"], ["-S", "-c", "4", "-j", "2", "-T", "3"], ["-S", "-C", "-c", "2", "-T", "2"]] {
                let bench = try await pgbench(arguments, conninfo: conn, password: acmePassword)
                #expect(bench.succeeded, "pgbench \(arguments): \(bench.stderr)\n\(bench.stdout)")
                if arguments.contains("-T") {
                    #expect(bench.stdout.contains("number of failed transactions: 0"), "\(bench.stdout)")
                }
            }

            // Cancel by interrupting psql during pg_sleep(30).
            let started = ContinuousClock.now
            let interrupted = try await psqlInterrupted(conninfo: conn, password: acmePassword) {
                try await harness.waitForQuery(acme, password: acmePassword, Self.sleeping30, toPrint: "1") == "1"
            }
            #expect(interrupted.contains("canceling statement due to user request"), "\(interrupted)")
            #expect(ContinuousClock.now - started < .seconds(25), "the cancel took as long as the query")

            // psycopg (libpq 18) and raw-bytes checks.
            let checks = try await pythonChecks(
                port: port, rootCert: rootCert, tenants: ["acme": acmePassword, "beta": betaPassword], stopped: gamma.name,
                daemonPID: harness.daemonPID
            )
            for line in checks.stdout.split(separator: "\n") where line.hasPrefix("FAIL") { Issue.record("\(line)") }
            #expect(checks.succeeded, "\(checks.stdout)\n\(checks.stderr)")
            #expect(checks.stdout.contains("all checks passed"))

            // Bytes are counted as they flow: a session still open shows the megabytes it received.
            let before = try await proxyBytes(harness, tenant: "acme", direction: "server_to_client")
            let long = Task { try await psql(conn, password: acmePassword, "select repeat('x', 2000000); select pg_sleep(20)") }
            // Once the sleep runs, the megabytes have gone through: read the counter then. (psql -c
            // sends both statements as one query string.)
            let sleeping = try await harness.waitForQuery(
                acme, password: acmePassword, "select count(*) from pg_stat_activity where query like '%select pg_sleep(20)' and state = 'active'", toPrint: "1")
            #expect(sleeping == "1")
            let during = try await proxyBytes(harness, tenant: "acme", direction: "server_to_client")
            #expect(during - before >= 1_000_000, "\(before) bytes before, \(during) during the session")
            _ = try await harness.mustQuery(acme, password: acmePassword, "select pg_cancel_backend(pid) from pg_stat_activity where query like '%select pg_sleep(20)' and pid <> pg_backend_pid()")
            _ = try await long.value

            // The metrics tell per-tenant connections, failures by kind and bytes.
            let metrics = try await harness.mustRun(["status", "--metrics"])
            #expect(metrics.contains("pgfleet_proxy_connections_total{tenant=\"acme\"}"), "\(metrics.prefix(2000))")
            #expect(metrics.contains("pgfleet_proxy_handshake_failures_total{kind=\"unknown_tenant\"}"))
            #expect(metrics.contains("pgfleet_proxy_bytes_total"))
            // The 300 logins for tenants that do not exist (proxy_checks.py) add no series of their
            // own: anyone who can reach the port could otherwise grow the daemon and the scrape.
            let unknownSeries = metrics.split(separator: "\n").filter { $0.contains("nosuch") }
            #expect(unknownSeries.count <= 5, "\(unknownSeries.count) metric lines name nonexistent tenants: \(unknownSeries.prefix(5))")
            _ = beta
            _ = acme
        }
    }

    /// `tenant password`: a running tenant is restarted with the new password, a suspended one
    /// stays suspended; the old password stops working through the proxy and on the socket, and
    /// neither password shows up in the daemon's log.
    @Test func aNewPasswordForTheSuperuser() async throws {
        let port = try freePort()
        try await withHarness(extraServeArguments: ["--no-system-bundles", "--listen", "127.0.0.1:\(port)", "--tls", "disable"]) { harness in
            try await harness.startDaemon()
            try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
            let (tenant, old) = try await harness.createTenant("keys")
            let conninfo = "host=127.0.0.1 port=\(port) user=postgres@keys dbname=postgres sslmode=disable"
            // A pooled server session of the old login exists when the password changes.
            #expect(try await psql(conninfo, password: old, "select 1").succeeded)
            let pidBefore = try #require(tenant.pid)

            let reset = try await harness.mustRun(["tenant", "password", "keys"])
            let line = try #require(reset.split(separator: "\n").first { $0.hasPrefix("password for postgres: ") })
            let generated = String(line.dropFirst("password for postgres: ".count))
            #expect(generated.count == 24, "\(reset)")
            #expect(reset.contains("restarted, running"), "\(reset)")
            let after = try await harness.info("keys")
            #expect(after.state == .running && after.pid != pidBefore)
            #expect(!(try await psql(conninfo, password: old, "select 1").succeeded), "the old password still works through the proxy")
            #expect(!(try await harness.psql(after, password: old, "select 1").succeeded), "the old password still works on the socket")
            #expect(try await psql(conninfo, password: generated, "select current_user").stdout.contains("postgres"))
            #expect(try await harness.mustQuery(after, password: generated, "select 1") == "1")

            // A chosen password from stdin, on a suspended tenant: it stays suspended, the next
            // client wakes it with the new password.
            try await harness.mustRun(["tenant", "suspend", "keys"])
            let chosen = "chosen-\(UUID().uuidString.prefix(8))"
            let piped = try await harness.cli(["tenant", "password", "keys", "--password-stdin"], stdin: chosen + "\n")
            #expect(piped.succeeded, "\(piped.stderr)")
            #expect(!piped.stdout.contains(chosen), "a chosen password is printed back")
            #expect(try await harness.info("keys").state == .suspended)
            #expect(try await psql(conninfo, password: chosen, "select 1").succeeded)
            #expect(!(try await psql(conninfo, password: generated, "select 1").succeeded))

            // Bad input: an empty line, an unknown tenant; nothing changes.
            let empty = try await harness.cli(["tenant", "password", "keys", "--password-stdin"], stdin: "\n")
            #expect(!empty.succeeded && empty.stderr.contains("empty or missing"), "\(empty.stderr)")
            let unknown = try await harness.cli(["tenant", "password", "nobody"])
            #expect(!unknown.succeeded && unknown.stderr.contains("nobody"), "\(unknown.stderr)")
            #expect(try await psql(conninfo, password: chosen, "select 1").succeeded)

            let log = harness.serveLog()
            #expect(!log.contains(generated) && !log.contains(chosen) && !log.contains(old), "a password is in the daemon's log")
            #expect(log.contains("tenant superuser password changed"))

            // The superuser renamed in SQL behind pgfleet's back: the change fails with
            // PostgreSQL's reason and without the verifier, and the tenant runs again.
            let running = try await harness.info("keys")
            #expect(try await harness.mustQuery(running, password: chosen, "create role boss superuser login password 'boss-pw'").isEmpty)
            let rename = try await harness.psql(running, password: "boss-pw", "alter role postgres rename to gone", user: "boss")
            #expect(rename.succeeded, "\(rename.stderr)")
            let refused = try await harness.cli(["tenant", "password", "keys"])
            #expect(!refused.succeeded)
            #expect(refused.stderr.contains("role \"postgres\" does not exist") && refused.stderr.contains("the password is unchanged"), "\(refused.stderr)")
            #expect(!refused.stderr.contains("SCRAM-SHA-256$") && !refused.stdout.contains("SCRAM-SHA-256$"))
            #expect(try await harness.info("keys").state == .running)
            #expect(try await harness.psql(running, password: "boss-pw", "select 1", user: "boss").succeeded)
        }
    }

    @Test func aStandaloneProxyWithTLSRequired() async throws {
        let port = try freePort()
        try await withHarness(extraServeArguments: ["--no-system-bundles", "--listen", "none"]) { harness in
            try await harness.startDaemon()
            try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
            let (solo, password) = try await harness.createTenant("solo")
            let proxy = try Spawner.spawn(
                SpawnSpec(executable: Harness.binary, arguments: ["proxy", "--root", harness.root, "--listen", "127.0.0.1:\(port)", "--tls", "require", "--max-connections-per-tenant", "2"], newSession: true),
                stdout: -1, stderr: -1
            )
            defer { kill(proxy, SIGTERM) }
            var ready = false
            for _ in 0..<100 where !ready {
                try await Task.sleep(for: .milliseconds(100))
                ready = (try? await psql("host=127.0.0.1 port=\(port) user=postgres@solo dbname=postgres sslmode=require", password: password, "select 1"))?.succeeded ?? false
            }
            #expect(ready, "the standalone proxy never served a query")
            let plain = try await psql("host=127.0.0.1 port=\(port) user=postgres@solo dbname=postgres sslmode=disable", password: password, "select 1")
            #expect(!plain.succeeded)
            #expect(plain.stderr.contains("requires TLS"), "\(plain.stderr)")
            // Two sessions are the limit for this tenant: the third gets 53300's message.
            let tls = "host=127.0.0.1 port=\(port) user=postgres@solo dbname=postgres sslmode=require"
            let holders = (0..<2).map { _ in Task { try await psql(tls, password: password, "select pg_sleep(10)") } }
            let held = try await harness.waitForQuery(
                solo, password: password, "select count(*) from pg_stat_activity where query = 'select pg_sleep(10)' and state = 'active'", toPrint: "2")
            #expect(held == "2")
            let third = try await psql(tls, password: password, "select 1")
            #expect(!third.succeeded)
            #expect(third.stderr.contains("too many clients already for tenant"), "\(third.stderr)")
            for holder in holders { #expect(try await holder.value.succeeded) }
            #expect(try await psql(tls, password: password, "select 1").succeeded)

            // Routes are kept for a few seconds, but a tenant suspended or stopped since is asked
            // about again (its socket is gone): the next client wakes it, or is told it is stopped.
            try await harness.mustRun(["tenant", "suspend", "solo"])
            let woken = try await psql(tls, password: password, "select 'awake'")
            #expect(woken.stdout.contains("awake"), "\(woken.stderr)")
            #expect(try await harness.info("solo").state == .running)
            try await harness.mustRun(["tenant", "stop", "solo"])
            let stopped = try await psql(tls, password: password, "select 1")
            #expect(!stopped.succeeded && stopped.stderr.contains("is stopped"), "\(stopped.stderr)")
            try await harness.mustRun(["tenant", "start", "solo"])
            #expect(try await psql(tls, password: password, "select 1").succeeded)

            // The proxy listens with SO_REUSEPORT (a socket per event loop); a second one on the
            // same port must still be refused, not share the port's connections.
            let second = try await Command.run("/usr/bin/timeout", ["20", Harness.binary, "proxy", "--root", harness.root, "--listen", "127.0.0.1:\(port)"])
            #expect(second.status == .exited(1) && second.stderr.contains("address already in use"), "\(second.status) \(second.stderr)")

            kill(proxy, SIGTERM)
            #expect(await ProcessWatcher.shared.waitForExit(pid: proxy, isChild: true) == .exited(0))
        }
    }
}

/// The value of `pgfleet_proxy_bytes_total` for one tenant and direction (0 before the first byte).
private func proxyBytes(_ harness: Harness, tenant: String, direction: String) async throws -> Int {
    let metrics = try await harness.mustRun(["status", "--metrics"])
    let line = metrics.split(separator: "\n").first {
        $0.hasPrefix("pgfleet_proxy_bytes_total{") && $0.contains("tenant=\"\(tenant)\"") && $0.contains("direction=\"\(direction)\"")
    }
    return line.flatMap { $0.split(separator: " ").last.flatMap { Int($0) } } ?? 0
}

// MARK: Clients

func psql(_ conninfo: String, password: String, _ commands: String...) async throws -> CommandResult {
    var environment = SpawnSpec.baseEnvironment
    environment["PGPASSWORD"] = password
    environment["PGCONNECT_TIMEOUT"] = "30"  // a ceiling: a loaded machine can be slow to wake a tenant
    var arguments = ["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conninfo]
    for command in commands { arguments += ["-c", command] }
    return try await Command.run(Harness.psql, arguments, environment: environment)
}

func pgbench(_ arguments: [String], conninfo: String, password: String) async throws -> CommandResult {
    var environment = SpawnSpec.baseEnvironment
    environment["PGPASSWORD"] = password
    return try await Command.run("/usr/lib/postgresql/15/bin/pgbench", arguments + [conninfo], environment: environment)
}

extension ProxyIntegrationTests {
    /// Prints 1 once psqlInterrupted's query runs on the tenant.
    static let sleeping30 = "select count(*) from pg_stat_activity where query = 'select pg_sleep(30)' and state = 'active'"
}

/// Runs `select pg_sleep(30)` in psql and sends it SIGINT, as Ctrl-C would, once `running` says
/// the query has started (before that, SIGINT cancels nothing); returns what psql printed.
func psqlInterrupted(conninfo: String, password: String, running: () async throws -> Bool) async throws -> String {
    var environment = SpawnSpec.baseEnvironment
    environment["PGPASSWORD"] = password
    let output = try Files.openLog("/tmp/pgfleet-psql-\(getpid()).out", mode: 0o600, owner: nil)
    defer {
        close(output)
        unlink("/tmp/pgfleet-psql-\(getpid()).out")
    }
    let pid = try Spawner.spawn(
        SpawnSpec(executable: Harness.psql, arguments: ["-X", "-d", conninfo, "-c", "select pg_sleep(30)"], environment: environment),
        stdout: output, stderr: output
    )
    let started = (try? await running()) ?? false
    kill(pid, SIGINT)
    if !started { Issue.record("the query to cancel never started") }
    _ = await ProcessWatcher.shared.waitForExit(pid: pid, isChild: true)
    return (try? String(contentsOfFile: "/tmp/pgfleet-psql-\(getpid()).out", encoding: .utf8)) ?? ""
}

func pythonChecks(port: Int, rootCert: String, tenants: [String: String], stopped: String, daemonPID: pid_t?) async throws -> CommandResult {
    let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("proxy_checks.py").path
    let input: [String: Any] = [
        "host": "127.0.0.1", "port": port, "rootcert": rootCert, "tenants": tenants, "stopped": stopped, "superuser": "postgres",
        "daemon_pid": daemonPID.map { Int($0) } ?? 0,
    ]
    let json = try JSONSerialization.data(withJSONObject: input)
    var environment = SpawnSpec.baseEnvironment
    environment["PATH"] = ProcessInfo.processInfo.environment["PATH"] ?? environment["PATH"]
    return try await Command.run("/usr/bin/env", ["python3", script], environment: environment, stdin: Array(json))
}

/// A TCP port nothing listens on right now.
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Bool in
            bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
        }
    }
    guard bound else { throw HarnessError("cannot find a free port") }
    return Int(UInt16(bigEndian: address.sin_port))
}
