/// Whether a tenant's postmaster keeps the host's network (for `postgres_fdw`, `dblink`) or gets
/// a network namespace of its own with only a loopback nobody else listens on. Its unix socket
/// reaches the proxy either way.
public enum SandboxNetwork: String, Sendable, Equatable, CaseIterable, Codable {
    case none, host

    /// Parses `--network` (or the API's `"network"`), naming the choices when it is neither.
    public init(validating text: String, field: String = "--network") throws(FleetError) {
        guard let value = SandboxNetwork(rawValue: text.lowercased()) else {
            throw FleetError.invalidRequest("\(field) must be none (no TCP/UDP at all; the default) or host (the host's network, for postgres_fdw or dblink), not \"\(text.debugClipped)\"")
        }
        self = value
    }
}
