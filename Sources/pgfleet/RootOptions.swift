import ArgumentParser
import FleetCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// `--root`, shared by every command that talks to (or is) the daemon.
struct RootOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "The pgfleet root directory (defaults to $PGFLEET_ROOT, /var/lib/pgfleet as root, ~/.local/share/pgfleet otherwise).",
            valueName: "dir"
        )
    )
    var root: String?

    var layout: FleetLayout {
        FleetLayout(root: FleetLayout.resolveRoot(option: root, isRoot: geteuid() == 0))
    }
}
