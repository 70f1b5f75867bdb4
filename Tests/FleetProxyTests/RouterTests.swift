import FleetCore
import PGWire
import Testing

@testable import FleetProxy

@Suite struct RouterTests {
    let router = Router(sniDomain: "db.example.com")

    func params(_ pairs: (String, String)...) -> [StartupParameter] {
        pairs.map { StartupParameter(name: $0.0, value: $0.1) }
    }

    func route(_ parameters: [StartupParameter], sni: String? = nil) -> Result<RouteRequest, ProxyError> {
        router.route(parameters: parameters, sni: sni)
    }

    @Test func userAtTenantSplitsAtTheLastAt() throws {
        let request = try route(params(("user", "bob@corp@acme"), ("database", "app"))).get()
        #expect(request.tenant.rawValue == "acme")
        #expect(request.parameters == params(("user", "bob@corp"), ("database", "app")))
    }

    @Test(arguments: ["tenant=acme", "-ctenant=acme", "-c tenant=acme", "--tenant=acme"])
    func optionsNameTheTenantAndAreStripped(_ spelling: String) throws {
        let request = try route(params(("user", "bob"), ("options", "-c work_mem=64MB \(spelling) -c search_path=a\\ b"))).get()
        #expect(request.tenant.rawValue == "acme")
        #expect(request.parameters == params(("user", "bob"), ("options", "-c work_mem=64MB -c search_path=a\\ b")))
    }

    @Test func theDaemonsRoleNeverPassesThrough() throws {
        // The proxy reaches tenants as the daemon's OS user, which peer authentication maps to this role.
        #expect(route(params(("user", "pgfleet@acme"))) == .failure(.reservedRole))
        #expect(route(params(("user", "pgfleet"), ("options", "-ctenant=acme"))) == .failure(.reservedRole))
        #expect(route(params(("user", "pgfleet")), sni: "acme.db.example.com") == .failure(.reservedRole))
        #expect(ProxyError.reservedRole.sqlstate == "28000")
        #expect(try route(params(("user", "pgfleet2@acme"))).get().tenant.rawValue == "acme")
    }

    @Test func optionsWithOnlyTheTenantAreDropped() throws {
        let request = try route(params(("user", "bob"), ("options", "-ctenant=acme"))).get()
        #expect(request.parameters == params(("user", "bob")))
    }

    @Test func sniNamesTheTenantUnderTheDomainOnly() throws {
        #expect(try route(params(("user", "bob")), sni: "acme.db.example.com").get().tenant.rawValue == "acme")
        #expect(try route(params(("user", "bob")), sni: "ACME.DB.example.com").get().tenant.rawValue == "acme")
        #expect(route(params(("user", "bob")), sni: "a.b.db.example.com") == .failure(.noTenant))
        #expect(route(params(("user", "bob")), sni: "acme.other.com") == .failure(.noTenant))
        #expect(Router().route(parameters: params(("user", "bob")), sni: "acme.db.example.com") == .failure(.noTenant))
    }

    @Test func methodsThatAgreeAreFineAndThatDisagreeAreAnError() throws {
        #expect(try route(params(("user", "bob@acme"), ("options", "tenant=acme")), sni: "acme.db.example.com").get().tenant.rawValue == "acme")
        guard case .failure(.conflictingTenants(let detail)) = route(params(("user", "bob@acme"), ("options", "tenant=other"))) else {
            Issue.record("expected a conflict")
            return
        }
        #expect(detail.contains("acme") && detail.contains("other"))
        guard case .failure(.conflictingTenants) = route(params(("user", "bob@acme")), sni: "evil.db.example.com") else {
            Issue.record("SNI and user disagree: expected a conflict")
            return
        }
    }

    @Test func noTenantShowsTheAcceptedForms() {
        #expect(route(params(("user", "bob"))) == .failure(.noTenant))
        let message = ProxyError.noTenant.message
        #expect(message.contains("user@tenant") && message.contains("tenant=") && message.contains("<tenant>.<domain>"))
    }

    @Test(arguments: ["Acme", "../etc", "a b", "a'b", "", String(repeating: "a", count: 64), "acme\u{0}x"])
    func injectedTenantNamesAreRefused(_ name: String) {
        #expect(route(params(("user", "bob@\(name)"))) == .failure(.invalidTenantName(name)))
    }

    @Test func emptyUserBeforeTheAtIsRefused() {
        guard case .failure(.protocolViolation) = route(params(("user", "@acme"))) else {
            Issue.record("accepted an empty user")
            return
        }
    }

    @Test func protocolOptionsAreRemovedAndReported() throws {
        let request = try route(params(("user", "bob@acme"), ("_pq_.compression", "on"), ("application_name", "x"))).get()
        #expect(request.parameters == params(("user", "bob"), ("application_name", "x")))
        #expect(request.unrecognizedOptions == ["_pq_.compression"])
    }
}
