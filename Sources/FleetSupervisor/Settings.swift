import FleetBundles
import FleetCatalog
import FleetCore
import FleetSystem
import Foundation

extension Fleet {
    /// Settings pgfleet itself manages: changing them would cut the tenant off from the daemon.
    static let managedSettings: Set<String> = [
        "listen_addresses", "port", "unix_socket_directories", "unix_socket_permissions", "unix_socket_group",
        "logging_collector", "log_destination", "cluster_name", "data_directory", "config_file", "hba_file",
        "ident_file", "external_pid_file", "password_encryption", "huge_pages",
    ]

    public func setSettings(_ name: TenantName, _ request: SettingsRequest) async throws -> SettingsResult {
        guard !request.settings.isEmpty || !(request.limits?.isEmpty ?? true) || request.network != nil else {
            throw FleetError.invalidRequest("no settings, limits or network given: use name=value, --memory, --cpu, --pids, --io-weight, --shm, --huge-pages or --network")
        }
        if let change = request.limits { _ = try change.applied(to: .none, spelling: .json) }
        if let network = request.network { _ = try SandboxNetwork(validating: network, field: "\"network\"") }
        // In its turn: the values are checked against the bundle and the file the tenant has then.
        return try await operations.run(name, .settings) { try await setSettingsInTurn(name, request) }
    }

    private func setSettingsInTurn(_ name: TenantName, _ request: SettingsRequest) async throws -> SettingsResult {
        let record = try existing(name)
        let bundle = try loadBundle(id: record.bundleID)
        let owner = options.isolated ? UserIdentity(name: record.osUser, uid: uid_t(record.uid), gid: gid_t(record.gid)) : nil
        let environment = Self.environment(for: bundle)

        var settings: [(name: String, value: String)] = []
        for setting in request.settings {
            let key = setting.name.lowercased()
            guard key.range(of: "^[a-z_][a-z0-9_]*(\\.[a-z_][a-z0-9_]*)?$", options: .regularExpression) != nil else {
                throw FleetError.invalidRequest("\"\(setting.name.debugClipped)\" is not a parameter name")
            }
            if Self.managedSettings.contains(key) {
                throw FleetError.invalidRequest("\(key) is managed by pgfleet and cannot be set per tenant")
            }
            if setting.value.contains("\n") || setting.value.contains("\r") || setting.value.utf8.contains(0) {
                throw FleetError.invalidRequest("the value of \(key) contains a line break or NUL")
            }
            // The tenant's own postgres checks the value: right names, units and ranges for its version.
            let check = try await runTenantPostgres(
                ["-D", record.dataDirectory, "-C", key, "-c", "\(key)=\(setting.value)"], record: record, bundle: bundle, owner: owner
            )
            guard check.succeeded else {
                let reason = check.stderr.split(separator: "\n").first { $0.contains("FATAL") || $0.contains("ERROR") || $0.contains("invalid") }
                    .map { String($0).replacingOccurrences(of: "postgres: ", with: "").replacingOccurrences(of: "FATAL:  ", with: "") }
                    ?? check.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
                throw FleetError.invalidRequest("PostgreSQL \(bundle.manifest.version) refuses \(key) = \(setting.value.debugClipped): \(reason)")
            }
            settings.removeAll { $0.name == key }
            settings.append((key, setting.value))
        }

        // Limits and settings are checked together: a new memory limit against the new settings.
        var notes: [String] = []
        if let change = request.limits, !change.isEmpty {
            notes = try await changeLimits(change, record: record, settings: settings)
        } else if !settings.isEmpty {
            try await checkSettingsFit(record: record, settings: settings)
        }
        var networkChanged = false
        if let text = request.network {
            let network = try SandboxNetwork(validating: text, field: "\"network\"")
            if network != record.sandboxNetwork {
                networkChanged = true
                // With settings too, their restart (below) brings the new network in.
                notes += try await changeNetwork(network, record: record, name: name, restart: request.restart, restartsLater: !settings.isEmpty)
            }
        }
        // Huge pages and /dev/shm are given at a start.
        let startChange = request.limits.map { $0.hugePages != nil || $0.shm != nil } ?? false
        if settings.isEmpty {
            var restarted = false
            if startChange, supervisors[name] != nil, await (try supervisor(for: record, name: name)).snapshot.state == .running {
                if request.restart {
                    let snapshot = await (try supervisor(for: record, name: name)).restart()
                    guard snapshot.state == .running else {
                        throw FleetError.failed("tenant \(name) did not come back after the restart: \(snapshot.failureReason ?? snapshot.state.rawValue)")
                    }
                    restarted = true
                    notes.append("huge pages and /dev/shm: restarted, in effect")
                } else {
                    notes.append("huge pages and /dev/shm: in effect from the next start; run `pgfleet tenant restart \(name)` or repeat with --restart")
                }
            }
            return SettingsResult(tenant: try await tenantInfo(name), applied: [], restartNeeded: [], restarted: restarted, notes: notes.isEmpty ? nil : notes)
        }
        let contexts = try await parameterContexts(bundle: bundle, environment: environment, owner: owner)
        let needRestart = settings.map(\.name).filter { contexts[$0] == "postmaster" }
        try writeSettings(settings, record: record, owner: owner)

        let supervisor = try supervisor(for: record, name: name)
        var snapshot = await supervisor.snapshot
        var restarted = false
        if snapshot.state == .running, let pid = snapshot.pid {
            if request.restart && (!needRestart.isEmpty || networkChanged || startChange) {
                await refreshFileLimit(record)
                snapshot = await supervisor.restart()
                restarted = true
                if snapshot.state != .running {
                    throw FleetError.failed("tenant \(name) did not come back after the restart: \(snapshot.failureReason ?? snapshot.state.rawValue)")
                }
            } else {
                kill(pid, SIGHUP)
            }
        }
        let pending = snapshot.state == .running && !restarted ? needRestart : []
        logger.info("tenant settings changed", metadata: ["tenant": "\(name)", "settings": "\(settings.map(\.name))"])
        return SettingsResult(
            tenant: try await tenantInfo(name), applied: settings.map { "\($0.name) = \($0.value)" },
            restartNeeded: pending, restarted: restarted, notes: notes.isEmpty ? nil : notes
        )
    }

    /// Stores a new sandbox network; the namespaces are made at a start, so a running tenant
    /// gets it when restarted (now, with `restart`).
    private func changeNetwork(
        _ network: SandboxNetwork, record: TenantRecord, name: TenantName, restart: Bool, restartsLater: Bool
    ) async throws -> [String] {
        try catalog.setNetwork(network, forTenant: name.rawValue)
        networkBoard[name.rawValue] = network
        logger.info("tenant network changed", metadata: ["tenant": "\(name)", "network": "\(network.rawValue)"])
        guard options.sandbox != nil, options.isolated else {
            return ["network \(network.rawValue) stored; this daemon runs without sandboxes (--sandbox off, or not root), so it has no effect now"]
        }
        let supervisor = try supervisor(for: record, name: name)
        guard await supervisor.snapshot.state == .running else { return ["network \(network.rawValue): in effect from the next start"] }
        guard restart else {
            return ["network \(network.rawValue): in effect from the next start; run `pgfleet tenant restart \(name)` or repeat with --restart"]
        }
        if restartsLater { return ["network \(network.rawValue): in effect after the restart for the settings"] }
        let snapshot = await supervisor.restart()
        guard snapshot.state == .running else {
            throw FleetError.failed("tenant \(name) did not come back after the restart: \(snapshot.failureReason ?? snapshot.state.rawValue)")
        }
        return ["network \(network.rawValue): restarted, in effect"]
    }

    /// Each parameter's context (postmaster, sighup, user, …) as the bundle describes it.
    private func parameterContexts(bundle: FleetBundles.Bundle, environment: [String: String], owner: UserIdentity?) async throws -> [String: String] {
        let described = try await Command.run(bundle.postgres, ["--describe-config"], environment: environment, user: owner)
            .check("postgres --describe-config")
        var contexts: [String: String] = [:]
        for line in described.stdout.split(separator: "\n") {
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
            if fields.count > 1 { contexts[fields[0].lowercased()] = String(fields[1]) }
        }
        return contexts
    }

    /// `pgfleet.settings.conf`, included after pgfleet.conf: the tenant's overrides, one per line.
    private func writeSettings(_ settings: [(name: String, value: String)], record: TenantRecord, owner: UserIdentity?) throws {
        let path = record.dataDirectory + "/" + ClusterConfig.settingsFile
        var merged: [(String, String)] = ClusterConfig.parseSettings((try? String(contentsOfFile: path, encoding: .utf8)) ?? "")
        for (name, value) in settings {
            merged.removeAll { $0.0 == name }
            merged.append((name, value))
        }
        try Files.write(ClusterConfig.settingsText(merged), to: path, mode: 0o600, owner: owner)
        try ensureSettingsInclude(dataDirectory: record.dataDirectory, owner: owner)
    }

    func ensureSettingsInclude(dataDirectory: String, owner: UserIdentity?, sync: Bool = true) throws {
        // An empty file rather than none: include_if_exists logs every start when it is missing.
        let settingsPath = dataDirectory + "/" + ClusterConfig.settingsFile
        if !FileManager.default.fileExists(atPath: settingsPath) {
            try Files.write(ClusterConfig.settingsText([]), to: settingsPath, mode: 0o600, owner: owner, sync: sync)
        }
        try appendToPostgresqlConf(
            "include_if_exists '\(ClusterConfig.settingsFile)'", comment: "Added by pgfleet: settings made with `pgfleet tenant set`.",
            dataDirectory: dataDirectory, owner: owner, sync: sync
        )
    }
}
