import FleetCore
import FleetSystem
import Foundation
import Testing

/// The daemon under a descriptor limit of 256 (soft and hard), as `ulimit -n 256` gives it, with
/// 400 clients at once through the proxy (issue 14, part 3).
@Suite(.serialized, integrationTrait)
struct DescriptorIntegrationTests {
    @Test func clientsBeyondTheDescriptorLimitAreRefusedAndServedAgainOnceOthersClose() async throws {
        let port = try freePort()
        try await withHarness(extraServeArguments: ["--no-system-bundles", "--listen", "127.0.0.1:\(port)"], fileLimit: 256) { harness in
            try await harness.startDaemon()
            let pid = try #require(harness.daemonPID)
            #expect(harness.serveLog().contains("descriptor limit (RLIMIT_NOFILE)"), "the limit is logged at start-up")
            try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
            let (_, password) = try await harness.createTenant("acme")
            let (_, otherPassword) = try await harness.createTenant("beta")
            // Room for every client in the tenant itself: descriptors, not max_connections, are what runs out.
            try await harness.mustRun(["tenant", "set", "acme", "max_connections=300", "--restart"])
            let postmaster = try #require(try await harness.info("acme").pid)
            #expect(Self.fileLimit(of: postmaster) == 256, "the postmaster's limit is capped at the daemon's hard limit")
            #expect(harness.serveLog().contains("below the 1064 each of the tenant's"), "and the log says what it lacks")

            let result = try await descriptorChecks(
                port: port, user: "postgres@acme", password: password, other: ("postgres@beta", otherPassword), clients: 400, daemonPID: pid
            )
            try #require(result.succeeded, "\(result.stdout)\n\(result.stderr)")
            let seen = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
            let sessions = seen["sessions"] as? Int ?? 0
            let refused = seen["refused"] as? Int ?? 0
            let cpu = seen["cpu"] as? Double ?? 1
            print("descriptors: \(sessions) sessions, \(refused) refused of 400; daemon fds at the limit \(seen["fds_at_limit"] ?? "?"), "
                + "while holding accepts \(seen["fds_while_holding"] ?? "?"); daemon CPU at the limit \(String(format: "%.1f", cpu * 100)) % of a core; "
                + "psql says: \((seen["psql_prefer"] as? [String: Any])?["stderr"] ?? "?")")

            #expect(sessions >= 20, "some clients fit")
            #expect(sessions + refused == 400, "every other client got the proxy's refusal: \(seen["other_errors"] ?? "")")
            #expect((seen["refusal_text"] as? String)?.contains("the pgfleet proxy is out of file descriptors (") == true)
            #expect(cpu < 0.3, "the daemon idles at the limit (no accept loop): \(cpu)")
            #expect(seen["held_query"] as? Int == 42, "an open session keeps answering: \(seen["held_query"] ?? "nil")")
            #expect(seen["other_query"] as? Int == 43, "so does one on another tenant: \(seen["other_query"] ?? "nil")")
            for answer in seen["raw"] as? [[String: Any]] ?? [] {
                #expect(answer["sqlstate"] as? String == "53300", "\(answer)")
                #expect((answer["message"] as? String)?.contains("out of file descriptors") == true, "\(answer)")
            }
            #expect((seen["raw"] as? [Any])?.count == 20)
            for mode in ["psql_prefer", "psql_disable"] {
                let psql = seen[mode] as? [String: Any] ?? [:]
                #expect((psql["stderr"] as? String)?.contains("the pgfleet proxy is out of file descriptors") == true, "psql prints it: \(psql)")
            }
            #expect(seen["again"] as? Int == sessions, "as many sessions once the others closed (each refused one asked again for 30 s): \(seen["again_errors"] ?? "")")

            // The daemon is still whole: the API answers and the tenant runs.
            #expect(try await harness.info("acme").state == .running)
        }
    }

    /// The soft RLIMIT_NOFILE of a process, from /proc/PID/limits.
    static func fileLimit(of pid: pid_t) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Max open files") }) else { return nil }
        return line.split(separator: " ").compactMap { Int($0) }.first
    }
}

func descriptorChecks(
    port: Int, user: String, password: String, other: (user: String, password: String), clients: Int, daemonPID: pid_t
) async throws -> CommandResult {
    let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("descriptor_checks.py").path
    let input: [String: Any] = [
        "host": "127.0.0.1", "port": port, "user": user, "password": password, "clients": clients, "daemon_pid": Int(daemonPID),
        "psql": Harness.psql, "other_user": other.user, "other_password": other.password,
    ]
    var environment = SpawnSpec.baseEnvironment
    environment["PATH"] = ProcessInfo.processInfo.environment["PATH"] ?? environment["PATH"]
    return try await Command.run("/usr/bin/env", ["python3", script], environment: environment, stdin: Array(try JSONSerialization.data(withJSONObject: input)))
}
