import FleetCore
import Foundation
import Testing

/// A tenant's needs from its configuration files, read as PostgreSQL reads them.
@Suite struct FleetDemandTests {
    @Test func settingsLinesAsPostgreSQLWritesThem() {
        let text = """
            # comment
            max_connections = 40\t\t# trailing comment
            shared_buffers 16MB
            cluster_name = 'it''s \\'quoted\\''
              Max_WAL_Size='256MB'
            include 'pgfleet.conf'
            include_if_exists 'pgfleet.settings.conf'
            include_dir 'conf.d'
            = broken
            """
        #expect(PostgresConfig.parse(text) == [
            .setting(name: "max_connections", value: "40"), .setting(name: "shared_buffers", value: "16MB"),
            .setting(name: "cluster_name", value: "it's 'quoted'"), .setting(name: "max_wal_size", value: "256MB"),
            .include(path: "pgfleet.conf", required: true), .include(path: "pgfleet.settings.conf", required: false),
            .includeDirectory(path: "conf.d"),
        ])
    }

    @Test func includesThenAutoConfTheLastValueWins() {
        let files = [
            "/d/postgresql.conf": "max_connections = 100\nmax_wal_size = 1GB\ninclude_dir 'conf.d'\ninclude 'pgfleet.conf'\ninclude_if_exists 'missing.conf'\n",
            "/d/pgfleet.conf": "max_connections = 40\nmax_wal_size = 256MB\ninclude_if_exists 'pgfleet.settings.conf'\n",
            "/d/pgfleet.settings.conf": "max_connections = '60'\n",
            "/d/conf.d/a.conf": "wal_keep_size = 64\n",
            "/d/conf.d/.hidden.conf": "wal_keep_size = 999\n",
            "/d/postgresql.auto.conf": "max_files_per_process = '500'\n",
            // An include of itself stops at the depth limit instead of looping.
            "/d/loop.conf": "include 'loop.conf'\n",
        ]
        let settings = PostgresConfig.settings(dataDirectory: "/d", read: { files[$0] }, list: { $0 == "/d/conf.d" ? ["a.conf", ".hidden.conf", "b.txt"] : [] })
        #expect(settings["max_connections"] == "60")
        #expect(settings["max_wal_size"] == "256MB")
        #expect(settings["wal_keep_size"] == "64")
        let demand = TenantDemand(name: "acme", settings: settings)
        #expect(demand == TenantDemand(name: "acme", maxConnections: 60, maxFilesPerProcess: 500, maxWalSize: 256 << 20, walKeepSize: 64 << 20))
        #expect(PostgresConfig.settings(dataDirectory: "/d", read: { $0 == "/d/postgresql.conf" ? files["/d/loop.conf"] : files[$0] }).isEmpty == false)
    }

    @Test func postgreSQLsDefaultsFillWhatIsNotSetOrUnreadable() {
        let demand = TenantDemand(name: "x", settings: ["max_connections": "lots", "max_wal_size": "2048"])
        #expect(demand.maxConnections == 100)
        #expect(demand.maxWalSize == 2 << 30)
        #expect(demand.maxFilesPerProcess == 1000 && demand.walKeepSize == 0)
        #expect(demand.processes == 100 + 3 + 1 + 8 + 10 + 6)
    }

    @Test func theFleetsSumsAndItsJSON() throws {
        let demand = FleetDemand(
            tenants: [TenantDemand(name: "a", maxConnections: 40), TenantDemand(name: "b", maxConnections: 10, maxWalSize: 256 << 20, walKeepSize: 1 << 20)],
            sandboxed: true, root: "/var/lib/pgfleet")
        #expect(demand.proxyDescriptors == 100)
        #expect(demand.walReserve == (1 << 30) + (257 << 20))
        let decoded = try JSONDecoder().decode(FleetDemand.self, from: try JSONEncoder().encode(demand))
        #expect(decoded == demand)
    }
}
