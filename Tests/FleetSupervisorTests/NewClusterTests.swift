import FleetCore
import FleetSystem
import Foundation
import Testing

@testable import FleetSupervisor

/// A new cluster (a create without the ready pool, or the pool's refill) must not take the
/// space the running tenants' WAL needs.
@Suite struct NewClusterRoomTests {
    @Test func refusedWhenItWouldEatIntoTheTenantsReserve() throws {
        let directory = FileManager.default.temporaryDirectory.path
        let free = try DiskSpace.available(at: directory)
        #expect(free > 0)
        let error = #expect(throws: FleetError.self) { try NewCluster.checkRoom(in: directory, reserve: free + (1 << 30)) }
        #expect(error?.code == "failed")
        #expect(error?.description.contains("not enough disk space for a new cluster: \(directory) has") == true, "\(error?.description ?? "")")
        #expect(error?.description.contains("drop tenants you no longer need") == true)
        // With room for a cluster beside the reserve, nothing to say.
        if free > NewCluster.newClusterBytes + DiskSpace.tenantReserve {
            try NewCluster.checkRoom(in: directory)
        }
        #expect(throws: FleetError.self) { try NewCluster.checkRoom(in: directory + "/no/such/place") }
    }

    @Test func sizesForPeople() {
        #expect(DiskSpace.describe(5_368_750_080) == "5.4 GB")
        #expect(DiskSpace.describe(134_217_728) == "134 MB")
        #expect(DiskSpace.describe(4096) == "4 kB")
    }
}
