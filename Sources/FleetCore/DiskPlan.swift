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

/// The four areas of a tenant's disk, each a filesystem (or project) of its own with a hard limit,
/// so that whatever the tenant fills is an ERROR for the writer, never a PANIC or a lockout:
///
/// - data: PGDATA/base, where tables, indexes, temp files (base/pgsql_tmp) and CREATE DATABASE go.
///   Full, it is "could not extend file" (SQLSTATE 53100) for the writer.
/// - system: PGDATA's own small files (global/, pg_xact/, pg_multixact/, pg_subtrans/, pg_logical/,
///   pg_stat/, global/pg_internal.init, postmaster.pid, …) and the socket. No SQL the tenant runs
///   puts a table here.
/// - WAL: pg_wal. Full, PostgreSQL PANICs, so `walAreaBytes(for:)` bounds what WAL can keep.
/// - log: the postmaster's stderr. Full, PostgreSQL only loses log lines (measured: nothing fails).
///
/// Why four (measured, PostgreSQL 15, `--disk 128MB`): with PGDATA and its base/ on one area, a
/// table filling it made the next checkpoint PANIC writing `pg_logical/replorigin_checkpoint.tmp`
/// and, after the crash restart, every connection failed with "could not write init file" (the
/// relcache init file), so nobody could log in to delete data. With base/ on an area of its own
/// the same fill is an ERROR for the writer, checkpoints keep succeeding, the checkpointer is never
/// restarted and new connections keep working; temp files fail with the same ERROR. The log has
/// an area of its own because on the system area a log flood would bring the PANIC back, and on
/// the data area a full table would swallow the very ERRORs that say why.
///
/// What this does not cover (measured): a database whose relcache init file
/// (`base/<oid>/pg_internal.init`) must be rewritten while the data area is full — after a
/// VACUUM or ANALYZE of a system catalog in it, or after any restart, which removes them, or a
/// database never connected to before — refuses new connections with "could not write init
/// file" until the data area has room: the init file lives beside the tables. The remedy is to
/// raise `--disk` (online) by a few MB, delete data, and lower it again.
public struct DiskAreas: Sendable, Equatable, Codable {
    public var systemBytes: UInt64
    public var dataBytes: UInt64
    public var walBytes: UInt64
    public var logBytes: UInt64

    public init(systemBytes: UInt64, dataBytes: UInt64, walBytes: UInt64, logBytes: UInt64) {
        self.systemBytes = systemBytes
        self.dataBytes = dataBytes
        self.walBytes = walBytes
        self.logBytes = logBytes
    }

    public var totalBytes: UInt64 { systemBytes + dataBytes + walBytes + logBytes }
}

/// How `--disk SIZE` is split, and the WAL settings pgfleet writes so WAL never outgrows its area.
///
/// `--disk` is what the tenant may store (all four areas), not the size of the filesystems holding it:
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
    /// Data a new cluster needs: initdb writes 22 MB into base/ (PostgreSQL 15: template0,
    /// template1, postgres), plus room for the first tables and temp files.
    public static let minimumDataBytes: UInt64 = 48 << 20
    /// The system area takes 1/32 of the disk within these bounds. initdb writes 0.7 MB there;
    /// what grows is pg_xact, pg_subtrans and pg_multixact (bounded by autovacuum's freezing:
    /// pg_xact is 50 MB at autovacuum_freeze_max_age's 200 million transactions), pg_stat at
    /// shutdown, and pg_logical's snapshots.
    public static let systemBytesRange: ClosedRange<UInt64> = (16 << 20)...(256 << 20)
    /// The log area takes 1/32 of the disk within these bounds: a log the tenant floods only loses lines.
    public static let logBytesRange: ClosedRange<UInt64> = (8 << 20)...(256 << 20)
    public static let systemShareDivisor: UInt64 = 32
    public static let logShareDivisor: UInt64 = 32
    /// max_wal_size is not lowered below this many segments (PostgreSQL's own floor is 2).
    public static let minimumMaxWALSegments: UInt64 = 4

    /// Warn when an area is this full.
    public static let warningFraction = 0.85

    public static func systemAreaBytes(diskBytes: UInt64) -> UInt64 { share(diskBytes / systemShareDivisor, systemBytesRange) }
    public static func logAreaBytes(diskBytes: UInt64) -> UInt64 { share(diskBytes / logShareDivisor, logBytesRange) }

    /// `bytes` in whole MB within `range`.
    private static func share(_ bytes: UInt64, _ range: ClosedRange<UInt64>) -> UInt64 {
        min(max((bytes >> 20) << 20, range.lowerBound), range.upperBound)
    }

    public static func walAreaBytes(for wal: WALSettings) -> UInt64 {
        let retention = max(wal.keepBytes, wal.maxSlotKeepBytes ?? wal.maxWALBytes)
        return retention + 2 * wal.maxWALBytes + 3 * wal.segmentBytes
    }

    /// The smallest `--disk` that works with these WAL settings (after lowering max_wal_size as far as it goes).
    public static func minimumDiskBytes(for wal: WALSettings) -> UInt64 {
        let smallest = smallestWAL(wal)
        let walArea = walAreaBytes(for: smallest)
        let fixed = minimumDataBytes + walArea + systemBytesRange.lowerBound + logBytesRange.lowerBound
        return max(fixed, walShareDivisor * walArea)
    }

    /// The split of `diskBytes`; throws `FleetError.invalidRequest` with the arithmetic when it is too small.
    public static func make(diskBytes: UInt64, wal asked: WALSettings) throws(FleetError) -> DiskPlan {
        try validate(asked)
        var wal = asked
        var adjustments: [String] = []
        if wal.maxSlotKeepBytes == nil {
            wal.maxSlotKeepBytes = wal.maxWALBytes
        }
        let system = systemAreaBytes(diskBytes: diskBytes), log = logAreaBytes(diskBytes: diskBytes)
        // A quarter of the disk, and never so much that the data area gets less than its minimum.
        let others = system + log + minimumDataBytes
        let cap = min(diskBytes / walShareDivisor, diskBytes > others ? diskBytes - others : 0)
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
        guard walArea <= cap, diskBytes >= walArea + system + log + minimumDataBytes else { throw tooSmall(diskBytes, asked) }
        let areas = DiskAreas(systemBytes: system, dataBytes: diskBytes - walArea - system - log, walBytes: walArea, logBytes: log)
        return DiskPlan(diskBytes: diskBytes, areas: areas, wal: wal, adjustments: adjustments)
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
                + "and the data area needs \(ByteSize.format(minimumDataBytes)), the system area \(ByteSize.format(systemBytesRange.lowerBound)) "
                + "and the log area \(ByteSize.format(logBytesRange.lowerBound)); use --disk \(ByteSize.format(minimum)) or more"
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

/// A tenant's disk as `tenant info` shows it: the quota the tenant sees is the sum of its areas.
public struct DiskUsage: Sendable, Equatable, Codable {
    public var system: AreaUsage
    public var data: AreaUsage
    public var wal: AreaUsage
    public var log: AreaUsage

    public init(system: AreaUsage, data: AreaUsage, wal: AreaUsage, log: AreaUsage) {
        self.system = system
        self.data = data
        self.wal = wal
        self.log = log
    }

    var areas: [(name: String, usage: AreaUsage)] { [("system", system), ("data", data), ("WAL", wal), ("log", log)] }

    public var usedBytes: UInt64 { areas.reduce(0) { $0 + $1.usage.usedBytes } }
    public var limitBytes: UInt64 { areas.reduce(0) { $0 + $1.usage.limitBytes } }

    /// The warnings to raise (an event, a mark in `tenant list`), none when every area is below 85 %.
    public var warnings: [String] {
        areas.filter { $0.usage.isNearlyFull }.map { name, area in
            "\(name) area \(Int((area.fraction * 100).rounded(.down))) % full (\(ByteSize.format(area.usedBytes)) of \(ByteSize.format(area.limitBytes)))"
        }
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
