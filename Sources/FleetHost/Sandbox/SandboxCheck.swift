import FleetCore
import FleetSystem
import Foundation

/// Whether this host can make the tenants' sandboxes, tried once at start-up with the very
/// namespaces a tenant gets, so that a host without unprivileged user namespaces (a sysctl, an
/// AppArmor policy) is told at once instead of at every tenant's start.
public enum SandboxCheck {
    public enum Outcome: Sendable, Equatable {
        case works(SandboxIdentityMode)
        case unavailable(String)
    }

    /// An unprivileged stand-in for a tenant's user.
    static let probeUser = UserIdentity(name: "nobody", uid: 65534, gid: 65534)

    public static func run(bwrapPath: String, hostLayout: SandboxHostLayout) async -> Outcome {
        guard FileManager.default.isExecutableFile(atPath: bwrapPath) else {
            return .unavailable("\(bwrapPath) is missing: install bubblewrap (`apt-get install bubblewrap`), or run with --sandbox off")
        }
        var problems: [String] = []
        for mode in [SandboxIdentityMode.userNamespace, .rootThenSetpriv] {
            let plan = SandboxPlan(
                bundleDirectory: "/usr/bin", tenantDirectory: "/nonexistent-pgfleet-probe", shmSize: 1 << 20, tmpSize: 1 << 20,
                hostname: "probe", user: probeUser, command: ["/bin/true"], stateDirectory: "/nonexistent-pgfleet-state",
                hostLayout: hostLayout, identityMode: mode, bwrapPath: bwrapPath
            )
            // The probe binds neither a tenant directory nor generated files: only the namespaces are tried.
            let arguments = withoutBinds(
                Array(plan.arguments().dropFirst()),
                of: ["/nonexistent-pgfleet-probe", "/nonexistent-pgfleet-state/passwd", "/nonexistent-pgfleet-state/group"]
            )
            do {
                let result = try await Command.run(bwrapPath, arguments, user: mode == .userNamespace ? probeUser : nil)
                if result.succeeded { return .works(mode) }
                problems.append("\(mode.rawValue): \(result.stderr.trimmingCharacters(in: .whitespacesAndNewlines))")
            } catch {
                problems.append("\(mode.rawValue): \(error)")
            }
        }
        return .unavailable("bubblewrap cannot make a sandbox here (\(problems.joined(separator: "; "))); "
            + "allow unprivileged user namespaces (sysctl user.max_user_namespaces, kernel.apparmor_restrict_unprivileged_userns=0), or run with --sandbox off")
    }

    /// `arguments` without the `--bind`/`--ro-bind SRC DST` and `--chdir DIR` that name `paths`.
    static func withoutBinds(_ arguments: [String], of paths: [String]) -> [String] {
        var out: [String] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            if ["--bind", "--ro-bind"].contains(argument), index + 2 < arguments.count, paths.contains(arguments[index + 1]) {
                index += 3
                continue
            }
            if argument == "--chdir", index + 1 < arguments.count, paths.contains(arguments[index + 1]) {
                index += 2
                continue
            }
            out.append(argument)
            index += 1
        }
        return out
    }
}
