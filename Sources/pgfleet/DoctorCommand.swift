import ArgumentParser
import FleetCLI
import FleetHost
import Foundation

struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check this host's kernel settings for running many PostgreSQL clusters: each ok, warn or fail, with the fix.",
        discussion: "Exit status: 0 when every check is ok, 1 when one warns, 2 when one fails. Needs no daemon."
    )

    @Flag(help: "Print the checks as JSON.")
    var json = false

    func run() async throws {
        let checks = HostChecks.all()
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
}
