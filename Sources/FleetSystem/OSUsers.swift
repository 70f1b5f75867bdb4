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

    /// The user and group ids tenants get. Not the system range (100-999 on Debian): it holds about
    /// 900 ids shared with every package that creates a service user, and `useradd --system` ran
    /// out of group ids after 891 tenants. Not the regular users' range (1000-60000) nor the
    /// subordinate ids useradd hands out for user namespaces (100000-600100000 on Debian), and
    /// below 2^31 and systemd's foreign range (2147352576-) for tools that keep ids in an Int32.
    /// Debian policy leaves 65536-4294967293 to dynamically allocated accounts.
    public static let tenantIDs: ClosedRange<Int> = 2_000_000_000...2_000_999_999

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
        let (low, high) = (tenantIDs.lowerBound, tenantIDs.upperBound)
        try await Command.run(
            "/usr/sbin/useradd",
            ["--system", "--user-group", "--no-create-home", "--home-dir", home, "--shell", "/usr/sbin/nologin",
             // A system account (no password aging, no subordinate ids), but with ids from
             // pgfleet's own range; --no-log-init: no lastlog/faillog entry, whose sparse files
             // would otherwise grow to the size an id of two billion implies.
             "-K", "SYS_UID_MIN=\(low)", "-K", "SYS_UID_MAX=\(high)", "-K", "SYS_GID_MIN=\(low)", "-K", "SYS_GID_MAX=\(high)",
             "--no-log-init", "--comment", marker, name]
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
