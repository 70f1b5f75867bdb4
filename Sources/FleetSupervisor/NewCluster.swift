import FleetBundles
import FleetCore
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
        try await Command.run(
            bundle.initdb,
            [
                "--pgdata=\(dataDirectory)", "--username=\(ClusterConfig.initialSuperuser)",
                // Replaced by pgfleet's pg_hba.conf below; initdb wants a password for password
                // methods, and this superuser has none until the tenant's is set.
                "--auth-local=peer", "--auth-host=reject", "--encoding=UTF8",
                // C.UTF-8 sorts by code point: no glibc or ICU upgrade can change an index's order.
                "--locale=C.UTF-8", "--no-instructions", "--no-sync",
                // 1 MB WAL segments: a new cluster's pg_wal holds about 5 MB instead of one 16 MB
                // segment (see min_wal_size in ClusterConfig.settings).
                "--wal-segsize=1",
            ],
            environment: environment, user: owner, workingDirectory: parent, background: background
        ).check("initdb")
        try Files.write(ClusterConfig.hba(), to: dataDirectory + "/pg_hba.conf", mode: 0o600, owner: owner)
        try Files.write(ClusterConfig.ident(daemonUser: daemonUser), to: dataDirectory + "/pg_ident.conf", mode: 0o600, owner: owner)

        let result = try await Command.run(
            bundle.postgres, ["--single", "-D", dataDirectory, "-c", "log_min_messages=warning", "postgres"],
            environment: environment, user: owner, stdin: Array(ClusterConfig.newClusterSQL.utf8), workingDirectory: dataDirectory,
            background: background
        )
        try result.check("postgres --single (creating the pgfleet role)")
        // Single-user mode exits 0 even when a statement failed.
        if result.stderr.contains("ERROR:") || result.stdout.contains("ERROR:") {
            throw FleetError.failed("creating the pgfleet role failed:\n\(result.stderr)\(result.stdout)")
        }
        // --no-sync skips thousands of fsyncs; one syncfs (coreutils `sync -f`, in a child so no
        // thread of the daemon blocks on it) makes the new cluster durable all the same.
        try await Command.run("/bin/sync", ["-f", dataDirectory], background: background).check("sync -f \(dataDirectory)")
    }
}
