import ArgumentParser
import FleetCore

@main
struct PGFleet: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pgfleet",
        abstract: "Run one PostgreSQL cluster per tenant on this host.",
        discussion: """
            `pgfleet serve` is the daemon: it keeps a catalog of PostgreSQL builds (bundles) and \
            tenants under one root directory, runs each tenant's postmaster as its own OS user with \
            its own data directory, socket directory and log, and restarts it when it crashes. \
            Every other command talks to that daemon over its unix socket, ROOT/run/api.sock.

            Typical first steps:
              pgfleet serve &                                  (as root)
              pgfleet bundle import /usr/lib/postgresql/16 --default
              pgfleet tenant create acme
              pgfleet tenant list

            The root is --root, else $PGFLEET_ROOT, else /var/lib/pgfleet when run as root and \
            ~/.local/share/pgfleet otherwise; the daemon and the CLI must agree on it.
            """,
        version: PGFleetVersion.current,
        subcommands: [
            Serve.self,
            StatusCommand.self,
            BundleCommand.self,
            TenantCommand.self,
            ProxyCommand.self,
            DoctorCommand.self,
        ]
    )

    /// `pgfleet --root DIR tenant list` works as well as `pgfleet tenant list --root DIR`: every
    /// command that uses the root takes `--root`, so one given before the subcommand moves to the end.
    static func main() async {
        await main(Self.movingRootOption(Array(CommandLine.arguments.dropFirst())))
    }

    static func movingRootOption(_ arguments: [String]) -> [String] {
        guard let first = arguments.first else { return arguments }
        if first == "--root", arguments.count >= 3 {
            return Array(arguments.dropFirst(2)) + ["--root", arguments[1]]
        }
        if first.hasPrefix("--root="), arguments.count >= 2 {
            return Array(arguments.dropFirst()) + [first]
        }
        return arguments
    }
}
