import FleetCore
import Testing

private let mb: UInt64 = 1 << 20
private let gb: UInt64 = 1 << 30

@Test func tenGigabytesKeepPgfleetsWALSettingsAndBoundTheSlots() throws {
    let plan = try DiskPlan.make(diskBytes: 10 * gb, wal: .pgfleetDefaults)
    #expect(plan.wal.maxWALBytes == 256 * mb)
    #expect(plan.wal.minWALBytes == 32 * mb)
    #expect(plan.wal.maxSlotKeepBytes == 256 * mb)
    // 256 (slot bound) + 2 × 256 + 3 × 1
    #expect(plan.areas.walBytes == 771 * mb)
    // 1/32 of 10GB is 320MB: the system and log areas stop at 256MB.
    #expect(plan.areas.systemBytes == 256 * mb && plan.areas.logBytes == 256 * mb)
    #expect(plan.areas.dataBytes == 10 * gb - 771 * mb - 512 * mb)
    #expect(plan.areas.totalBytes == 10 * gb)
    #expect(plan.adjustments == ["max_slot_wal_keep_size bounded to 256MB (was unlimited)"])
}

@Test func aSmallDiskLowersMaxWALSizeToFitAQuarter() throws {
    let plan = try DiskPlan.make(diskBytes: 128 * mb, wal: .pgfleetDefaults)
    // A quarter is 32MB: (32 − 3) / 3 = 9.67, down to whole 1MB segments.
    #expect(plan.wal.maxWALBytes == 9 * mb)
    #expect(plan.wal.minWALBytes == 9 * mb)
    #expect(plan.wal.maxSlotKeepBytes == 9 * mb)
    #expect(plan.areas.walBytes == 30 * mb)
    // The system and log areas at their floors; the data area has the rest.
    #expect(plan.areas.systemBytes == 16 * mb && plan.areas.logBytes == 8 * mb)
    #expect(plan.areas.dataBytes == 74 * mb)
    #expect(plan.adjustments.count == 3)
    #expect(plan.adjustments[0] == "max_wal_size lowered from 256MB to 9MB to fit the WAL area")
}

@Test func theWALAreaAlwaysHoldsWhatTheWrittenSettingsCanKeep() throws {
    for disk in stride(from: 64 * mb, through: 64 * gb, by: Int(61 * mb)) {
        for wal in [WALSettings.pgfleetDefaults, WALSettings(segmentBytes: 16 * mb, maxWALBytes: gb, minWALBytes: 80 * mb, keepBytes: 64 * mb)] {
            guard let plan = try? DiskPlan.make(diskBytes: disk, wal: wal) else {
                #expect(disk < DiskPlan.minimumDiskBytes(for: wal), "refused \(disk) although the minimum is lower")
                continue
            }
            let kept = max(plan.wal.keepBytes, plan.wal.maxSlotKeepBytes ?? .max)
            #expect(plan.wal.maxSlotKeepBytes != nil)
            #expect(kept + 2 * plan.wal.maxWALBytes + 3 * plan.wal.segmentBytes <= plan.areas.walBytes)
            #expect(plan.areas.walBytes <= disk / 4)
            #expect(plan.areas.dataBytes >= DiskPlan.minimumDataBytes)
            #expect(plan.areas.totalBytes == disk)
            #expect(DiskPlan.systemBytesRange.contains(plan.areas.systemBytes) && DiskPlan.logBytesRange.contains(plan.areas.logBytes))
            #expect(plan.areas.systemBytes % mb == 0 && plan.areas.logBytes % mb == 0)
            #expect(plan.wal.maxWALBytes % plan.wal.segmentBytes == 0)
            #expect(plan.wal.minWALBytes <= plan.wal.maxWALBytes)
            #expect(plan.wal.keepBytes == wal.keepBytes, "an explicit wal_keep_size is never lowered")
        }
    }
}

@Test func belowTheMinimumTheMessageShowsTheArithmetic() {
    // 48MB data + 15MB WAL + 16MB system + 8MB log.
    #expect(DiskPlan.minimumDiskBytes(for: .pgfleetDefaults) == 87 * mb)
    #expect(throws: FleetError.invalidRequest(
        "--disk 86MB is too small: the WAL area needs at least 15MB (retention 4MB + 2 × max_wal_size 4MB + 3 × 1MB segments) "
            + "and may take at most 1/4 of the disk, and the data area needs 48MB, the system area 16MB and the log area 8MB; "
            + "use --disk 87MB or more"
    )) {
        try DiskPlan.make(diskBytes: 86 * mb, wal: .pgfleetDefaults)
    }
    #expect((try? DiskPlan.make(diskBytes: 87 * mb, wal: .pgfleetDefaults)) != nil)
}

@Test func sixteenMegabyteSegmentsNeedALargerDisk() throws {
    let wal = WALSettings(segmentBytes: 16 * mb, maxWALBytes: gb, minWALBytes: 80 * mb)
    // 4 segments of max_wal_size: 64 + 2 × 64 + 3 × 16 = 240MB, a quarter of 960MB.
    #expect(DiskPlan.minimumDiskBytes(for: wal) == 960 * mb)
    #expect(throws: FleetError.self) { try DiskPlan.make(diskBytes: 512 * mb, wal: wal) }
    let plan = try DiskPlan.make(diskBytes: gb, wal: wal)
    #expect(plan.wal.maxWALBytes == 64 * mb)
}

@Test func anExplicitRetentionThatCannotFitIsRefusedNotLowered() {
    let wal = WALSettings(maxWALBytes: 256 * mb, minWALBytes: 32 * mb, keepBytes: 512 * mb)
    #expect(throws: FleetError.self) { try DiskPlan.make(diskBytes: gb, wal: wal) }
    let slot = WALSettings(maxWALBytes: 64 * mb, minWALBytes: 32 * mb, maxSlotKeepBytes: 64 * mb)
    let plan = try? DiskPlan.make(diskBytes: gb, wal: slot)
    #expect(plan?.wal.maxSlotKeepBytes == 64 * mb)
    #expect(plan?.adjustments == [])
}

@Test func invalidSegmentSizesAreRefused() {
    #expect(throws: FleetError.self) {
        try DiskPlan.make(diskBytes: gb, wal: WALSettings(segmentBytes: 3 * mb, maxWALBytes: 64 * mb, minWALBytes: 32 * mb))
    }
    #expect(throws: FleetError.self) {
        try DiskPlan.make(diskBytes: gb, wal: WALSettings(segmentBytes: 16 * mb, maxWALBytes: 16 * mb, minWALBytes: 32 * mb))
    }
}

@Test func configurationLinesUseKilobytes() throws {
    let plan = try DiskPlan.make(diskBytes: 128 * mb, wal: .pgfleetDefaults)
    #expect(plan.wal.configurationLines == "max_wal_size = 9216kB\nmin_wal_size = 9216kB\nwal_keep_size = 0kB\nmax_slot_wal_keep_size = 9216kB\n")
}

@Test func warningsStartAtEightyFivePercent() {
    let system = AreaUsage(usedBytes: mb, limitBytes: 16 * mb), log = AreaUsage(usedBytes: 0, limitBytes: 8 * mb)
    let calm = DiskUsage(system: system, data: AreaUsage(usedBytes: 84 * mb, limitBytes: 100 * mb), wal: AreaUsage(usedBytes: 0, limitBytes: 30 * mb), log: log)
    #expect(calm.warnings.isEmpty)
    let full = DiskUsage(
        system: system, data: AreaUsage(usedBytes: 85 * mb, limitBytes: 100 * mb), wal: AreaUsage(usedBytes: 29 * mb, limitBytes: 30 * mb),
        log: AreaUsage(usedBytes: 8 * mb, limitBytes: 8 * mb))
    #expect(full.warnings == ["data area 85 % full (85MB of 100MB)", "WAL area 96 % full (29MB of 30MB)", "log area 100 % full (8MB of 8MB)"])
    #expect(full.usedBytes == 123 * mb && full.limitBytes == 154 * mb)
    #expect(AreaUsage(usedBytes: 0, limitBytes: 0).isNearlyFull)
}

/// Measured with mkfs.ext4 -b 4096 -i 16384 -m 0 (e2fsprogs 1.47): image bytes − df's available.
@Test(arguments: [
    (256 * mb, 8 * mb, 18_259_968), (gb, 8 * mb, 44_675_072), (4 * gb, 8 * mb, 109_371_392), (16 * gb, 8 * mb, 340_946_944),
    (64 * gb, 8 * mb, 1_158_131_712), (256 * mb, 16 * mb, 26_648_576), (gb, 16 * mb, 53_063_680), (4 * gb, 16 * mb, 117_760_000),
    (16 * gb, 16 * mb, 349_335_552), (64 * gb, 16 * mb, 1_166_520_320),
] as [(UInt64, UInt64, UInt64)])
func ext4OverheadModelIsNeverBelowTheMeasurement(image: UInt64, journal: UInt64, measured: UInt64) {
    let model = Ext4Overhead.bytes(imageBytes: image, journalBytes: journal)
    #expect(model >= measured)
    #expect(model <= measured + measured / 4 + 16 * mb, "the model wastes too much")
}

@Test func imageBytesLeaveTheUsableSpace() {
    for usable in [30 * mb, 98 * mb, gb, 10 * gb] {
        let image = Ext4Overhead.imageBytes(usable: usable, journalBytes: 16 * mb)
        #expect(image - Ext4Overhead.bytes(imageBytes: image, journalBytes: 16 * mb) >= usable)
        #expect(image % mb == 0)
    }
}
