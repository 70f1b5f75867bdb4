import FleetBundles
import FleetCore
import FleetHost
import FleetSystem
import Foundation

/// Makes a new, not yet personalised cluster: initdb, pgfleet's pg_hba/pg_ident, and the
/// bootstrap SQL in single-user mode. The ready pool makes its entries with it, and so does
/// `tenant create` when the pool is empty; both then go through the same personalisation.
enum NewCluster {
    /// `owner` runs initdb and owns the files (nil: the daemon's own user); `background` runs
    /// every step at the lowest CPU and I/O priority.
    static func make(
        bundle: FleetBundles.Bundle, dataDirectory: String, owner: UserIdentity?, daemonUser: String, background: Bool
    ) async throws {
        let environment = Fleet.environment(for: bundle)
        let parent = (dataDirectory as NSString).deletingLastPathComponent
        try checkRoom(in: parent)
        try await Command.run(
            bundle.initdb,
            [
                "--pgdata=\(dataDirectory)", "--username=\(ClusterConfig.initialSuperuser)",
                // Replaced by pgfleet's pg_hba.conf below; initdb wants a password for password
                // methods, and this superuser has none until the tenant's is set.
                "--auth-local=peer", "--auth-host=reject", "--encoding=UTF8",
                "--no-instructions", "--no-sync",
                // 1 MB WAL segments: a new cluster's pg_wal holds about 5 MB instead of one 16 MB
                // segment (see min_wal_size in ClusterConfig.settings).
                "--wal-segsize=1",
            ] + localeArguments(major: bundle.manifest.major),
            environment: environment, user: owner, workingDirectory: parent, background: background
        ).check("initdb")
        try Files.write(ClusterConfig.hba(), to: dataDirectory + "/pg_hba.conf", mode: 0o600, owner: owner)
        try Files.write(ClusterConfig.ident(daemonUser: daemonUser), to: dataDirectory + "/pg_ident.conf", mode: 0o600, owner: owner)

        try await singleUser(
            ClusterConfig.newClusterSQL, doing: "creating the pgfleet role", bundle: bundle, dataDirectory: dataDirectory, owner: owner,
            background: background
        )
        // --no-sync skips thousands of fsyncs; one syncfs (coreutils `sync -f`, in a child so no
        // thread of the daemon blocks on it) makes the new cluster durable all the same.
        try await Command.run("/bin/sync", ["-f", dataDirectory], background: background).check("sync -f \(dataDirectory)")
    }

    /// C.UTF-8 sorts by code point. On 17+ the builtin provider's C.UTF-8 is PostgreSQL's own
    /// (no glibc or ICU upgrade can change an index's order, and it records no libc version);
    /// 14–16 use glibc's C.UTF-8, which sorts by code point too.
    static func localeArguments(major: Int) -> [String] {
        major >= 17 ? ["--locale-provider=builtin", "--builtin-locale=C.UTF-8", "--locale=C.UTF-8"] : ["--locale=C.UTF-8"]
    }

    /// About what initdb writes for a new cluster (28 MB with 1 MB WAL segments), with room to
    /// spare for its first checkpoints.
    static let newClusterBytes: Int64 = 64 << 20

    /// Throws unless `directory`'s filesystem has room for a new cluster and still leaves
    /// `reserve` free for the tenants already there, whose WAL must never run out of space.
    static func checkRoom(in directory: String, reserve: Int64 = DiskSpace.tenantReserve) throws {
        let free = try DiskSpace.available(at: directory)
        guard free >= newClusterBytes + reserve else {
            throw FleetError.failed(
                "not enough disk space for a new cluster: \(directory) has \(DiskSpace.describe(free)) free, a cluster needs about "
                    + "\(DiskSpace.describe(newClusterBytes)) and pgfleet leaves \(DiskSpace.describe(reserve)) to the running tenants; "
                    + "free some space, or drop tenants you no longer need"
            )
        }
    }

    /// Runs `sql` (a statement per line) in single-user mode on the stopped cluster at
    /// `dataDirectory`, as `owner`. Throws naming `doing` with PostgreSQL's error messages when
    /// a statement failed: single-user mode exits 0 all the same. A failing statement is not
    /// echoed into that output (log_min_error_statement), so a statement may carry a verifier.
    /// `sandbox`: run inside it (its command is replaced by this one), as a tenant's postmaster runs.
    static func singleUser(
        _ sql: String, doing: String, bundle: FleetBundles.Bundle, dataDirectory: String, owner: UserIdentity?, background: Bool = false,
        sandbox: SandboxPlan? = nil, database: String = "postgres"
    ) async throws {
        // Never on huge pages: the tenant's hugetlb limit is for its postmaster.
        let arguments = [
            "--single", "-D", dataDirectory, "-c", "huge_pages=off", "-c", "log_min_messages=warning", "-c", "log_min_error_statement=panic", database,
        ]
        let result: CommandResult
        if var plan = sandbox {
            plan.command = [bundle.postgres] + arguments
            result = try await Fleet.run(plan, owner: owner, stdin: Array(sql.utf8), workingDirectory: dataDirectory)
        } else {
            result = try await Command.run(
                bundle.postgres, arguments, environment: Fleet.environment(for: bundle), user: owner, stdin: Array(sql.utf8),
                workingDirectory: dataDirectory, background: background
            )
        }
        try result.check("postgres --single (\(doing))")
        // PostgreSQL's own words, without the log line prefix and the prompt's noise.
        let errors = (result.stderr + "\n" + result.stdout).split(separator: "\n").compactMap { line -> String? in
            guard let marker = line.range(of: "ERROR:") else { return nil }
            return line[marker.upperBound...].trimmingCharacters(in: .whitespaces)
        }
        if !errors.isEmpty {
            throw FleetError.failed("\(doing) failed: \(errors.joined(separator: "; "))")
        }
    }
}
