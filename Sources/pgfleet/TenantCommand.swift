import ArgumentParser
import FleetCLI
import FleetClient
import FleetCore
import Foundation

struct TenantCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tenant",
        abstract: "Create, inspect, start, stop and drop tenants (one PostgreSQL cluster each).",
        discussion: "Tenant names match ^[a-z][a-z0-9-]{0,62}$.",
        subcommands: [
            Create.self, List.self, Info.self, Start.self, Stop.self, Suspend.self, Restart.self, SetSettings.self, Password.self, Drop.self, Logs.self,
            Update.self,
        ]
    )

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "create",
            abstract: "Create a tenant: initdb, configure, start.",
            discussion: """
                Without --password the daemon generates one and this command prints it once: it \
                is stored nowhere. A password given with --password is visible to other users in \
                the process list while this command runs; prefer a generated one and change it \
                in SQL afterwards if needed.
                """
        )

        @OptionGroup var rootOptions: RootOptions

        @Argument(help: ArgumentHelp("The tenant's name.", valueName: "name"))
        var name: String

        @Option(name: .customLong("pg"), help: ArgumentHelp("The PostgreSQL major version (default: the default bundle's).", valueName: "major"))
        var major: Int?

        @Option(help: ArgumentHelp("An exact bundle id (see `pgfleet bundle list`); wins over --pg.", valueName: "id"))
        var bundle: String?

        @Option(help: ArgumentHelp("The superuser role to create (default: postgres).", valueName: "role"))
        var superuser: String?

        @Option(help: ArgumentHelp("The superuser's password (default: generated and printed once).", valueName: "pw"))
        var password: String?

        @Option(help: ArgumentHelp(
            "Suspend after this long without a client, e.g. 30s, 10m, 1h; 0 never (default: the daemon's --suspend-after).",
            valueName: "duration"
        ))
        var suspendAfter: String?

        @Option(help: ArgumentHelp(
            "The sandbox's network: none (no TCP or UDP at all; clients still reach it through the proxy) or host (for postgres_fdw, dblink).",
            valueName: "none|host"
        ))
        var network: String?

        @OptionGroup(title: "Limits") var limits: LimitOptions

        func run() async throws {
            try await reportingErrors {
                // The command line's own forms, then the request's one validation, as the daemon does it.
                if let major, major <= 0 {
                    throw FleetError.invalidRequest("--pg must be a PostgreSQL major version such as 16, got \(major)")
                }
                var seconds: Int? = nil
                if let suspendAfter {
                    guard let parsed = DurationText.seconds(suspendAfter) else {
                        throw FleetError.invalidRequest("--suspend-after must be a duration such as 30s, 10m, 1h or 0 (never), got \"\(suspendAfter.debugClipped)\"")
                    }
                    seconds = parsed
                }
                let request = CreateTenantRequest(
                    name: name, pg: major, bundle: bundle, superuser: superuser, password: password, suspendAfter: seconds,
                    limits: try limits.change(), network: network
                )
                let tenantName = try request.validated(spelling: .commandLine).name
                let result = try await FleetClient(layout: rootOptions.layout).createTenant(request, onEvent: Terminal.progress)
                guard let tenant = result.tenant else {
                    Terminal.out(result.message ?? "created tenant \(tenantName)")
                    return
                }
                var lines = [
                    "created tenant \(tenant.name): PostgreSQL \(tenant.version) (bundle \(tenant.bundle)), \(tenant.state.rawValue)",
                    "",
                    Presentation.keyValueLines([
                        ("superuser", tenant.superuser),
                        ("os user", tenant.osUser),
                        ("limits", tenant.limits?.summary ?? "none"),
                        ("socket directory", tenant.socketDirectory),
                        ("data directory", tenant.dataDirectory),
                        ("log file", tenant.logFile),
                    ]),
                ]
                if let generated = result.password {
                    lines += Presentation.generatedPasswordLines(superuser: tenant.superuser, password: generated)
                }
                lines += ["", "connect with:"] + Presentation.connectLines(tenant)
                Terminal.out(lines.joined(separator: "\n"))
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List tenants with their state, processes and paths.")

        @OptionGroup var rootOptions: RootOptions

        @Flag(help: "Print the tenants as a JSON array.")
        var json = false

        func run() async throws {
            try await reportingErrors {
                let tenants = try await FleetClient(layout: rootOptions.layout).listTenants()
                if json {
                    try Terminal.printJSON(tenants)
                } else if tenants.isEmpty {
                    Terminal.out("no tenants; create one with `pgfleet tenant create NAME`")
                } else {
                    Terminal.out(Presentation.tenantTable(tenants, now: Date()))
                }
            }
        }
    }

    struct Info: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "info", abstract: "Show everything about one tenant.")

        @OptionGroup var rootOptions: RootOptions

        @Argument(help: ArgumentHelp("The tenant's name.", valueName: "name"))
        var name: String

        @Flag(help: "Print the tenant as JSON.")
        var json = false

        func run() async throws {
            try await reportingErrors {
                let tenantName = try validatedTenantName(name)
                let tenant = try await FleetClient(layout: rootOptions.layout).tenantInfo(tenantName)
                if json {
                    try Terminal.printJSON(tenant)
                } else {
                    Terminal.out(Presentation.tenantDetails(tenant, now: Date()))
                }
            }
        }
    }

    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "start", abstract: "Start a tenant and wait until it accepts connections.")

        @OptionGroup var rootOptions: RootOptions

        @Argument(help: ArgumentHelp("The tenant's name.", valueName: "name"))
        var name: String

        func run() async throws {
            try await lifecycle(rootOptions, name, verb: "started") { client, name in try await client.startTenant(name) }
        }
    }

    struct Stop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "stop",
            abstract: "Stop a tenant (fast shutdown); it stays stopped until started again."
        )

        @OptionGroup var rootOptions: RootOptions

        @Argument(help: ArgumentHelp("The tenant's name.", valueName: "name"))
        var name: String

        func run() async throws {
            try await lifecycle(rootOptions, name, verb: "stopped") { client, name in try await client.stopTenant(name) }
        }
    }

    struct Suspend: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "suspend",
            abstract: "Suspend a running tenant now (clean shutdown); the next connection through the proxy wakes it.",
            discussion: "Unlike `stop`, a suspended tenant is still wanted: it starts again on demand. A stopped one refuses connections until `tenant start`."
        )

        @OptionGroup var rootOptions: RootOptions

        @Argument(help: ArgumentHelp("The tenant's name.", valueName: "name"))
        var name: String

        func run() async throws {
            try await lifecycle(rootOptions, name, verb: "suspended") { client, name in try await client.suspendTenant(name) }
        }
    }

    struct SetSettings: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set",
            abstract: "Change a tenant's limits or PostgreSQL settings: checked, then applied at once where possible.",
            discussion: """
                Each NAME=VALUE is validated by the tenant's bundle (names, units and ranges of its \
                version) before anything changes, stored in the tenant's pgfleet.settings.conf, and \
                applied with a reload. Settings that need a restart (e.g. shared_buffers) are reported; \
                --restart restarts the tenant to apply them at once. Limits (--cpu, --memory, --pids, \
                --io-weight) change the tenant's cgroups while it runs; with a memory limit, settings \
                that could not fit in it are refused, with the arithmetic.
                """
        )

        @OptionGroup var rootOptions: RootOptions

        @Argument(help: ArgumentHelp("The tenant's name.", valueName: "name"))
        var name: String

        @Argument(help: ArgumentHelp("Settings, e.g. work_mem=16MB shared_buffers=64MB.", valueName: "name=value"))
        var settings: [String] = []

        @Flag(help: "Restart the tenant if a setting (or --network) needs it.")
        var restart = false

        @Option(help: ArgumentHelp(
            "A new sandbox network, from the next start's network: none (no TCP or UDP at all; clients still reach it through the proxy) or host (for postgres_fdw, dblink).",
            valueName: "none|host"
        ))
        var network: String?

        @OptionGroup(title: "Limits") var limits: LimitOptions

        func run() async throws {
            try await reportingErrors {
                let tenantName = try validatedTenantName(name)
                let limitsChange = try limits.change()
                guard !settings.isEmpty || limitsChange != nil || network != nil else {
                    throw FleetError.invalidRequest("give a limit (e.g. --memory 512MB), --network none|host, or a setting as name=value (e.g. work_mem=16MB)")
                }
                if let network { _ = try SandboxNetwork(validating: network) }
                let parsed = try settings.map { pair -> SettingsRequest.Setting in
                    guard let equals = pair.firstIndex(of: "="), equals != pair.startIndex else {
                        throw FleetError.invalidRequest("\"\(pair.debugClipped)\" is not name=value")
                    }
                    return SettingsRequest.Setting(name: String(pair[..<equals]), value: String(pair[pair.index(after: equals)...]))
                }
                let result = try await FleetClient(layout: rootOptions.layout)
                    .setSettings(tenantName, SettingsRequest(settings: parsed, restart: restart, limits: limitsChange, network: network))
                var lines = result.applied.map { "set \($0)" }
                if limitsChange != nil { lines.append("limits now: \(result.tenant.limits?.summary ?? "none")") }
                lines += (result.notes ?? []).map { "note: \($0)" }
                if result.restarted { lines.append("restarted tenant \(tenantName): the settings are in effect") }
                if !result.restartNeeded.isEmpty {
                    lines.append("restart needed for \(result.restartNeeded.joined(separator: ", ")): run `pgfleet tenant restart \(tenantName)` or repeat with --restart")
                } else if !result.restarted && !result.applied.isEmpty {
                    lines.append(result.tenant.state == .running ? "reloaded: the settings are in effect" : "stored: they apply when tenant \(tenantName) starts")
                }
                Terminal.out(lines.joined(separator: "\n"))
            }
        }
    }

    struct Restart: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "restart", abstract: "Restart a tenant and wait until it accepts connections.")

        @OptionGroup var rootOptions: RootOptions

        @Argument(help: ArgumentHelp("The tenant's name.", valueName: "name"))
        var name: String

        func run() async throws {
            try await lifecycle(rootOptions, name, verb: "restarted") { client, name in try await client.restartTenant(name) }
        }
    }

    struct Password: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "password",
            abstract: "Give a tenant's superuser a new password.",
            discussion: """
                Without --password-stdin the daemon generates a password and this command prints \
                it once: it is stored nowhere. With --password-stdin the first line of standard \
                input is the password (pipe it in; a terminal would show it as you type). A \
                running tenant is stopped for the change and started again, so its open sessions \
                end; a stopped or suspended tenant stays so. The password reaches the tenant only \
                as a SCRAM verifier.
                """
        )

        @OptionGroup var rootOptions: RootOptions

        @Argument(help: ArgumentHelp("The tenant's name.", valueName: "name"))
        var name: String

        @Flag(help: "Read the new password from the first line of standard input.")
        var passwordStdin = false

        func run() async throws {
            try await reportingErrors {
                let tenantName = try validatedTenantName(name)
                var password: String? = nil
                if passwordStdin {
                    guard let line = readLine(strippingNewline: true), !line.isEmpty else {
                        throw FleetError.invalidRequest("--password-stdin: the first line of standard input is empty or missing; pipe the new password in on one line")
                    }
                    password = line
                }
                let result = try await FleetClient(layout: rootOptions.layout).resetPassword(tenantName, PasswordRequest(password: password))
                let tenant = result.tenant
                var lines = [
                    "new password set for \(tenant.superuser) in tenant \(tenant.name): "
                        + (result.restarted ? "restarted, \(tenant.state.rawValue)" : tenant.state.rawValue),
                ]
                if let generated = result.password {
                    lines += Presentation.generatedPasswordLines(superuser: tenant.superuser, password: generated)
                }
                lines += ["", "connect with:"] + Presentation.connectLines(tenant)
                Terminal.out(lines.joined(separator: "\n"))
            }
        }
    }

    struct Drop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "drop",
            abstract: "Stop a tenant and delete it with all its data.",
            discussion: "Without --yes, asks you to type the tenant's name (and refuses when stdin is not a terminal)."
        )

        @OptionGroup var rootOptions: RootOptions

        @Argument(help: ArgumentHelp("The tenant's name.", valueName: "name"))
        var name: String

        @Flag(name: [.long, .short], help: "Do not ask for confirmation.")
        var yes = false

        func run() async throws {
            try await reportingErrors {
                let tenantName = try validatedTenantName(name)
                if !yes {
                    guard Terminal.stdinIsTerminal else {
                        throw FleetError.invalidRequest("refusing to drop tenant \(tenantName) without --yes (stdin is not a terminal)")
                    }
                    Terminal.err("This stops tenant \(tenantName) and deletes its data directory for good.")
                    Terminal.prompt("Type the tenant name to confirm: ")
                    let answer = readLine(strippingNewline: true)?.trimmingCharacters(in: .whitespaces)
                    guard answer == tenantName.rawValue else {
                        throw FleetError.invalidRequest("confirmation did not match; tenant \(tenantName) was not dropped")
                    }
                }
                _ = try await FleetClient(layout: rootOptions.layout).dropTenant(tenantName, onEvent: Terminal.progress)
                Terminal.out("dropped tenant \(tenantName)")
            }
        }
    }

    struct Logs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "logs",
            abstract: "Print a tenant's PostgreSQL log.",
            discussion: "With --follow, keeps printing what is appended (across log rotation) until Ctrl-C."
        )

        @OptionGroup var rootOptions: RootOptions

        @Argument(help: ArgumentHelp("The tenant's name.", valueName: "name"))
        var name: String

        @Option(name: [.customShort("n"), .long], help: ArgumentHelp("How many lines from the end to print (default: 100).", valueName: "n"))
        var lines: Int?

        @Flag(name: [.short, .long], help: "Keep printing appended lines until interrupted.")
        var follow = false

        func validate() throws {
            if let lines, lines < 0 { throw ValidationError("--lines must be 0 or more") }
        }

        func run() async throws {
            try await reportingErrors {
                let tenantName = try validatedTenantName(name)
                try await FleetClient(layout: rootOptions.layout).logs(name: tenantName, lines: lines, follow: follow) { bytes in
                    Terminal.raw(bytes)
                }
            }
        }
    }
}

/// start, stop and restart: one call, then the tenant's new state.
private func lifecycle(
    _ rootOptions: RootOptions,
    _ rawName: String,
    verb: String,
    _ call: (FleetClient, TenantName) async throws -> TenantInfo
) async throws {
    try await reportingErrors {
        let name = try validatedTenantName(rawName)
        let tenant = try await call(FleetClient(layout: rootOptions.layout), name)
        var line = "\(verb) tenant \(tenant.name): \(tenant.state.rawValue)"
        if let pid = tenant.pid { line += " (pid \(pid))" }
        Terminal.out(line)
        if let reason = tenant.failureReason, tenant.state == .failed || tenant.state == .backoff {
            Terminal.err("  \(tenant.state.rawValue): \(reason)")
        }
    }
}

extension TenantCommand {
    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "update",
            abstract: "Move tenants to another minor release of their PostgreSQL major.",
            discussion: """
                The tenant is stopped, switched to the bundle and started again (one restart); \
                its data and passwords stay. Refused before anything changes when the bundle \
                lacks a collation provider the tenant uses (ICU), or when the glibc or ICU that \
                sorts its indexes differs from the one they were built with: then --reindex \
                rebuilds exactly those indexes, refreshes the recorded collation versions and \
                verifies them with pg_amcheck --heapallindexed (installing the amcheck extension \
                in their databases). If the tenant does not start on the new bundle it goes back \
                to the old one. With --all, every tenant of the bundle's major, one at a time.
                """
        )

        @OptionGroup var rootOptions: RootOptions

        @Argument(help: ArgumentHelp("The tenant's name (omit with --all).", valueName: "name"))
        var name: String?

        @Option(help: ArgumentHelp("The bundle to move to (`pgfleet bundle list`).", valueName: "id"))
        var bundle: String

        @Flag(help: "Rebuild and verify the indexes whose collation versions changed.")
        var reindex = false

        @Flag(help: "Every tenant of the bundle's major not already on it.")
        var all = false

        func run() async throws {
            try await reportingErrors {
                let client = FleetClient(layout: rootOptions.layout)
                var names: [TenantName] = []
                if all {
                    guard name == nil else { throw FleetError.invalidRequest("give a tenant name or --all, not both") }
                    guard let target = try await client.listBundles().first(where: { $0.id == bundle }) else { throw FleetError.bundleNotFound(bundle) }
                    names = try await client.listTenants().filter { $0.major == target.major && $0.bundle != target.id }.map { try validatedTenantName($0.name) }
                    if names.isEmpty { Terminal.out("no tenant of PostgreSQL \(target.major) to move to \(target.id)") }
                } else {
                    guard let name else { throw FleetError.invalidRequest("name the tenant to update, or give --all") }
                    names = [try validatedTenantName(name)]
                }
                var failures: [String] = []
                for tenantName in names {
                    do {
                        _ = try await client.updateTenant(tenantName, UpdateTenantRequest(bundle: bundle, reindex: reindex), onEvent: Terminal.progress)
                        Terminal.out("updated tenant \(tenantName) to bundle \(bundle)")
                    } catch {
                        guard all else { throw error }
                        Terminal.err("tenant \(tenantName): \(error)")
                        failures.append(tenantName.rawValue)
                    }
                }
                if !failures.isEmpty {
                    throw FleetError.failed("\(failures.count) of \(names.count) tenants were not updated: \(failures.joined(separator: ", ")) (see above)")
                }
            }
        }
    }
}
