import Testing

@testable import FleetCore

/// The create request's one validation, as the CLI, the API and provisioning run it.
@Suite struct TenantSpecTests {
    private func problem(_ request: CreateTenantRequest, _ spelling: CreateTenantRequest.Spelling = .json) -> String? {
        do {
            _ = try request.validated(spelling: spelling)
            return nil
        } catch let FleetError.invalidRequest(message) {
            return message
        } catch {
            return "\(error)"
        }
    }

    @Test func aPlainRequestGetsTheDefaults() throws {
        let spec = try CreateTenantRequest(name: "acme").validated(spelling: .json)
        #expect(spec == TenantSpec(name: try TenantName(validating: "acme"), bundle: .daemonDefault, superuser: "postgres", suspendAfter: nil))
    }

    @Test func anExactBundleWinsOverTheMajor() throws {
        #expect(try CreateTenantRequest(name: "a", pg: 16, bundle: "15.18-debian").validated(spelling: .json).bundle == .id("15.18-debian"))
        #expect(try CreateTenantRequest(name: "a", pg: 16).validated(spelling: .json).bundle == .major(16))
    }

    @Test func everyFieldIsCarried() throws {
        let spec = try CreateTenantRequest(name: "beta", superuser: "owner", password: "pw", suspendAfter: 0).validated(spelling: .commandLine)
        #expect(spec.name.rawValue == "beta" && spec.superuser == "owner" && spec.suspendAfter == 0)
    }

    @Test func theNetworkIsNoneUnlessAskedAndNamedInItsErrors() throws {
        #expect(try CreateTenantRequest(name: "a").validated(spelling: .json).network == SandboxNetwork.none)
        #expect(try CreateTenantRequest(name: "a", network: "HOST").validated(spelling: .json).network == .host)
        #expect(problem(CreateTenantRequest(name: "a", network: "wide"), .commandLine)?.hasPrefix("--network must be none") == true)
        #expect(problem(CreateTenantRequest(name: "a", network: "wide"), .json)?.hasPrefix("\"network\" must be none") == true)
    }

    @Test func anInvalidNameIsRefused() {
        #expect(throws: FleetError.self) { try CreateTenantRequest(name: "Bad").validated(spelling: .json) }
    }

    @Test func anInvalidSuperuserIsRefused() {
        #expect(problem(CreateTenantRequest(name: "a", superuser: "pg_bad"))?.hasPrefix("invalid superuser name \"pg_bad\": ") == true)
    }

    /// Each surface names the field as its user wrote it.
    @Test func anEmptyPasswordIsNamedAsItsSurfaceSpellsIt() {
        #expect(problem(CreateTenantRequest(name: "a", password: ""), .commandLine) == "--password is empty; omit it to have one generated")
        #expect(problem(CreateTenantRequest(name: "a", password: ""), .json) == "\"password\" is empty; omit it to have one generated")
    }

    @Test func aPasswordPostgreSQLCannotStoreIsRefused() {
        for bad in ["a\u{0}b", "line\nbreak", "cr\rhere"] {
            #expect(problem(CreateTenantRequest(name: "a", password: bad)) == "the password contains a NUL or line break, which PostgreSQL cannot store")
        }
        #expect(problem(CreateTenantRequest(name: "a", password: String(repeating: "p", count: 1001))) == "the password is longer than 1000 bytes")
        #expect(problem(CreateTenantRequest(name: "a", password: String(repeating: "p", count: 1000))) == nil)
    }

    @Test func aNegativeSuspendAfterIsRefused() {
        #expect(problem(CreateTenantRequest(name: "a", suspendAfter: -1)) == "suspend-after must be 0 (never) or a positive number of seconds")
        #expect(problem(CreateTenantRequest(name: "a", suspendAfter: 0)) == nil)
    }
}
