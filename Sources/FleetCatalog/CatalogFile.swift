import FleetCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Keeps the catalog's files private (0600) without touching the process-wide umask, which other
/// threads of the daemon may rely on at the same moment.
enum CatalogFile {
    static let mode: mode_t = 0o600

    /// Creates the database file 0600 before SQLite would create it 0644, and tightens an existing
    /// one. SQLite gives the -wal and -shm files it creates later the mode of the database file.
    static func prepare(_ path: String) throws {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, mode)
        guard fd >= 0 else { throw failure("cannot create", path, errno) }
        defer { close(fd) }
        guard fchmod(fd, mode) == 0 else { throw failure("cannot chmod 0600", path, errno) }
    }

    /// Tightens the -wal and -shm files too, in case they predate `prepare` (an older file).
    static func restrictCompanions(of path: String) throws {
        for file in [path + "-wal", path + "-shm"] where chmod(file, mode) != 0 {
            let code = errno
            if code != ENOENT { throw failure("cannot chmod 0600", file, code) }
        }
    }

    private static func failure(_ what: String, _ path: String, _ code: Int32) -> FleetError {
        let reason = String(cString: strerror(code))
        return .failed("catalog: \(what) \(path): \(reason)")
    }
}
