import FleetCore
import Testing

@Suite struct TenantNameTests {
    @Test(arguments: ["a", "acme", "acme-prod-2", "x0", "a" + String(repeating: "b", count: 62)])
    func acceptsValidNames(_ raw: String) throws {
        #expect(try TenantName(validating: raw).rawValue == raw)
    }

    @Test(arguments: [
        ("", "empty"), ("Acme", "lowercase letter"), ("1acme", "lowercase letter"), ("-acme", "lowercase letter"),
        ("ac_me", "'_'"), ("ac.me", "'.'"), ("a/b", "'/'"), ("a b", "byte 0x20"), ("a\u{0}b", "byte 0x00"),
        ("café", "byte 0xC3"), ("a@b", "'@'"), ("a" + String(repeating: "b", count: 63), "64 characters"),
    ])
    func refusesInvalidNames(_ raw: String, _ mention: String) {
        #expect(throws: FleetError.self) { try TenantName(validating: raw) }
        let problem = TenantName.problem(with: raw) ?? ""
        #expect(problem.contains(mention), "\(problem)")
    }

    @Test func errorMessageShowsTheRuleAndEscapesControlCharacters() {
        do {
            _ = try TenantName(validating: "bad\nname")
            Issue.record("accepted a newline")
        } catch {
            #expect(error.description.contains("^[a-z][a-z0-9-]{0,62}$"))
            #expect(!error.description.contains("\n"))
            #expect(error.code == "invalid_tenant_name")
            #expect(error.httpStatus == 400)
        }
    }

    @Test func decodingValidates() throws {
        let decoder = JSONDecoder()
        #expect(try decoder.decode([TenantName].self, from: Data(#"["ok"]"#.utf8)).first?.rawValue == "ok")
        #expect(throws: DecodingError.self) { try decoder.decode([TenantName].self, from: Data(#"["../etc"]"#.utf8)) }
    }

    @Test(arguments: [("postgres", true), ("app_owner", true), ("pg_monitor", false), ("pgfleet", false), ("Bob", false), ("a-b", false)])
    func superuserRoleNames(_ raw: String, _ valid: Bool) {
        #expect((RoleName.problem(with: raw) == nil) == valid)
    }
}

import Foundation
