import Foundation

/// A filesystem's size and use, from statvfs: the doctor's reading for `/dev/shm` and for the
/// filesystem that holds the tenants' WAL, a tenant's own /dev/shm, and the free space pgfleet's
/// own writes check first (`DiskSpace`).
public struct FilesystemSpace: Sendable, Equatable {
    public var size: UInt64
    public var used: UInt64
    /// What an unprivileged writer (a tenant's postgres) may still write.
    public var available: UInt64

    public init(size: UInt64, used: UInt64, available: UInt64) {
        self.size = size
        self.used = used
        self.available = available
    }

    /// The filesystem holding exactly `path`; nil with errno set when statvfs fails.
    public static func at(_ path: String) -> FilesystemSpace? {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { return nil }
        let block = UInt64(info.f_frsize)
        return FilesystemSpace(
            size: UInt64(info.f_blocks) &* block, used: UInt64(info.f_blocks - min(info.f_blocks, info.f_bfree)) &* block,
            available: UInt64(info.f_bavail) &* block
        )
    }

    /// The filesystem holding `path`, or its nearest existing ancestor's (a root not made yet).
    public static func read(_ path: String) -> FilesystemSpace? {
        var candidate = path
        while true {
            if let space = at(candidate) { return space }
            guard errno == ENOENT, candidate != "/", !candidate.isEmpty else { return nil }
            candidate = (candidate as NSString).deletingLastPathComponent
        }
    }
}
