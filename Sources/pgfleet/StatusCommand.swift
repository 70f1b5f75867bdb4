import ArgumentParser
import FleetCLI
import FleetClient
import FleetCore
import Foundation

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show whether the daemon is running, and a summary of its tenants and bundles."
    )

    @OptionGroup var rootOptions: RootOptions

    @Flag(help: "Print the daemon's status as JSON.")
    var json = false

    @Flag(help: "Print the daemon's Prometheus metrics instead.")
    var metrics = false

    func run() async throws {
        try await reportingErrors {
            let client = FleetClient(layout: rootOptions.layout)
            if metrics {
                Terminal.out(try await client.metrics())
                return
            }
            let status = try await client.status()
            if json {
                try Terminal.printJSON(status)
            } else {
                Terminal.out(Presentation.statusDetails(status, socketPath: client.socketPath, now: Date()))
            }
        }
    }
}
