/// The WAL settings that decide how much room `pg_wal` can take.
public struct WALSettings: Sendable, Equatable, Codable {
    /// `wal_segment_size`: fixed at initdb (pgfleet's clusters use 1 MB, `initdb --wal-segsize=1`).
    public var segmentBytes: UInt64
    public var maxWALBytes: UInt64
    public var minWALBytes: UInt64
    /// `wal_keep_size`.
    public var keepBytes: UInt64
    /// `max_slot_wal_keep_size`; nil is PostgreSQL's -1 (unlimited), which no quota can hold.
    public var maxSlotKeepBytes: UInt64?

    public init(segmentBytes: UInt64 = 1 << 20, maxWALBytes: UInt64, minWALBytes: UInt64, keepBytes: UInt64 = 0, maxSlotKeepBytes: UInt64? = nil) {
        self.segmentBytes = segmentBytes
        self.maxWALBytes = maxWALBytes
        self.minWALBytes = minWALBytes
        self.keepBytes = keepBytes
        self.maxSlotKeepBytes = maxSlotKeepBytes
    }

    /// What ClusterConfig writes for every tenant today.
    public static let pgfleetDefaults = WALSettings(segmentBytes: 1 << 20, maxWALBytes: 256 << 20, minWALBytes: 32 << 20)

    /// The `postgresql.conf` lines for these settings (sizes in kB, which PostgreSQL accepts for each).
    public var configurationLines: String {
        """
        max_wal_size = \(maxWALBytes >> 10)kB
        min_wal_size = \(minWALBytes >> 10)kB
        wal_keep_size = \(keepBytes >> 10)kB
        max_slot_wal_keep_size = \(maxSlotKeepBytes.map { "\($0 >> 10)kB" } ?? "-1")

        """
    }
}

/// The two areas of a tenant's disk: WAL on a filesystem (or project) of its own, so a full data
/// area is an ERROR for the writer ("could not extend file", SQLSTATE 53100) and never the PANIC
/// PostgreSQL raises when it cannot write WAL.
///
/// Not enough on its own (measured, PostgreSQL 15): with the data area full, the next checkpoint
/// PANICs writing `pg_logical/replorigin_checkpoint.tmp` in PGDATA, and after the restart every
/// connection fails with "could not write init file" (the relcache init file), so nobody can log
/// in to delete data. PGDATA's own small files need room the tenant's tables cannot take.
public struct DiskAreas: Sendable, Equatable, Codable {
    /// Data, temp files and logs: everything under the tenant's directory but `wal/`.
    public var dataBytes: UInt64
    public var walBytes: UInt64

    public init(dataBytes: UInt64, walBytes: UInt64) {
        self.dataBytes = dataBytes
        self.walBytes = walBytes
    }

    public var totalBytes: UInt64 { dataBytes + walBytes }
}

/// How `--disk SIZE` is split, and the WAL settings pgfleet writes so WAL never outgrows its area.
///
/// `--disk` is what the tenant may store (data + WAL), not the size of the filesystems holding it:
/// their own overhead (journal, inode tables) is the host's, see `Ext4Overhead`.
///
/// The WAL area must hold, at worst (see `walAreaBytes(for:)`):
///
///     max(wal_keep_size, max_slot_wal_keep_size) + 2 × max_wal_size + 3 segments
///
/// - Retention: a checkpoint removes only segments older than both `wal_keep_size` and every
///   slot's restart point (bounded by `max_slot_wal_keep_size`), each measured back from the
///   current position. pgfleet adds the larger of the two on top of the checkpoint cycle instead
///   of taking the maximum with it: a slot or a standby lagging while checkpoints run late is the
///   case a quota must survive.
/// - `max_wal_size` is a soft limit: a checkpoint starts at about max_wal_size / (1 +
///   checkpoint_completion_target) = 53 % of it and segments are removed only when it ends, so a
///   checkpoint that runs late (a noisy disk, an fsync stall) lets WAL pass max_wal_size. The
///   headroom is one more max_wal_size (100 %): a late checkpoint may take a whole cycle longer.
///   With pgfleet's small shared_buffers (16MB) a checkpoint has little to write once it hurries.
/// - 3 segments: the one being written, the one being pre-allocated or recycled, and rounding.
/// - Not bounded by any setting: WAL held for a failing `archive_command`. Archiving must stay off
///   on a quota'd tenant, or its WAL area (and the 85 % warning) watched.
/// - `max_slot_wal_keep_size = -1` (unlimited) is replaced by a bound (max_wal_size): a slot
///   that lags further is invalidated instead of filling the WAL area.
public struct DiskPlan: Sendable, Equatable {
    public var diskBytes: UInt64
    public var areas: DiskAreas
    /// What pgfleet writes into the tenant's configuration.
    public var wal: WALSettings
    /// What was changed from the settings asked for, in words for the log and the CLI.
    public var adjustments: [String]

    /// The WAL area takes at most this share of the disk; beyond it max_wal_size is lowered.
    public static let walShareDivisor: UInt64 = 4
    /// Data a new cluster needs: initdb writes 22 MB besides pg_wal (PostgreSQL 15, 1 MB segments),
    /// plus room for the first tables, temp files and the log.
    public static let minimumDataBytes: UInt64 = 48 << 20
    /// max_wal_size is not lowered below this many segments (PostgreSQL's own floor is 2).
    public static let minimumMaxWALSegments: UInt64 = 4

    /// Warn when an area is this full.
    public static let warningFraction = 0.85

    public static func walAreaBytes(for wal: WALSettings) -> UInt64 {
        let retention = max(wal.keepBytes, wal.maxSlotKeepBytes ?? wal.maxWALBytes)
        return retention + 2 * wal.maxWALBytes + 3 * wal.segmentBytes
    }

    /// The smallest `--disk` that works with these WAL settings (after lowering max_wal_size as far as it goes).
    public static func minimumDiskBytes(for wal: WALSettings) -> UInt64 {
        let smallest = smallestWAL(wal)
        let walArea = walAreaBytes(for: smallest)
        return max(minimumDataBytes + walArea, walShareDivisor * walArea)
    }

    /// The split of `diskBytes`; throws `FleetError.invalidRequest` with the arithmetic when it is too small.
    public static func make(diskBytes: UInt64, wal asked: WALSettings) throws(FleetError) -> DiskPlan {
        try validate(asked)
        var wal = asked
        var adjustments: [String] = []
        if wal.maxSlotKeepBytes == nil {
            wal.maxSlotKeepBytes = wal.maxWALBytes
        }
        let cap = diskBytes / walShareDivisor
        if walAreaBytes(for: wal) > cap {
            // Lower max_wal_size (and a slot bound pgfleet chose) until the WAL area fits its share.
            let seg = wal.segmentBytes
            let fixedRetention = asked.maxSlotKeepBytes.map { max(wal.keepBytes, $0) } ?? wal.keepBytes
            let room = cap > 3 * seg ? cap - 3 * seg : 0
            // retention = max(fixed, slot = max_wal_size) when pgfleet chose the slot bound.
            var fitting = asked.maxSlotKeepBytes == nil
                ? min(room / 3, room > fixedRetention ? (room - fixedRetention) / 2 : 0)
                : (room > fixedRetention ? (room - fixedRetention) / 2 : 0)
            fitting = fitting / seg * seg
            let floor = minimumMaxWALSegments * seg
            if fitting < floor { throw tooSmall(diskBytes, asked) }
            adjustments.append("max_wal_size lowered from \(ByteSize.format(wal.maxWALBytes)) to \(ByteSize.format(fitting)) to fit the WAL area")
            wal.maxWALBytes = fitting
            if asked.maxSlotKeepBytes == nil { wal.maxSlotKeepBytes = fitting }
            if wal.minWALBytes > fitting {
                adjustments.append("min_wal_size lowered from \(ByteSize.format(wal.minWALBytes)) to \(ByteSize.format(fitting))")
                wal.minWALBytes = fitting
            }
        }
        if asked.maxSlotKeepBytes == nil {
            adjustments.append("max_slot_wal_keep_size bounded to \(ByteSize.format(wal.maxSlotKeepBytes ?? 0)) (was unlimited)")
        }
        let walArea = walAreaBytes(for: wal)
        guard walArea <= cap, diskBytes >= walArea + minimumDataBytes else { throw tooSmall(diskBytes, asked) }
        return DiskPlan(diskBytes: diskBytes, areas: DiskAreas(dataBytes: diskBytes - walArea, walBytes: walArea), wal: wal, adjustments: adjustments)
    }

    private static func validate(_ wal: WALSettings) throws(FleetError) {
        let seg = wal.segmentBytes
        guard seg >= 1 << 20, seg <= 1 << 30, seg & (seg - 1) == 0 else {
            throw .invalidRequest("wal_segment_size \(ByteSize.format(seg)) is not a power of two from 1MB to 1GB")
        }
        guard wal.maxWALBytes >= 2 * seg, wal.minWALBytes >= 2 * seg else {
            throw .invalidRequest("max_wal_size and min_wal_size must be at least two WAL segments (\(ByteSize.format(2 * seg)))")
        }
    }

    /// `wal` with max_wal_size at its floor: the least WAL area these settings can live with.
    private static func smallestWAL(_ wal: WALSettings) -> WALSettings {
        var smallest = wal
        smallest.maxWALBytes = minimumMaxWALSegments * wal.segmentBytes
        smallest.minWALBytes = min(wal.minWALBytes, smallest.maxWALBytes)
        if wal.maxSlotKeepBytes == nil { smallest.maxSlotKeepBytes = smallest.maxWALBytes }
        return smallest
    }

    private static func tooSmall(_ diskBytes: UInt64, _ wal: WALSettings) -> FleetError {
        let smallest = smallestWAL(wal)
        let walArea = walAreaBytes(for: smallest)
        let retention = max(smallest.keepBytes, smallest.maxSlotKeepBytes ?? 0)
        let minimum = minimumDiskBytes(for: wal)
        return .invalidRequest(
            "--disk \(ByteSize.format(diskBytes)) is too small: the WAL area needs at least \(ByteSize.format(walArea)) "
                + "(retention \(ByteSize.format(retention)) + 2 × max_wal_size \(ByteSize.format(smallest.maxWALBytes)) "
                + "+ 3 × \(ByteSize.format(wal.segmentBytes)) segments) and may take at most 1/\(walShareDivisor) of the disk, "
                + "and the data area needs \(ByteSize.format(minimumDataBytes)); use --disk \(ByteSize.format(minimum)) or more"
                + (wal.keepBytes > 0 || wal.maxSlotKeepBytes != nil ? ", or lower wal_keep_size / max_slot_wal_keep_size" : "")
        )
    }
}

/// Bytes used and allowed in one area.
public struct AreaUsage: Sendable, Equatable, Codable {
    public var usedBytes: UInt64
    public var limitBytes: UInt64

    public init(usedBytes: UInt64, limitBytes: UInt64) {
        self.usedBytes = usedBytes
        self.limitBytes = limitBytes
    }

    public var fraction: Double { limitBytes == 0 ? 1 : Double(usedBytes) / Double(limitBytes) }
    public var isNearlyFull: Bool { fraction >= DiskPlan.warningFraction }
}

/// A tenant's disk as `tenant info` shows it.
public struct DiskUsage: Sendable, Equatable, Codable {
    public var data: AreaUsage
    public var wal: AreaUsage

    public init(data: AreaUsage, wal: AreaUsage) {
        self.data = data
        self.wal = wal
    }

    public var usedBytes: UInt64 { data.usedBytes + wal.usedBytes }
    public var limitBytes: UInt64 { data.limitBytes + wal.limitBytes }

    /// The warnings to raise (an event, a mark in `tenant list`), none when both areas are below 85 %.
    public var warnings: [String] {
        var out: [String] = []
        for (name, area) in [("data", data), ("WAL", wal)] where area.isNearlyFull {
            out.append("\(name) area \(Int((area.fraction * 100).rounded(.down))) % full (\(ByteSize.format(area.usedBytes)) of \(ByteSize.format(area.limitBytes)))")
        }
        return out
    }
}

/// ext4's own use of a filesystem image (mkfs.ext4 -b 4096 -i 16384 -m 0 -J size=J), which the
/// tenant cannot store in. Measured with e2fsprogs 1.47 / Linux 6.18 (size − df's available):
///
///     image     J=8MB      J=16MB
///     256MB     17.4MB     25.4MB
///     1GB       42.6MB     50.6MB
///     4GB      104.3MB    112.3MB
///     16GB     325.2MB    333.2MB
///     64GB    1104.5MB   1112.5MB
///
/// The parts: the journal, 256-byte inodes per 16 kB (1/64), ext4's reserved clusters for
/// delayed allocation (2 % up to 16 MB), group descriptors reserved for growth and bitmaps. The
/// model rounds each up; it only has to be at least the truth.
public enum Ext4Overhead {
    public static func bytes(imageBytes: UInt64, journalBytes: UInt64) -> UInt64 {
        journalBytes + imageBytes / 64 + (16 << 20) + imageBytes / 256 + (4 << 20)
    }

    /// The smallest image (a multiple of 1 MB) that leaves `usable` bytes after ext4's overhead.
    public static func imageBytes(usable: UInt64, journalBytes: UInt64) -> UInt64 {
        // overhead is linear: image × (1 − 1/64 − 1/256) − fixed ≥ usable.
        let fixed = journalBytes + (20 << 20)
        let image = (usable + fixed) * 256 / (256 - 4 - 1) + 1
        return ((image + (1 << 20) - 1) >> 20) << 20
    }
}
