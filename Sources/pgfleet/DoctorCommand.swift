import ArgumentParser
import FleetCLI
import FleetClient
import FleetCore
import FleetHost
import Foundation

struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check this host for running many PostgreSQL clusters: each ok, warn or fail, with the fix.",
        discussion: """
            With a daemon running for --root, the checks are the daemon's own (its descriptor limit, its cgroup) \
            against what its tenants need (max_connections, max_files_per_process, max_wal_size, from their \
            configuration files). Without one, only the host is checked, and the output says so. \
            Exit status: 0 when every check is ok, 1 when one warns, 2 when one fails.
            """
    )

    @OptionGroup var rootOptions: RootOptions

    @Flag(help: "Print the checks as JSON.")
    var json = false

    func run() async throws {
        let checks = await Self.checks(layout: rootOptions.layout)
        if json {
            try Terminal.printJSON(checks)
        } else {
            var lines: [String] = []
            for check in checks {
                lines.append("\(check.status.rawValue.padding(toLength: 4, withPad: " ", startingAt: 0)) \(check.name): \(check.detail)")
                if let fix = check.fix, check.status != .ok { lines.append("     fix: \(fix)") }
            }
            Terminal.out(lines.joined(separator: "\n"))
        }
        switch HostChecks.worst(checks) {
        case .ok: return
        case .warn: throw ExitCode(1)
        case .fail: throw ExitCode(2)
        }
    }

    /// The daemon's checks when one answers; the host's alone, saying why, when none does.
    static func checks(layout: FleetLayout) async -> [HostCheck] {
        let reason: String
        if FileManager.default.fileExists(atPath: layout.apiSocketPath) {
            do {
                return try await FleetClient(layout: layout).doctor().checks
            } catch FleetError.daemonUnavailable {
                reason = "no pgfleet daemon answers at \(layout.apiSocketPath)"
            } catch {
                // An older daemon without /v1/doctor, or one failing to read its catalog.
                reason = "the daemon at \(layout.apiSocketPath) did not report its tenants (\(userMessage(for: error)))"
            }
        } else {
            reason = "no pgfleet daemon runs for \(layout.root)"
        }
        return Doctor.checks(fleetRoot: layout.root, demand: .unknown(reason: reason))
    }
}
