import FleetCore
import FleetSystem
import Foundation
import Testing

/// asyncpg through the proxy: it waits for the server to close after Terminate, and over TLS it
/// closes without close_notify.
@Suite(.serialized, .enabled(if: geteuid() == 0, "integration tests create OS users and need root"))
struct DriverIntegrationTests {
    @Test func asyncpgClosesAndReusesPooledSessions() async throws {
        try await run(serverPool: true)
    }

    @Test func asyncpgClosesOnTheDirectPath() async throws {
        try await run(serverPool: false)
    }

    private func run(serverPool: Bool) async throws {
        let port = try freePort()
        var arguments = ["--no-system-bundles", "--listen", "127.0.0.1:\(port)"]
        if !serverPool { arguments += ["--server-pool", "off"] }
        try await withHarness(extraServeArguments: arguments) { harness in
            try await harness.startDaemon()
            try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
            let (_, password) = try await harness.createTenant("acme")
            let result = try await driverChecks(port: port, user: "postgres@acme", password: password, reuse: serverPool)
            for line in result.stdout.split(separator: "\n") where line.hasPrefix("FAIL") { Issue.record("\(line)") }
            #expect(result.succeeded, "\(result.stdout)\n\(result.stderr)")
        }
    }
}

func driverChecks(port: Int, user: String, password: String, reuse: Bool) async throws -> CommandResult {
    let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("driver_checks.py").path
    let input: [String: Any] = ["host": "127.0.0.1", "port": port, "user": user, "password": password, "reuse": reuse]
    let json = try JSONSerialization.data(withJSONObject: input)
    var environment = SpawnSpec.baseEnvironment
    environment["PATH"] = ProcessInfo.processInfo.environment["PATH"] ?? environment["PATH"]
    return try await Command.run("/usr/bin/env", ["python3", script], environment: environment, stdin: Array(json))
}
