import FleetCore
import FleetSystem
import Foundation

/// How much an import may write, and how much of the disk it leaves to the tenants beside it:
/// an archive that unpacks to gigabytes (by accident or as a decompression bomb) must not fill
/// the filesystem under the tenants' WAL, where PostgreSQL stops with a PANIC.
struct ImportLimits: Sendable {
    /// The most an import may write (an archive unpacked, an installation copied). PostgreSQL
    /// release trees are 50 to 300 MB.
    var maxUnpackedBytes: Int64 = 4 << 30
    /// The most files and directories an import may write. A release tree has a few thousand.
    var maxEntries = 100_000
    /// Free space an import always leaves on the bundles' filesystem.
    var reserveBytes = DiskSpace.tenantReserve
}

/// What an import would write: an archive's table of contents, or the directories it copies.
struct ArchiveContents: Equatable {
    /// Every regular file's length, plus one 4 KiB block per entry for what the filesystem adds.
    var bytes: Int64
    var entries: Int

    static let blockPerEntry: Int64 = 4096

    /// Parses `tar --list --verbose --numeric-owner` output: `MODE UID/GID SIZE DATE TIME NAME`
    /// per entry (a device's size is `MAJOR,MINOR`, which takes no room). Nil if a line has no
    /// size where one belongs.
    init?(tarListing: String) {
        var bytes: Int64 = 0
        var entries = 0
        for line in tarListing.split(separator: "\n", omittingEmptySubsequences: true) {
            let fields = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: true)
            guard fields.count >= 3 else { return nil }
            entries += 1
            if fields[2].contains(",") { continue }
            guard let size = Int64(fields[2]), size >= 0 else { return nil }
            let (sum, overflow) = bytes.addingReportingOverflow(size)
            bytes = overflow ? .max : sum
        }
        self.bytes = bytes == .max ? .max : bytes + Int64(entries) * Self.blockPerEntry
        self.entries = entries
    }

    init(bytes: Int64, entries: Int) {
        self.bytes = bytes
        self.entries = entries
    }

    /// What copying the walked `tree` writes, counted the same way.
    init(tree: [TreeEntry]) {
        self.init(bytes: tree.reduce(0) { $0 + $1.size } + Int64(tree.count) * Self.blockPerEntry, entries: tree.count)
    }

    /// The length of `member` in `unzip -l` output (`LENGTH DATE TIME NAME` per member), nil if
    /// it is not listed.
    static func unzippedLength(of member: String, inListing listing: String) -> Int64? {
        for line in listing.split(separator: "\n") {
            let fields = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: true)
            guard fields.count == 4, fields[3].drop(while: { $0 == " " }) == member[...] else { continue }
            if let length = Int64(fields[0]), length >= 0 { return length }
        }
        return nil
    }
}
