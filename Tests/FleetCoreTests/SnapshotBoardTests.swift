import FleetCore
import Testing

@Suite struct SnapshotBoardTests {
    final class Owner: Sendable {}
    let acme = try! TenantName(validating: "acme")
    let beta = try! TenantName(validating: "beta")

    @Test func publishesAndReadsWithoutAwaitingAnyone() {
        let board = SnapshotBoard<String>()
        let owner = Owner()
        board.claim(acme, by: ObjectIdentifier(owner), "stopped")
        board.publish(acme, by: ObjectIdentifier(owner), "running")
        #expect(board.snapshot(of: acme) == "running")
        #expect(board.snapshot(of: beta) == nil)
    }

    /// A dropped tenant's old supervisor finishing a late event must not overwrite the entry of a
    /// new tenant of the same name, nor bring back the entry of a dropped one.
    @Test func onlyTheClaimingSupervisorPublishes() {
        let board = SnapshotBoard<String>()
        let old = Owner()
        let new = Owner()
        board.claim(acme, by: ObjectIdentifier(old), "running")
        board.remove(acme)
        board.publish(acme, by: ObjectIdentifier(old), "stopped")
        #expect(board.snapshot(of: acme) == nil)
        board.claim(acme, by: ObjectIdentifier(new), "running")
        board.publish(acme, by: ObjectIdentifier(old), "stopped")
        #expect(board.snapshot(of: acme) == "running")
    }

    @Test func filtersAndCountsThousands() {
        let board = SnapshotBoard<String>()
        let owner = Owner()
        let names = (0..<3000).map { try! TenantName(validating: "t\($0)") }
        for (index, name) in names.enumerated() {
            board.claim(name, by: ObjectIdentifier(owner), index % 10 == 0 ? "running" : "suspended")
        }
        #expect(Set(board.tenants { $0 == "running" }) == Set(names.enumerated().filter { $0.offset % 10 == 0 }.map(\.element)))
        #expect(board.counts(of: names) { $0 } == ["running": 300, "suspended": 2700])
        // Only the tenants asked about: a name with no entry is not counted.
        #expect(board.counts(of: names.prefix(20) + [acme]) { $0 } == ["running": 2, "suspended": 18])
    }

    /// A list reads the board once; what is published afterwards shows in the next list.
    @Test func currentIsTheBoardAtOneMoment() {
        let board = SnapshotBoard<String>()
        let owner = Owner()
        board.claim(acme, by: ObjectIdentifier(owner), "running")
        let before = board.current()
        board.publish(acme, by: ObjectIdentifier(owner), "suspended")
        board.claim(beta, by: ObjectIdentifier(owner), "starting")
        #expect(before[acme] == "running")
        #expect(before[beta] == nil)
        let after = board.current()
        #expect(after[acme] == "suspended")
        #expect(after[beta] == "starting")
    }
}
