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

    /// The user an earlier, interrupted create of `tenant` left behind, nil when there is none;
    /// throws if a user of that name exists and is not this tenant's. (A new one is made by
    /// `createTenantUser`.)
    public static func leftoverTenantUser(_ name: String, tenant: TenantName, root: String) throws -> UserIdentity? {
        try existingUser(name, marker: marker(tenant, root: root), owner: "this pgfleet tenant")
    }

    /// The user `name` if it exists and carries `marker`; nil if there is none; throws if it
    /// belongs to someone else.
    private static func existingUser(_ name: String, marker: String, owner: String) throws -> UserIdentity? {
        guard let existing = lookup(name) else { return nil }
        guard comment(of: name) == marker else {
            throw FleetError.conflict("the OS user \(name) already exists and does not belong to \(owner); remove it or choose another name")
        }
        return existing
    }

    /// An id from `tenantIDs` that is free both as a user id and as a group id, and not in
    /// `excluding` (ids this daemon has promised but not yet made). Picked at random: useradd
    /// allocates from the top of the range down, so another daemon creating a user at the same
    /// moment is unlikely to want the same id (and if it does, one of the two useradds fails).
    public static func freeTenantID(excluding: Set<Int>) -> Int? {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<1000 {
            let id = Int.random(in: tenantIDs, using: &generator)
            if !excluding.contains(id), name(of: uid_t(id)) == nil, !groupExists(gid_t(id)) { return id }
        }
        return nil
    }

    static func groupExists(_ gid: gid_t) -> Bool {
        var entry = group()
        var result: UnsafeMutablePointer<group>? = nil
        var buffer = [CChar](repeating: 0, count: 16384)
        return getgrgid_r(gid, &entry, &buffer, buffer.count, &result) == 0 && result != nil
    }

    /// Creates a tenant's user and its group, both with the id `id` (see `freeTenantID`). Its
    /// files may be given to that id and its postmaster started before this finishes: the kernel
    /// needs no name, and the user exists before anyone can log in to the cluster.
    public static func createTenantUser(_ name: String, tenant: TenantName, root: String, home: String, id: Int) async throws -> UserIdentity {
        guard tenantIDs.contains(id) else { throw FleetError.failed("OS user id \(id) is outside pgfleet's range \(tenantIDs)") }
        let result = try await Command.run("/usr/sbin/useradd", [
            "--system", "--user-group", "--no-create-home", "--home-dir", home, "--shell", "/usr/sbin/nologin",
            // The user id given; the group's, by narrowing the range useradd picks it from to that one id.
            "--uid", String(id), "-K", "SYS_GID_MIN=\(id)", "-K", "SYS_GID_MAX=\(id)",
            "--no-log-init", "--comment", marker(tenant, root: root), name,
        ])
        guard result.succeeded else {
            // 4: the user id is taken. Another program took it since it was chosen.
            let taken = result.status == .exited(4) || result.stderr.contains("not unique") || result.stderr.contains("GID")
            throw FleetError.failed(
                taken
                    ? "useradd \(name): the id \(id) chosen for it was taken meanwhile by another program; try again (\(result.stderr.trimmingCharacters(in: .whitespacesAndNewlines)))"
                    : "useradd \(name) failed (exit \(result.status)): \(result.stderr.trimmingCharacters(in: .whitespacesAndNewlines))"
            )
        }
        guard let created = lookup(name) else { throw FleetError.failed("useradd \(name) succeeded but the user cannot be found") }
        guard created.uid == uid_t(id), created.gid == gid_t(id) else {
            throw FleetError.failed("useradd \(name) made ids \(created.uid):\(created.gid), not \(id):\(id)")
        }
        return created
    }

    /// Creates the ready pool's user, or takes over the one an earlier daemon of this root made.
    public static func ensurePoolUser(_ name: String, root: String) async throws -> UserIdentity {
        try await ensureUser(name, marker: poolMarker(root: root), home: "/nonexistent", owner: "this pgfleet root's ready pool")
    }

    private static func ensureUser(_ name: String, marker: String, home: String, owner: String) async throws -> UserIdentity {
        if let existing = try existingUser(name, marker: marker, owner: owner) { return existing }
        let (low, high) = (tenantIDs.lowerBound, tenantIDs.upperBound)
        let made = try await Command.run(
            "/usr/sbin/useradd",
            ["--system", "--user-group", "--no-create-home", "--home-dir", home, "--shell", "/usr/sbin/nologin",
             // A system account (no password aging, no subordinate ids), but with ids from
             // pgfleet's own range; --no-log-init: no lastlog/faillog entry, whose sparse files
             // would otherwise grow to the size an id of two billion implies.
             "-K", "SYS_UID_MIN=\(low)", "-K", "SYS_UID_MAX=\(high)", "-K", "SYS_GID_MIN=\(low)", "-K", "SYS_GID_MAX=\(high)",
             "--no-log-init", "--comment", marker, name]
        )
        // Two of the daemon's pools may make their shared user at once: the loser finds it made.
        if !made.succeeded, let existing = try existingUser(name, marker: marker, owner: owner) { return existing }
        try made.check("useradd \(name)")
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
