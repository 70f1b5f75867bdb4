import FleetCore
import Foundation

/// The limit of a loop-image area: the image is larger than the limit (sparse, so the host pays
/// only for what is written) and a root-owned, fallocate'd reserve file takes the rest. Growing
/// is a truncate of the reserve, shrinking a fallocate: both instant and online, with no
/// resize2fs (whose online resize needs CAP_SYS_RESOURCE, which containers drop). The reserve's
/// extents are unwritten, so the image stays sparse. The tenant cannot remove it: it lives in a
/// root-owned 0700 directory.
enum Reserve {
    static let directoryName = ".pgfleet"

    static func path(in mount: String) -> String { mount + "/" + directoryName + "/reserve" }

    struct Reading: Equatable {
        /// Blocks in use (the reserve's included) plus blocks free to unprivileged writers.
        var capacity: UInt64
        var reserve: UInt64
        var used: UInt64 { capacityUsed - reserve }
        var capacityUsed: UInt64
        /// The reserve file's length (its blocks also count its extent tree).
        var size: Int64
        var limit: UInt64 { capacity - reserve }
        var usage: AreaUsage { AreaUsage(usedBytes: used, limitBytes: limit) }
    }

    /// What the filesystem mounted at `mount` holds and allows, the reserve left out.
    static func read(mount: String) throws(FleetError) -> Reading {
        let fd = open(path(in: mount), O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw .failed("cannot open the disk reserve in \(mount): \(errnoText())") }
        defer { close(fd) }
        return try read(fd: fd, mount: mount)
    }

    private static func read(fd: Int32, mount: String) throws(FleetError) -> Reading {
        var fs = statvfs()
        var file = stat()
        guard fstatvfs(fd, &fs) == 0, fstat(fd, &file) == 0 else { throw .failed("statfs \(mount): \(errnoText())") }
        let block = UInt64(fs.f_frsize)
        let used = (UInt64(fs.f_blocks) - UInt64(fs.f_bfree)) * block
        let reserve = UInt64(file.st_blocks) * 512
        return Reading(capacity: used + UInt64(fs.f_bavail) * block, reserve: min(reserve, used), capacityUsed: used, size: Int64(file.st_size))
    }

    /// Makes the root-owned directory and an empty reserve in a freshly made filesystem.
    static func prepare(mount: String) throws(FleetError) {
        let directory = mount + "/" + directoryName
        if mkdir(directory, 0o700) != 0 && errno != EEXIST { throw .failed("mkdir \(directory): \(errnoText())") }
        guard chown(directory, 0, 0) == 0, chmod(directory, 0o700) == 0 else { throw .failed("chown \(directory): \(errnoText())") }
        let fd = open(path(in: mount), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw .failed("cannot create \(path(in: mount)): \(errnoText())") }
        close(fd)
    }

    enum Outcome: Equatable {
        case done(AreaUsage)
        /// The filesystem itself is too small for `limit`: the image must grow first.
        case needsLargerFilesystem(capacity: UInt64)
    }

    /// Sizes the reserve so that what is stored plus what may still be written is `limit`.
    static func setLimit(_ limit: UInt64, mount: String, area: String) throws(FleetError) -> Outcome {
        let fd = open(path(in: mount), O_RDWR | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw .failed("cannot open the disk reserve in \(mount): \(errnoText())") }
        defer { close(fd) }
        // The reserve's blocks include its extent tree, which grows with it: settle in a few rounds.
        for _ in 0..<6 {
            let reading = try read(fd: fd, mount: mount)
            guard reading.capacity >= limit else { return .needsLargerFilesystem(capacity: reading.capacity) }
            let excess = Int64(reading.limit) - Int64(limit)
            if excess >= 0 && excess < 8192 { break }
            let size = max(0, (reading.size + excess) / 4096 * 4096)
            if excess < 0 {
                guard ftruncate(fd, off_t(size)) == 0 else { throw .failed("truncate \(path(in: mount)): \(errnoText())") }
            } else {
                guard reading.used <= limit else {
                    throw .invalidRequest(
                        "the \(area) area holds \(ByteSize.format(reading.used)), more than the new limit \(ByteSize.format(limit)): "
                            + "delete data (and VACUUM FULL) first, or choose a larger size"
                    )
                }
                // glibc's posix_fallocate is the fallocate(2) syscall on ext4 (unwritten extents, no data written).
                let result = posix_fallocate(fd, 0, off_t(size))
                if result != 0 {
                    if result == ENOSPC {
                        throw .invalidRequest(
                            "the \(area) area cannot shrink to \(ByteSize.format(limit)) now: it holds \(ByteSize.format(reading.used)) "
                                + "and the rest is being written; try again or choose a larger size"
                        )
                    }
                    throw .failed("fallocate \(path(in: mount)): \(String(cString: strerror(result)))")
                }
            }
        }
        fsync(fd)
        return .done(try read(fd: fd, mount: mount).usage)
    }
}
