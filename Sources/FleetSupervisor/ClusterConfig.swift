import FleetCore
import FleetSystem

/// The configuration files pgfleet owns in every tenant's data directory.
enum ClusterConfig {
    /// postgresql.conf ends with an include of this file, so pgfleet's settings win over initdb's
    /// defaults while the tenant's own `ALTER SYSTEM` settings (postgresql.auto.conf) still win over both.
    static let includeFile = "pgfleet.conf"

    /// What a new tenant's memory settings are: `settings(name:socketDirectory:)` below over
    /// PostgreSQL's defaults (hash_mem_multiplier became 2 in 15). Checked against `postgres -C`
    /// by the limits' integration tests.
    static func newTenantMemorySettings(major: Int) -> MemorySettings {
        MemorySettings(
            sharedBuffers: 16 << 20, walBuffers: 128 << 10, maxConnections: 40, maxWorkerProcesses: 2, maxWalSenders: 2,
            hashMemMultiplier: major >= 15 ? 2 : 1
        )
    }

    static func settings(name: TenantName, socketDirectory: String) -> String {
        """
        # Managed by pgfleet: rewritten on changes. Override settings with ALTER SYSTEM.
        # The postmaster listens on its private unix socket only: no TCP port, so no port conflicts
        # and no way in but through pgfleet's proxy or the socket directory.
        listen_addresses = ''
        port = \(FleetLayout.tenantPort)
        unix_socket_directories = \(quote(socketDirectory))
        unix_socket_permissions = 0700
        cluster_name = \(quote(name.rawValue))
        password_encryption = 'scram-sha-256'
        # The supervisor captures stderr into the tenant's log file.
        logging_collector = off
        log_destination = 'stderr'
        log_line_prefix = '%m [%p] %q%u@%d '
        # Huge pages under a cgroup hugetlb limit end in SIGBUS at the first touch; small tenants gain nothing.
        huge_pages = off
        # Sized for many small tenants on one host: bench/density.sh measures an idle tenant's
        # memory (PSS) against PostgreSQL's own defaults. Every line below can be changed per
        # tenant with `pgfleet tenant set`.
        # Shared memory the postmaster initialises at start-up costs memory even when idle:
        # buffer descriptors and hash, WAL buffers, lock tables and one PGPROC per possible process.
        # 16MB of buffers holds a small tenant's hot data; the kernel's page cache backs it.
        shared_buffers = 16MB
        # WAL buffers are zeroed at start-up: the automatic size (1/32 of shared_buffers) would be
        # 512kB; 128kB still lets a commit's WAL reach the disk in one write.
        wal_buffers = 128kB
        # Each possible connection reserves a PGPROC and lock-table room (about 35kB touched).
        # 40 leaves 25 for clients besides the 12 the `pgfleet` role may take (proxy pool, health
        # checks) and the 3 reserved for superusers.
        max_connections = 40
        # Background workers: parallel query and logical replication draw from these slots.
        # Parallel query gains little for a small tenant on a shared host; 2 still allows it.
        max_worker_processes = 2
        # No logical replication launcher: one process fewer per tenant (about 0.5 MB). Raise it
        # (with max_worker_processes) and restart to subscribe to a publication.
        max_logical_replication_workers = 0
        # Enough for one pg_basebackup with WAL streaming; each sender is another PGPROC.
        max_wal_senders = 2
        max_replication_slots = 2
        # Tenants are initialised with 1 MB WAL segments (initdb --wal-segsize=1) so that an idle
        # cluster takes about 28 MB of disk instead of 39. min_wal_size is what a checkpoint keeps
        # for reuse; 32MB is also the least a cluster with 16 MB segments accepts (two segments),
        # so the same file serves clusters initialised before. max_wal_size bounds the WAL a busy
        # tenant accumulates between checkpoints (PostgreSQL's default is 1GB).
        min_wal_size = 32MB
        max_wal_size = 256MB

        """
    }

    /// Peer authentication for the daemon's health checks (mapped from the daemon's OS user only),
    /// SCRAM for everyone else.
    static func hba() -> String {
        """
        # Managed by pgfleet. Local (unix socket) connections only.
        # TYPE  DATABASE  USER      METHOD
        local   all       \(HealthProbe.role)   peer map=pgfleet
        local   all       all       scram-sha-256

        """
    }

    static func ident(daemonUser: String) -> String {
        """
        # Managed by pgfleet: only the daemon's OS user may act as the health-check role.
        # MAPNAME  SYSTEM-USERNAME  PG-USERNAME
        pgfleet    \(daemonUser)  \(HealthProbe.role)

        """ + (daemonUser == "root" ? sandboxPeerIdent : "")
    }

    /// Root on the host as a sandboxed postmaster sees it: the sandbox's user namespace maps only
    /// the tenant's uid, so every other uid appears as the overflow uid, `nobody` in the sandbox's
    /// passwd. Nothing inside the sandbox can be that uid (no other uid is mapped, setuid is off
    /// and no nested user namespace can be made), and outside it only root can reach the socket
    /// (its directory is the tenant's, mode 0700).
    static let sandboxPeerIdent = """
        # Root on the host, as a sandboxed postmaster sees it (its user namespace maps only the tenant's uid).
        pgfleet    nobody  \(HealthProbe.role)

        """

    /// Adds `sandboxPeerIdent` to the pg_ident.conf of a cluster made before the sandbox.
    static func ensureSandboxPeerIdent(dataDirectory: String, owner: UserIdentity?) throws {
        let path = dataDirectory + "/pg_ident.conf"
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        let present = text.split(separator: "\n").contains { line in
            line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init) == ["pgfleet", "nobody", HealthProbe.role]
        }
        if present { return }
        try Files.write(text + (text.hasSuffix("\n") || text.isEmpty ? "" : "\n") + sandboxPeerIdent, to: path, mode: 0o600, owner: owner)
    }

    /// Run in single-user mode right after initdb (one statement per line): the role the health
    /// checks and the proxy's pool use. It can log in, read monitoring views, and read a login
    /// role's SCRAM verifier through `authSecretFunction` (what PgBouncer's auth_query does), so the
    /// proxy can check a client's SCRAM proof itself and reuse server connections; nothing else.
    /// The function is PL/pgSQL because a session keeps its query plan: a SECURITY DEFINER SQL
    /// function is never inlined and re-plans its query on every call (about 25 µs more per
    /// login here, on the login's path).
    static let bootstrapSQL = """
        CREATE ROLE \(HealthProbe.role) LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION CONNECTION LIMIT 12;
        GRANT pg_monitor TO \(HealthProbe.role);
        CREATE SCHEMA pgfleet;
        GRANT USAGE ON SCHEMA pgfleet TO \(HealthProbe.role);
        CREATE FUNCTION \(TenantRoles.authSecretFunction)(role_name text) RETURNS text LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ BEGIN RETURN (SELECT rolpassword FROM pg_catalog.pg_authid WHERE rolname = role_name AND rolcanlogin AND (rolvaliduntil IS NULL OR rolvaliduntil > now())); END $$;
        REVOKE ALL ON FUNCTION \(TenantRoles.authSecretFunction)(text) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION \(TenantRoles.authSecretFunction)(text) TO \(HealthProbe.role);

        """

    /// The superuser initdb creates. Every new cluster starts with it, passwordless (so it cannot
    /// log in) until `personaliseSQL` renames it to the tenant's superuser and sets its password:
    /// a pooled cluster is made before anyone knows who will claim it.
    static let initialSuperuser = "postgres"

    /// What a new cluster gets in single-user mode right after initdb, pooled or not:
    /// `bootstrapSQL`, and the daemon's role made a superuser for the one step that needs it
    /// (`personaliseSQL` renames a superuser, which only a superuser may do, and takes it back).
    static let newClusterSQL = bootstrapSQL + "ALTER ROLE \(HealthProbe.role) SUPERUSER;\n"

    /// Run once over the new tenant's socket as the daemon's role, in one transaction: the
    /// tenant's superuser gets its name and its password (as a SCRAM verifier computed by the
    /// daemon: the plaintext never reaches the server), then the daemon's role loses superuser.
    /// The tenant ends as a cluster initialised for it would be: its superuser is the bootstrap
    /// superuser (the owner of the system catalogs), the daemon's role is what `bootstrapSQL` made.
    static func personaliseSQL(superuser: String, verifier: String) -> String {
        var statements: [String] = []
        if superuser != initialSuperuser {
            statements.append("ALTER ROLE \(identifier(initialSuperuser)) RENAME TO \(identifier(superuser))")
        }
        statements.append("ALTER ROLE \(identifier(superuser)) PASSWORD \(literal(verifier))")
        statements.append("ALTER ROLE \(HealthProbe.role) NOSUPERUSER")
        return statements.joined(separator: "; ")
    }

    /// An SQL string literal (standard_conforming_strings is on by default since 9.1).
    static func literal(_ value: String) -> String {
        "'" + value.replacingOccurrences(of: "'", with: "''") + "'"
    }

    static func identifier(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// Settings made with `pgfleet tenant set`, included after `includeFile`.
    static let settingsFile = "pgfleet.settings.conf"

    static func settingsText(_ settings: [(String, String)]) -> String {
        "# Managed by pgfleet: `pgfleet tenant set` writes this file.\n"
            + settings.map { "\($0.0) = \(quote($0.1))\n" }.joined()
    }

    /// Reads back what `settingsText` wrote.
    static func parseSettings(_ text: String) -> [(String, String)] {
        text.split(separator: "\n").compactMap { line -> (String, String)? in
            guard !line.hasPrefix("#"), let equals = line.firstIndex(of: "=") else { return nil }
            let name = line[..<equals].trimmingCharacters(in: .whitespaces)
            var value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            if value.hasPrefix("'") && value.hasSuffix("'") && value.count >= 2 {
                value = String(value.dropFirst().dropLast()).replacingOccurrences(of: "''", with: "'").replacingOccurrences(of: "\\\\", with: "\\")
            }
            return name.isEmpty ? nil : (name, value)
        }
    }

    static func quote(_ value: String) -> String {
        "'" + value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "''") + "'"
    }
}
