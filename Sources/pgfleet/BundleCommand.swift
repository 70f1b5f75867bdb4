import ArgumentParser
import FleetCLI
import FleetClient
import FleetCore
import Foundation

struct BundleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bundle",
        abstract: "Import, list, choose and remove the PostgreSQL builds (bundles) that tenants run on.",
        subcommands: [Import.self, List.self, Verify.self, Default.self, Remove.self]
    )

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "import",
            abstract: "Import a PostgreSQL build into the root.",
            discussion: """
                PATH is an installed PostgreSQL (a directory with bin/postgres, such as \
                /usr/lib/postgresql/16) or a release tarball. The daemon copies it under \
                ROOT/bundles/, so later package upgrades do not change running tenants.
                """
        )

        @OptionGroup var rootOptions: RootOptions

        @Argument(help: ArgumentHelp("The PostgreSQL installation directory or tarball.", valueName: "path"))
        var path: String

        @Flag(name: .customLong("default"), help: "Make it the default bundle for its major version and for new tenants.")
        var makeDefault = false

        func run() async throws {
            try await reportingErrors {
                // The daemon has its own working directory: send an absolute path.
                let absolute = URL(fileURLWithPath: path, isDirectory: false).standardizedFileURL.path
                let client = FleetClient(layout: rootOptions.layout)
                let result = try await client.importBundle(
                    ImportBundleRequest(path: absolute, makeDefault: makeDefault ? true : nil),
                    onEvent: Terminal.progress
                )
                guard let bundle = result.bundle else {
                    Terminal.out(result.message ?? "imported")
                    return
                }
                var line = "imported bundle \(bundle.id): PostgreSQL \(bundle.version), \(bundle.fileCount) files, at \(bundle.path)"
                if bundle.isDefault { line += " (default)" }
                Terminal.out(line)
                if let verification = bundle.verification { Terminal.out(Verify.describe(verification, id: bundle.id)) }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List imported bundles.")

        @OptionGroup var rootOptions: RootOptions

        @Flag(help: "Print the bundles as a JSON array.")
        var json = false

        func run() async throws {
            try await reportingErrors {
                let bundles = try await FleetClient(layout: rootOptions.layout).listBundles()
                if json {
                    try Terminal.printJSON(bundles)
                } else if bundles.isEmpty {
                    Terminal.out("no bundles imported; import one with `pgfleet bundle import PATH --default`")
                } else {
                    Terminal.out(Presentation.bundleTable(bundles))
                }
            }
        }
    }

    struct Default: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "default",
            abstract: "Make a bundle its major version's default (what `tenant create --pg N` runs).",
            discussion: """
                Each major version with bundles has one default; with --fleet the bundle also becomes \
                the default for tenants created without --pg. Existing tenants stay on their bundle \
                (move them with `pgfleet tenant update`).
                """
        )

        @OptionGroup var rootOptions: RootOptions

        @Argument(help: ArgumentHelp("The bundle id (see `pgfleet bundle list`).", valueName: "id"))
        var id: String

        @Flag(help: "Also make it the default for tenants created without --pg.")
        var fleet = false

        func run() async throws {
            try await reportingErrors {
                let bundle = try await FleetClient(layout: rootOptions.layout).setDefaultBundle(id, fleet: fleet)
                var line = "bundle \(bundle.id) is the default for PostgreSQL \(bundle.major)"
                if bundle.isDefault { line += " and for new tenants without --pg" }
                Terminal.out(line)
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "remove",
            abstract: "Remove a bundle that no tenant uses (its files under ROOT/bundles go too).",
            discussion: """
                Refused while any tenant runs on it. A removed system installation (such as Debian's \
                /usr/lib/postgresql/15) is not registered again when the daemon restarts; import it \
                again to get it back.
                """
        )

        @OptionGroup var rootOptions: RootOptions

        @Argument(help: ArgumentHelp("The bundle id (see `pgfleet bundle list`).", valueName: "id"))
        var id: String

        func run() async throws {
            try await reportingErrors {
                let bundle = try await FleetClient(layout: rootOptions.layout).removeBundle(id)
                Terminal.out("removed bundle \(bundle.id) (PostgreSQL \(bundle.version), \(bundle.path))")
            }
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "verify",
            abstract: "Prove a bundle in a sandbox holding only it and its declared host files.",
            discussion: """
                Runs initdb, a server on a unix socket, time zones, a text sort, CREATE EXTENSION of every \
                extension the bundle ships, pg_dump and pg_upgrade --help as an unprivileged user in a \
                sandbox that holds nothing of the host but the files the bundle declares, and checks every \
                file against the manifest. The result is recorded in the bundle's manifest; a vendored \
                bundle that fails (or any bundle whose files changed) is refused for new tenants. \
                Exits 1 when a check failed. Needs the daemon to run as root.
                """
        )

        @OptionGroup var rootOptions: RootOptions

        @Argument(help: ArgumentHelp("The bundle's id, as `pgfleet bundle list` shows it.", valueName: "id"))
        var id: String

        @Flag(help: "Print the bundle with its verification as JSON.")
        var json = false

        func run() async throws {
            try await reportingErrors {
                let client = FleetClient(layout: rootOptions.layout)
                let onEvent: (StreamEvent) async throws -> Void = json ? { _ in } : { Terminal.progress($0) }
                let result = try await client.verifyBundle(id, onEvent: onEvent)
                guard let bundle = result.bundle, let verification = bundle.verification else {
                    throw FleetError.failed("the daemon sent no verification result for \(id)")
                }
                if json {
                    try Terminal.printJSON(bundle)
                } else {
                    Terminal.out(Self.describe(verification, id: bundle.id))
                }
                if !verification.passed { throw ExitCode(1) }
            }
        }

        /// One line per check with ✓/✗ and its detail, then the verdict.
        static func describe(_ verification: BundleVerificationInfo, id: String) -> String {
            var lines = verification.checks.map { check in
                (check.passed ? "✓ " : "✗ ") + check.name + (check.detail.map { ": " + $0 } ?? "")
            }
            let failed = verification.checks.filter { !$0.passed }.count
            lines.append(
                verification.passed
                    ? "bundle \(id) passed all \(verification.checks.count) checks"
                    : "bundle \(id) failed \(failed) of \(verification.checks.count) checks" + (verification.usable ? " (still usable)" : " (refused for new tenants)")
            )
            if let note = verification.note { lines.append(note) }
            return lines.joined(separator: "\n")
        }
    }
}
