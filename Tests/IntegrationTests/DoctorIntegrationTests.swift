import FleetCore
import FleetHost
import FleetSystem
import Foundation
import Testing

/// `pgfleet doctor` on this very host: every check printed, the exit status its worst.
@Suite(integrationTrait)
struct DoctorIntegrationTests {
    @Test func doctorPrintsEveryCheckAndExitsWithTheWorst() async throws {
        let result = try await Command.run(Harness.binary, ["doctor", "--json"])
        let checks = try JSONDecoder().decode([HostCheck].self, from: Data(result.stdout.utf8))
        #expect(checks.map(\.name) == HostChecks.all().map(\.name))
        #expect(checks.allSatisfy { $0.status == .ok || $0.fix != nil }, "every warning and failure names its fix")
        let expected: FleetCore.ExitStatus = switch HostChecks.worst(checks) {
        case .ok: .exited(0)
        case .warn: .exited(1)
        case .fail: .exited(2)
        }
        #expect(result.status == expected, "\(result.status): \(result.stderr)")
        let text = try await Command.run(Harness.binary, ["doctor"])
        for check in checks { #expect(text.stdout.contains("\(check.name): "), "\(check.name) is not printed") }
    }
}
