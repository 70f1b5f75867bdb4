import ArgumentParser
import FleetHost
import FleetSupervisor
import Logging

/// The tenants' sandbox settings, after a trial run of bubblewrap; throws (the daemon does not
/// start) when no sandbox can be made and `--sandbox off` was not given.
func hostSandbox(logger: Logger) async throws -> SandboxSettings {
    let layout = SandboxHostLayout.read()
    switch await SandboxCheck.run(bwrapPath: "/usr/bin/bwrap", hostLayout: layout) {
    case .works(let mode):
        if mode == .rootThenSetpriv {
            logger.warning("no unprivileged user namespaces: sandboxes are made as root and tenants drop to their user inside; they are not kept from making user namespaces of their own")
        }
        logger.info("tenant sandboxes", metadata: ["tool": "bubblewrap", "identity": "\(mode.rawValue)"])
        return SandboxSettings(bwrapPath: "/usr/bin/bwrap", hostLayout: layout, identityMode: mode)
    case .unavailable(let why):
        logger.critical("cannot sandbox tenants: \(why)")
        throw ExitCode(1)
    }
}
