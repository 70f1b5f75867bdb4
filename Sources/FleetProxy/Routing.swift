import FleetCore
import PGWire

/// Where a startup packet wants to go, and the packet the tenant's server should see instead.
public struct RouteRequest: Sendable, Equatable {
    public var tenant: TenantName
    /// What reaches the tenant: the user without `@tenant`, `options` without the routing entry,
    /// no protocol options (`_pq_.*`); everything else as the client sent it, in its order.
    public var parameters: [StartupParameter]
    /// Protocol options the client asked for, which the proxy (speaking 3.0) does not support.
    public var unrecognizedOptions: [String]
}

/// Finds the tenant a connection names, in any of the accepted ways, and rewrites its startup
/// parameters. Pure: no I/O, no state.
public struct Router: Sendable {
    /// With a domain such as "db.example.com", TLS SNI "acme.db.example.com" names tenant acme.
    public var sniDomain: String?

    public init(sniDomain: String? = nil) {
        self.sniDomain = sniDomain.map { $0.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: ".")) }
    }

    public func route(parameters: [StartupParameter], sni: String?) -> Result<RouteRequest, ProxyError> {
        var named: [(how: String, name: String)] = []
        var rewritten: [StartupParameter] = []
        var unrecognized: [String] = []

        for parameter in parameters {
            if parameter.name.hasPrefix("_pq_.") {
                unrecognized.append(parameter.name)
                continue
            }
            switch parameter.name {
            case "user":
                if let at = parameter.value.lastIndex(of: "@") {
                    let user = String(parameter.value[..<at])
                    let tenant = String(parameter.value[parameter.value.index(after: at)...])
                    guard !user.isEmpty else { return .failure(.protocolViolation("the user name before '@' is empty")) }
                    named.append(("user@tenant", tenant))
                    rewritten.append(StartupParameter(name: "user", value: user))
                } else {
                    rewritten.append(parameter)
                }
            case "options":
                let (remaining, tenants) = Router.extractTenant(fromOptions: parameter.value)
                for tenant in tenants { named.append(("options", tenant)) }
                if !remaining.isEmpty { rewritten.append(StartupParameter(name: "options", value: remaining)) }
            default:
                rewritten.append(parameter)
            }
        }
        if let sni, let domain = sniDomain {
            let host = sni.lowercased()
            if host.hasSuffix("." + domain) {
                let label = String(host.dropLast(domain.count + 1))
                if !label.isEmpty && !label.contains(".") { named.append(("TLS server name", label)) }
            }
        }

        if rewritten.contains(where: { $0.name == "user" && $0.value == TenantRoles.daemon }) { return .failure(.reservedRole) }
        guard let first = named.first else { return .failure(.noTenant) }
        if let other = named.first(where: { $0.name != first.name }) {
            return .failure(.conflictingTenants("\(first.how) says \"\(first.name.debugClipped)\", \(other.how) says \"\(other.name.debugClipped)\""))
        }
        guard let tenant = try? TenantName(validating: first.name) else { return .failure(.invalidTenantName(first.name)) }
        return .success(RouteRequest(tenant: tenant, parameters: rewritten, unrecognizedOptions: unrecognized))
    }

    /// Splits libpq's `options` (command-line style, backslash escapes) and takes out the
    /// routing entry in any of its spellings: `tenant=x`, `-ctenant=x`, `-c tenant=x`, `--tenant=x`.
    static func extractTenant(fromOptions options: String) -> (remaining: String, tenants: [String]) {
        let tokens = splitOptions(options)
        var kept: [String] = []
        var tenants: [String] = []
        var index = 0
        while index < tokens.count {
            let token = tokens[index]
            if token == "-c" || token == "--c", index + 1 < tokens.count, let value = tenantValue(tokens[index + 1]) {
                tenants.append(value)
                index += 2
                continue
            }
            var candidate = token
            if candidate.hasPrefix("-c") { candidate = String(candidate.dropFirst(2)) }
            else if candidate.hasPrefix("--") { candidate = String(candidate.dropFirst(2)) }
            if let value = tenantValue(candidate) {
                tenants.append(value)
            } else {
                kept.append(token)
            }
            index += 1
        }
        return (kept.map(escapeOption).joined(separator: " "), tenants)
    }

    private static func tenantValue(_ token: String) -> String? {
        token.hasPrefix("tenant=") ? String(token.dropFirst("tenant=".count)) : nil
    }

    static func splitOptions(_ options: String) -> [String] {
        var tokens: [String] = []
        var current = ""
        var inToken = false
        var escaped = false
        for character in options {
            if escaped {
                current.append(character)
                escaped = false
                inToken = true
            } else if character == "\\" {
                escaped = true
            } else if character == " " || character == "\t" || character == "\n" {
                if inToken { tokens.append(current) }
                current = ""
                inToken = false
            } else {
                current.append(character)
                inToken = true
            }
        }
        if inToken || escaped { tokens.append(current) }
        return tokens
    }

    private static func escapeOption(_ token: String) -> String {
        var out = ""
        for character in token {
            if character == " " || character == "\\" || character == "\t" { out.append("\\") }
            out.append(character)
        }
        return out
    }
}

import Foundation
