import Foundation

/// A filesystem's size and use, from statvfs: the doctor's reading for `/dev/shm` and for the
/// filesystem that holds the tenants' WAL.
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

    /// The filesystem holding `path`, or its nearest existing ancestor's (a root not made yet).
    public static func read(_ path: String) -> FilesystemSpace? {
        var candidate = path
        var info = statvfs()
        while statvfs(candidate, &info) != 0 {
            guard errno == ENOENT, candidate != "/", !candidate.isEmpty else { return nil }
            candidate = (candidate as NSString).deletingLastPathComponent
        }
        let block = UInt64(info.f_frsize)
        return FilesystemSpace(
            size: UInt64(info.f_blocks) &* block, used: UInt64(info.f_blocks - min(info.f_blocks, info.f_bfree)) &* block,
            available: UInt64(info.f_bavail) &* block
        )
    }
}
