import FleetCore
import FleetHost
import FleetSystem
import Foundation
import Testing

/// `pgfleet doctor` on this very host: every check printed, the exit status its worst; with a
/// daemon, its checks against its tenants' needs; and `serve`'s log naming each check not ok.
@Suite(.serialized, integrationTrait)
struct DoctorIntegrationTests {
    static let names = HostChecks.all().map(\.name) + ["cgroup version", "cgroup delegation", "/dev/shm", "huge pages", "descriptors", "disk free", Doctor.needsName]

    /// Runs `doctor --json` and `doctor`, checks what every run must show, returns the checks.
    static func doctor(_ run: ([String]) async throws -> CommandResult) async throws -> [HostCheck] {
        let result = try await run(["doctor", "--json"])
        let checks = try JSONDecoder().decode([HostCheck].self, from: Data(result.stdout.utf8))
        #expect(checks.map(\.name) == names)
        #expect(checks.allSatisfy { $0.status == .ok || $0.fix != nil }, "every warning and failure names its fix: \(checks.filter { $0.status != .ok && $0.fix == nil })")
        let expected: FleetCore.ExitStatus = switch HostChecks.worst(checks) {
        case .ok: .exited(0)
        case .warn: .exited(1)
        case .fail: .exited(2)
        }
        #expect(result.status == expected, "\(result.status): \(result.stderr)")
        let text = try await run(["doctor"])
        #expect(text.status == expected)
        for check in checks { #expect(text.stdout.contains("\(check.name): "), "\(check.name) is not printed") }
        for check in checks where check.status != .ok {
            #expect(text.stdout.contains("\(check.status.rawValue) \(check.name): "))
        }
        return checks
    }

    @Test func withoutADaemonTheHostIsCheckedAndTheTenantsNeedsAreSaidNotToBe() async throws {
        // A root no daemon serves (and that doctor does not make).
        let root = "/tmp/pgfleet-doctor-none-\(UUID().uuidString.prefix(8))"
        let checks = try await Self.doctor { try await Command.run(Harness.binary, $0 + ["--root", root]) }
        let needs = try #require(checks.last)
        #expect(needs.status == .ok)
        #expect(needs.detail.hasPrefix("NOT checked: no pgfleet daemon runs for \(root)"), "\(needs.detail)")
        #expect(checks.first { $0.name == "descriptors" }?.detail.contains("not weighed against the tenants") == true)
        #expect(checks.first { $0.name == "cgroup version" }?.detail.hasPrefix("hybrid: ") == true, "this host mounts v1 beside v2")
        #expect(!FileManager.default.fileExists(atPath: root))
    }

    @Test func withADaemonItsChecksWeighTheHostAgainstItsTenants() async throws {
        try await withHarness(extraServeArguments: ["--no-system-bundles", "--listen", "none", "--pool-size", "0"]) { harness in
            try await harness.startDaemon()
            let atStart = try await Self.doctor { try await harness.cli($0) }
            #expect(atStart.last?.detail.hasPrefix("checked against the daemon's 0 tenants") == true, "\(atStart.last?.detail ?? "")")

            // serve logged every check that is not ok (as a warning), and started all the same.
            let log = harness.serveLog()
            for check in atStart where check.status != .ok {
                #expect(log.contains("doctor: \(check.name): "), "serve's log does not name \(check.name):\n\(log)")
            }
            for check in atStart where check.status == .ok {
                #expect(!log.contains("doctor: \(check.name): "), "an ok check was logged: \(check.name)")
            }

            try await harness.mustRun(["bundle", "import", "/usr/lib/postgresql/15"])
            _ = try await harness.createTenant("checked")
            try await harness.mustRun(["tenant", "set", "checked", "max_connections=90", "wal_keep_size=100MB"])
            let checks = try await Self.doctor { try await harness.cli($0) }
            let needs = try #require(checks.last)
            #expect(needs.detail.hasPrefix("checked against the daemon's 1 tenant (90 max_connections, WAL reserve 356MB, sandboxed)"), "\(needs.detail)")
            let descriptors = try #require(checks.first { $0.name == "descriptors" })
            #expect(descriptors.detail.contains("2 × 90 max_connections"), "\(descriptors.detail)")
            let disk = try #require(checks.first { $0.name == "disk free" })
            #expect(disk.detail.contains("at \(harness.root) against a WAL reserve of 356MB"), "\(disk.detail)")
            #expect(checks.first { $0.name == "/dev/shm" }?.detail.contains("private /dev/shm") == true)
        }
    }
}
