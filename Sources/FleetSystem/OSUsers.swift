import FleetCore
import Foundation

/// The unprivileged OS users tenants run as.
public enum OSUsers {
    public static func lookup(_ name: String) -> UserIdentity? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>? = nil
        var buffer = [CChar](repeating: 0, count: 16384)
        guard getpwnam_r(name, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return UserIdentity(name: name, uid: entry.pw_uid, gid: entry.pw_gid)
    }

    public static func name(of uid: uid_t) -> String? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>? = nil
        var buffer = [CChar](repeating: 0, count: 16384)
        guard getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, result != nil, let name = entry.pw_name else {
            return nil
        }
        return String(cString: name)
    }

    static func comment(of name: String) -> String? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>? = nil
        var buffer = [CChar](repeating: 0, count: 16384)
        guard getpwnam_r(name, &entry, &buffer, buffer.count, &result) == 0, result != nil, let gecos = entry.pw_gecos else {
            return nil
        }
        return String(cString: gecos)
    }

    /// The OS user name for a tenant: `prefix + name`, kept within the 32 characters useradd
    /// allows by shortening long names and adding a hash, so it stays unique and recognisable.
    public static func userName(prefix: String, tenant: TenantName) -> String {
        let full = prefix + tenant.rawValue
        if full.utf8.count <= 32 { return full }
        var hash: UInt32 = 2_166_136_261  // FNV-1a: stable across runs, unlike Hasher
        for byte in tenant.rawValue.utf8 {
            hash = (hash ^ UInt32(byte)) &* 16_777_619
        }
        let suffix = String(hash, radix: 16)
        let keep = 32 - prefix.utf8.count - suffix.count - 1
        return prefix + String(tenant.rawValue.prefix(keep)) + "-" + suffix
    }

    static func marker(_ tenant: TenantName, root: String) -> String { "pgfleet tenant \(tenant) (\(root))" }
    static func poolMarker(root: String) -> String { "pgfleet ready pool (\(root))" }

    /// The OS user that owns the ready pool's clusters until a tenant claims one: `prefix + "_pool"`,
    /// which no tenant's user can be (tenant names have no '_').
    public static func poolUserName(prefix: String) -> String { prefix + "_pool" }

    /// Creates the system user (and its own group) for a tenant, or takes over one that an earlier,
    /// interrupted create of the same tenant left behind. Refuses to touch any other existing user.
    public static func ensureTenantUser(_ name: String, tenant: TenantName, root: String, home: String) async throws -> UserIdentity {
        try await ensureUser(name, marker: marker(tenant, root: root), home: home, owner: "this pgfleet tenant")
    }

    /// Creates the ready pool's user, or takes over the one an earlier daemon of this root made.
    public static func ensurePoolUser(_ name: String, root: String) async throws -> UserIdentity {
        try await ensureUser(name, marker: poolMarker(root: root), home: "/nonexistent", owner: "this pgfleet root's ready pool")
    }

    private static func ensureUser(_ name: String, marker: String, home: String, owner: String) async throws -> UserIdentity {
        if let existing = lookup(name) {
            guard comment(of: name) == marker else {
                throw FleetError.conflict(
                    "the OS user \(name) already exists and does not belong to \(owner); remove it or choose another name"
                )
            }
            return existing
        }
        try await Command.run(
            "/usr/sbin/useradd",
            ["--system", "--user-group", "--no-create-home", "--home-dir", home, "--shell", "/usr/sbin/nologin",
             "--comment", marker, name]
        ).check("useradd \(name)")
        guard let created = lookup(name) else { throw FleetError.failed("useradd \(name) succeeded but the user cannot be found") }
        return created
    }

    /// Removes a tenant's user and group; succeeds if they are already gone.
    public static func removeTenantUser(_ name: String, tenant: TenantName, root: String) async throws {
        guard lookup(name) != nil else { return }
        guard comment(of: name) == marker(tenant, root: root) else {
            throw FleetError.conflict("the OS user \(name) does not belong to pgfleet tenant \(tenant); not removing it")
        }
        try await Command.run("/usr/sbin/userdel", [name]).check("userdel \(name)")
    }
}
