import FleetCore
import PGWire

/// Everything that can end a client's connection before it reaches its tenant. One value picks
/// the SQLSTATE the client sees, the message, and the metric label. Messages never carry
/// internal details or the name of any tenant but the one the client itself asked for.
public enum ProxyError: Error, Sendable, Equatable {
    case noTenant
    case invalidTenantName(String)
    case conflictingTenants(String)
    case unknownTenant(String)
    case tenantStopped(String)
    case tenantUnavailable(String, TenantState)
    case tenantFailed(String)
    case tlsRequired
    case tlsUnavailable
    case tooManyConnections
    case tooManyTenantConnections(String)
    /// The daemon is close to its RLIMIT_NOFILE: one more session would leave it too few descriptors.
    case outOfDescriptors(inUse: Int, limit: Int)
    case unsupportedProtocol(ProtocolVersion)
    case protocolViolation(String)
    case bufferedBeforeTLS
    case backendUnavailable(String)
    case startupTimeout
    case badStartupPacket(String)
    case wakeTimeout(String, seconds: Int64)
    case wakeRateLimited(String)
    case wakeFailed(String)
    /// The client's SCRAM proof did not match the role's verifier (checked by the proxy for pooled sessions).
    case authenticationFailed(user: String)
    case unsupportedAuthentication(String)
    /// The daemon's own role: the proxy connects to tenants as the daemon's OS user, which
    /// pg_hba.conf admits as this role without a password, so it must never pass through.
    case reservedRole

    public var sqlstate: String {
        switch self {
        case .noTenant, .invalidTenantName, .conflictingTenants: "08004"
        case .unknownTenant: "3D000"
        case .tenantStopped, .tenantUnavailable: "57P03"
        case .tenantFailed: "58000"
        case .tlsRequired, .reservedRole: "28000"
        case .tlsUnavailable: "08004"
        case .tooManyConnections, .tooManyTenantConnections, .outOfDescriptors: "53300"
        case .unsupportedProtocol: "0A000"
        case .protocolViolation, .bufferedBeforeTLS, .badStartupPacket: "08P01"
        case .backendUnavailable: "08006"
        case .startupTimeout: "08006"
        case .wakeTimeout, .wakeRateLimited: "57P03"
        case .wakeFailed: "58000"
        case .authenticationFailed: "28P01"
        case .unsupportedAuthentication: "28000"
        }
    }

    public var message: String {
        switch self {
        case .noTenant:
            "no tenant named: connect as user@tenant, add options=tenant=<name> (psql: \"options=-ctenant=<name>\"), or use TLS with the host name <tenant>.<domain>"
        case .invalidTenantName(let name):
            "invalid tenant name \"\(name.debugClipped)\": names match ^[a-z][a-z0-9-]{0,62}$"
        case .conflictingTenants(let detail):
            "the connection names two different tenants (\(detail)); name one tenant only"
        case .unknownTenant(let name): "tenant \"\(name)\" does not exist"
        case .tenantStopped(let name): "tenant \"\(name)\" is stopped; start it with `pgfleet tenant start \(name)`"
        case .tenantUnavailable(let name, let state): "tenant \"\(name)\" is \(state.rawValue); try again shortly"
        case .tenantFailed(let name): "tenant \"\(name)\" has failed and is not running; its operator can see why with `pgfleet tenant info \(name)`"
        case .tlsRequired: "this server requires TLS: connect with sslmode=require (or stronger)"
        case .tlsUnavailable: "TLS is disabled on this server"
        case .tooManyConnections: "sorry, too many clients already"
        case .tooManyTenantConnections(let name): "sorry, too many clients already for tenant \"\(name)\""
        case .outOfDescriptors(let inUse, let limit):
            "sorry, too many clients already: the pgfleet proxy is out of file descriptors (\(inUse) in use, limit \(limit)); try again when other connections have closed"
        case .unsupportedProtocol(let version): "unsupported frontend protocol \(version): the server supports 3.0"
        case .protocolViolation(let what): "protocol violation: \(what)"
        case .bufferedBeforeTLS: "protocol violation: data received after the SSL request and before the TLS handshake"
        case .backendUnavailable(let name): "tenant \"\(name)\" cannot be reached right now; try again shortly"
        case .startupTimeout: "timeout: the connection did not complete its startup in time"
        case .badStartupPacket(let what): "invalid startup packet: \(what)"
        case .wakeTimeout(let name, let seconds): "tenant \"\(name)\" was suspended and did not become ready within \(seconds) s; try again shortly"
        case .wakeRateLimited(let name): "tenant \"\(name)\" is suspended and is being woken too often; try again in a few seconds"
        case .wakeFailed(let name): "tenant \"\(name)\" was suspended and could not be started; its operator can see why with `pgfleet tenant info \(name)`"
        // PostgreSQL's own words, so a client cannot tell the proxy checked the password.
        case .authenticationFailed(let user): "password authentication failed for user \"\(user.debugClipped)\""
        case .unsupportedAuthentication(let what):
            "authentication failed: \(what); this server offers SCRAM-SHA-256 without channel binding (connect with channel_binding=prefer or disable)"
        case .reservedRole: "the role \"\(TenantRoles.daemon)\" is reserved for pgfleet itself and cannot connect through the proxy; connect as one of the tenant's own roles"
        }
    }

    /// The `kind` label of `pgfleet_proxy_handshake_failures_total`.
    public var metricLabel: String {
        switch self {
        case .noTenant: "no_tenant"
        case .invalidTenantName: "invalid_tenant_name"
        case .conflictingTenants: "conflicting_tenants"
        case .unknownTenant: "unknown_tenant"
        case .tenantStopped: "tenant_stopped"
        case .tenantUnavailable: "tenant_unavailable"
        case .tenantFailed: "tenant_failed"
        case .tlsRequired: "tls_required"
        case .tlsUnavailable: "tls_unavailable"
        case .tooManyConnections: "too_many_connections"
        case .tooManyTenantConnections: "too_many_tenant_connections"
        case .outOfDescriptors: "out_of_descriptors"
        case .unsupportedProtocol: "unsupported_protocol"
        case .protocolViolation: "protocol_violation"
        case .bufferedBeforeTLS: "buffered_before_tls"
        case .backendUnavailable: "backend_unavailable"
        case .startupTimeout: "startup_timeout"
        case .badStartupPacket: "bad_startup_packet"
        case .wakeTimeout: "wake_timeout"
        case .wakeRateLimited: "wake_rate_limited"
        case .wakeFailed: "wake_failed"
        case .authenticationFailed: "authentication_failed"
        case .unsupportedAuthentication: "unsupported_authentication"
        case .reservedRole: "reserved_role"
        }
    }

    public var errorResponse: ErrorResponse {
        ErrorResponse(severity: "FATAL", sqlstate: sqlstate, message: message)
    }

    init(_ error: WireError) {
        switch error {
        case .unsupportedProtocol(let version): self = .unsupportedProtocol(version)
        default: self = .badStartupPacket(error.description)
        }
    }
}
