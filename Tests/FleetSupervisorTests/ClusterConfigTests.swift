import Testing

@testable import FleetSupervisor

@Suite struct ClusterConfigTests {
    @Test func personalisingRenamesTheBootstrapSuperuserSetsTheVerifierAndDemotesPgfleet() {
        #expect(ClusterConfig.personaliseSQL(superuser: "owner", verifier: "SCRAM-SHA-256$4096:c2FsdA==$a:b") ==
            "ALTER ROLE \"postgres\" RENAME TO \"owner\"; ALTER ROLE \"owner\" PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$a:b'; ALTER ROLE pgfleet NOSUPERUSER")
        // The default superuser is initdb's own: nothing to rename.
        #expect(ClusterConfig.personaliseSQL(superuser: "postgres", verifier: "v") ==
            "ALTER ROLE \"postgres\" PASSWORD 'v'; ALTER ROLE pgfleet NOSUPERUSER")
    }

    @Test func aNewClusterGetsTheBootstrapSQLAndATemporarySuperuserPgfleet() {
        #expect(ClusterConfig.newClusterSQL.hasPrefix(ClusterConfig.bootstrapSQL))
        #expect(ClusterConfig.newClusterSQL.hasSuffix("\nALTER ROLE pgfleet SUPERUSER;\n"))
        // Single-user mode runs one statement per line.
        #expect(ClusterConfig.newClusterSQL.split(separator: "\n").allSatisfy { $0.hasSuffix(";") })
    }

    @Test func literalsAndIdentifiersAreQuoted() {
        #expect(ClusterConfig.literal("it's") == "'it''s'")
        #expect(ClusterConfig.identifier("a\"b") == "\"a\"\"b\"")
    }
}
