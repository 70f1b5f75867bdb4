import FleetCore
import Foundation

/// Free space on the filesystems pgfleet writes to. Tenants' WAL usually shares them: where
/// PostgreSQL cannot write WAL it stops with a PANIC, so pgfleet's own writes (bundle imports,
/// new clusters) leave `tenantReserve` free and are refused before they start otherwise.
public enum DiskSpace {
    /// What pgfleet's own writes always leave free.
    public static let tenantReserve: Int64 = 128 << 20

    /// Bytes an unprivileged user may still write on the filesystem holding `path`.
    public static func available(at path: String) throws -> Int64 {
        guard let space = FilesystemSpace.at(path) else {
            throw FleetError.failed("cannot tell the free space at \(path): \(String(cString: strerror(errno)))")
        }
        return Int64(clamping: space.available)
    }

    /// "1.5 GB", "230 MB", "12 kB": decimal units, as df -H and most people count.
    public static func describe(_ bytes: Int64) -> String {
        let value = Double(bytes)
        if value >= 1e9 { return String(format: "%.1f GB", value / 1e9) }
        if value >= 1e6 { return String(format: "%.0f MB", value / 1e6) }
        return String(format: "%.0f kB", max(value, 0) / 1e3)
    }
}
