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
        // A request that can never succeed is refused at once, not after its turn.
        if let password = request.password {
            guard !password.isEmpty else { throw FleetError.invalidRequest("the password is empty; omit it to have one generated") }
            guard !password.utf8.contains(0) else { throw FleetError.invalidRequest("the password contains a NUL byte; choose another") }
        }
        return try await operations.run(name, .password) { try await resetPasswordInTurn(name, request) }
    }

    private func resetPasswordInTurn(_ name: TenantName, _ request: PasswordRequest) async throws -> PasswordResult {
        let record = try existing(name)
        try notHalfCreated(name, "given a new password")
        let bundle = try loadBundle(id: record.bundleID)
        let supervisor = try supervisor(for: record, name: name)
        let before = await supervisor.snapshot.state
        switch before {
        case .running, .stopped, .suspended, .failed: break
        case .starting, .stopping, .backoff:
            throw FleetError.conflict("tenant \(name) is \(before.rawValue); try again when it is running or stopped")
        }
        let password = request.password ?? Self.generatePassword()
        let verifier = try ScramVerifierMaker.make(password: password)

        if before == .running {
            logger.info("stopping tenant to set its superuser's password", metadata: ["tenant": "\(name)"])
            let stopped = await supervisor.stop()
            guard stopped.state == .stopped else {
                throw FleetError.failed(
                    "tenant \(name) did not stop (\(stopped.state.rawValue)); its password is unchanged. See `pgfleet tenant logs \(name)` and try again"
                )
            }
        }
        let owner = options.isolated ? UserIdentity(name: record.osUser, uid: uid_t(record.uid), gid: gid_t(record.gid)) : nil
        let sql = "ALTER ROLE \(ClusterConfig.identifier(record.superuser)) PASSWORD \(ClusterConfig.literal(verifier));\n"
        var failure: (any Error)? = nil
        do {
            // Nothing of the tenant may still run: a sandboxed postgres would not see it (see `SandboxLaunch.leftovers`).
            if let left = supervisor.sandboxLeftovers(), !left.isEmpty {
                throw FleetError.conflict("processes of the tenant's postmaster are still running (pids \(left.prefix(8).map(String.init).joined(separator: ", ")))")
            }
            try await NewCluster.singleUser(
                sql, doing: "setting the password of \(record.superuser)", bundle: bundle, dataDirectory: record.dataDirectory, owner: owner,
                sandbox: singleUserSandbox(for: record, name: name, bundle: bundle, user: owner)
            )
        } catch {
            failure = error
        }
        var restarted = false
        if before == .running {
            // Started again whatever happened above: a failed change must not leave it down.
            // The tenant stays held, but is no longer hidden: clients may wait for this start, as for any other.
            operations.proceed(name, as: .start)
            let snapshot = await supervisor.start()
            restarted = snapshot.state == .running
            if !restarted && failure == nil {
                throw FleetError.failed(
                    "the password of \(record.superuser) was changed, but tenant \(name) did not start again: "
                        + "\(snapshot.failureReason ?? snapshot.state.rawValue)\nSee `pgfleet tenant logs \(name)`, then `pgfleet tenant start \(name)`."
                )
            }
        }
        if let failure {
            // The one failure a user causes: the superuser renamed (or dropped) in SQL.
            let renamed = "\(failure)".contains("role \"\(record.superuser)\" does not exist")
                ? " (pgfleet knows the superuser by the name it was created with, \(record.superuser): if it was renamed in SQL, rename it back first)"
                : ""
            throw FleetError.failed("tenant \(name): \(failure); the password is unchanged\(renamed)")
        }
        logger.info("tenant superuser password changed", metadata: ["tenant": "\(name)", "role": "\(record.superuser)", "restarted": "\(restarted)"])
        return PasswordResult(tenant: try await tenantInfo(name), password: request.password == nil ? password : nil, restarted: restarted)
    }
}
