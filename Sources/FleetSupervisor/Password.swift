import FleetBundles
import FleetCatalog
import FleetCore
import FleetSystem
import Foundation

extension Fleet {
    /// Gives the tenant's superuser a new password: a lost one has no other way back, since the
    /// daemon's own role is not a superuser. The tenant is stopped, the password set in
    /// single-user mode (as a SCRAM verifier computed here: the plaintext never reaches the
    /// server, its log or ours), and the tenant started again if it was running. A suspended
    /// tenant stays suspended, a stopped one stopped. Clients of the tenant get "starting"
    /// meanwhile, and its open sessions end with the stop.
    public func resetPassword(_ name: TenantName, _ request: PasswordRequest) async throws -> PasswordResult {
        let record = try existing(name)
        try notBusy(name)
        if FileManager.default.fileExists(atPath: options.layout.creationMarker(name)) {
            throw FleetError.conflict("tenant \(name): \(Self.interruptedCreation(name))")
        }
        if let password = request.password {
            guard !password.isEmpty else { throw FleetError.invalidRequest("the password is empty; omit it to have one generated") }
            guard !password.utf8.contains(0) else { throw FleetError.invalidRequest("the password contains a NUL byte") }
        }
        let bundle = try loadBundle(id: record.bundleID)
        let supervisor = try supervisor(for: record, name: name)
        let before = await supervisor.snapshot.state
        switch before {
        case .running, .stopped, .suspended, .failed: break
        case .starting, .stopping, .backoff:
            throw FleetError.conflict("tenant \(name) is \(before.rawValue); try again when it is running or stopped")
        }
        let password = request.password ?? Self.generatePassword()
        let verifier = try ScramVerifier.make(password: password)

        busy.insert(name)
        defer { busy.remove(name) }
        if before == .running {
            logger.info("stopping tenant to set its superuser's password", metadata: ["tenant": "\(name)"])
            let stopped = await supervisor.stop()
            guard stopped.state == .stopped else {
                throw FleetError.failed("tenant \(name) did not stop (\(stopped.state.rawValue)); its password is unchanged")
            }
        }
        let owner = options.isolated ? UserIdentity(name: record.osUser, uid: uid_t(record.uid), gid: gid_t(record.gid)) : nil
        let sql = "ALTER ROLE \(ClusterConfig.identifier(record.superuser)) PASSWORD \(ClusterConfig.literal(verifier));\n"
        let result = try await Command.run(
            // log_min_error_statement=panic: a failing statement is not echoed (it holds the verifier).
            bundle.postgres, ["--single", "-D", record.dataDirectory, "-c", "log_min_messages=warning", "-c", "log_min_error_statement=panic", "postgres"],
            environment: Self.environment(for: bundle), user: owner, stdin: Array(sql.utf8), workingDirectory: record.dataDirectory
        )
        // Single-user mode exits 0 even when the statement failed.
        let failure = !result.succeeded || result.stderr.contains("ERROR:") || result.stdout.contains("ERROR:")
        var restarted = false
        if before == .running {
            // Started again whatever happened above: a failed change must not leave it down.
            busy.remove(name)
            let snapshot = await supervisor.start()
            restarted = snapshot.state == .running
            if !restarted && !failure {
                throw FleetError.failed(
                    "the password of \(record.superuser) was changed, but tenant \(name) did not start again: "
                        + "\(snapshot.failureReason ?? snapshot.state.rawValue)\nSee `pgfleet tenant logs \(name)`."
                )
            }
        }
        if failure {
            let detail = (result.stderr + result.stdout).split(separator: "\n").first { $0.contains("ERROR:") || $0.contains("FATAL:") }
                .map { String($0).trimmingCharacters(in: .whitespaces) } ?? "postgres --single exited with status \(result.status)"
            throw FleetError.failed("setting the password of \(record.superuser) in tenant \(name) failed: \(detail); the password is unchanged")
        }
        logger.info("tenant superuser password changed", metadata: ["tenant": "\(name)", "role": "\(record.superuser)", "restarted": "\(restarted)"])
        return PasswordResult(tenant: try await tenantInfo(name), password: request.password == nil ? password : nil, restarted: restarted)
    }
}
