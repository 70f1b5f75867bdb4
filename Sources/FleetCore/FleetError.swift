/// Every error pgfleet reports to a user. The `code` travels through the API; the message says
/// what went wrong and, where there is one, what to do.
public enum FleetError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidTenantName(name: String, reason: String)
    case invalidRequest(String)
    case tenantExists(String)
    case tenantNotFound(String)
    case bundleNotFound(String)
    case bundleExists(String)
    case noBundle(major: Int?)
    case invalidBundle(String)
    case conflict(String)
    case daemonUnavailable(String)
    case failed(String)

    public var code: String {
        switch self {
        case .invalidTenantName: "invalid_tenant_name"
        case .invalidRequest: "invalid_request"
        case .tenantExists: "tenant_exists"
        case .tenantNotFound: "tenant_not_found"
        case .bundleNotFound: "bundle_not_found"
        case .bundleExists: "bundle_exists"
        case .noBundle: "no_bundle"
        case .invalidBundle: "invalid_bundle"
        case .conflict: "conflict"
        case .daemonUnavailable: "daemon_unavailable"
        case .failed: "failed"
        }
    }

    /// The HTTP status the API answers with.
    public var httpStatus: Int {
        switch self {
        case .invalidTenantName, .invalidRequest, .invalidBundle: 400
        case .tenantNotFound, .bundleNotFound, .noBundle: 404
        case .tenantExists, .bundleExists, .conflict: 409
        case .daemonUnavailable: 503
        case .failed: 500
        }
    }

    public var description: String {
        switch self {
        case .invalidTenantName(let name, let reason):
            "invalid tenant name \"\(name.debugClipped)\": \(reason) (names match ^[a-z][a-z0-9-]{0,62}$)"
        case .invalidRequest(let message): message
        case .tenantExists(let name): "a tenant named \"\(name)\" already exists"
        case .tenantNotFound(let name): "no tenant named \"\(name)\" (see `pgfleet tenant list`)"
        case .bundleNotFound(let id): "no bundle \"\(id)\" (see `pgfleet bundle list`)"
        case .bundleExists(let id): "bundle \"\(id)\" is already imported"
        case .noBundle(let major):
            if let major {
                "no PostgreSQL \(major) bundle is imported; import one with `pgfleet bundle import PATH` (see `pgfleet bundle list`)"
            } else {
                "no PostgreSQL bundle is imported; import one with `pgfleet bundle import PATH`"
            }
        case .invalidBundle(let message): message
        case .conflict(let message): message
        case .daemonUnavailable(let message): message
        case .failed(let message): message
        }
    }
}

extension String {
    /// A user-supplied string made safe to echo in one line: control characters escaped, clipped.
    public var debugClipped: String {
        var out = ""
        for scalar in unicodeScalars.prefix(80) {
            if scalar.value < 0x20 || scalar.value == 0x7f {
                out += "\\u{\(String(scalar.value, radix: 16))}"
            } else if scalar == "\"" || scalar == "\\" {
                out += "\\\(scalar)"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return unicodeScalars.count > 80 ? out + "…" : out
    }
}
