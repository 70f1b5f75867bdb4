import ArgumentParser
import FleetCLI
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

    /// `pgfleet --root DIR tenant list` and `pgfleet tenant --root DIR list` work as well as
    /// `pgfleet tenant list --root DIR` (see `RootArgument`).
    static func main() async {
        await main(RootArgument.moved(Array(CommandLine.arguments.dropFirst())))
    }
}
