import FleetAPI
import FleetCore
import Foundation
import Hummingbird
import HummingbirdTesting
import Prometheus
import Testing

@Suite struct RouterTests {
    let fleet: FakeFleet
    let logs = CapturedLogs()
    let registry = PrometheusCollectorRegistry()

    init() {
        fleet = FakeFleet(tenants: [FakeFleet.tenant("acme"), FakeFleet.tenant("beta")])
    }

    func withApp(_ test: @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        let router = buildRouter(fleet: fleet, metrics: registry, logger: logs.logger())
        let app = Application(router: router, logger: logs.logger("hummingbird"))
        try await app.test(.router, test)
    }

    static func json(_ value: some Encodable) throws -> ByteBuffer {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        return ByteBuffer(bytes: try encoder.encode(value))
    }

    // MARK: Plain JSON routes

    @Test func statusAnswersJSONWithISODates() async throws {
        try await withApp { client in
            try await client.execute(uri: "/v1/status", method: .get) { response throws in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "application/json; charset=utf-8")
                let text = String(buffer: response.body)
                #expect(text.contains("\"startedAt\":\"2023-11-14T22:13:20Z\""))
                let status = try decodeJSON(DaemonStatus.self, text)
                #expect(status.pid == 4242)
                #expect(status.tenants == 2)
            }
        }
        #expect(fleet.calls == ["status"])
    }

    @Test func jsonKeysAreSorted() async throws {
        try await withApp { client in
            try await client.execute(uri: "/v1/tenants/acme", method: .get) { response throws in
                let text = String(buffer: response.body)
                let keys = ["bundle", "createdAt", "dataDirectory", "desiredState", "failureReason", "logFile", "major", "name"]
                    .compactMap { text.range(of: "\"\($0)\"")?.lowerBound }
                #expect(keys == keys.sorted())
                #expect(keys.count >= 7)  // failureReason is nil and omitted
            }
        }
    }

    @Test func listsBundlesAndTenants() async throws {
        try await withApp { client in
            try await client.execute(uri: "/v1/bundles", method: .get) { response throws in
                #expect(response.status == .ok)
                let bundles = try decodeJSON([BundleInfo].self, String(buffer: response.body))
                #expect(bundles.map(\.id) == ["16.4-debian"])
            }
            try await client.execute(uri: "/v1/tenants", method: .get) { response throws in
                #expect(response.status == .ok)
                let tenants = try decodeJSON([TenantInfo].self, String(buffer: response.body))
                #expect(tenants.map(\.name) == ["acme", "beta"])
            }
        }
        #expect(fleet.calls == ["listBundles", "listTenants"])
    }

    /// The list is written by hand; clients that read it see the bytes JSONEncoder would write.
    @Test func theTenantListIsWhatJSONEncoderWrites() async throws {
        var odd = FakeFleet.tenant("odd")
        odd.state = .failed
        odd.pid = nil
        odd.failureReason = "could not bind \"/run/x\": \\ é 日本 😀\n\t\u{1}"
        odd.proxy = ProxyEndpoint(host: "127.0.0.1", port: 6432, tls: "disable", sniDomain: nil)
        odd.suspendAfter = 0
        let fleet = FakeFleet(tenants: [FakeFleet.tenant("acme"), odd])
        let router = buildRouter(fleet: fleet, metrics: registry, logger: logs.logger())
        let app = Application(router: router, logger: logs.logger("hummingbird"))
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let expected = String(decoding: try encoder.encode(try await fleet.listTenants()), as: UTF8.self) + "\n"
        try await app.test(.router) { client in
            try await client.execute(uri: "/v1/tenants", method: .get) { response throws in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "application/json; charset=utf-8")
                #expect(String(buffer: response.body) == expected)
            }
        }
    }

    @Test func tenantInfoAndLifecycle() async throws {
        try await withApp { client in
            try await client.execute(uri: "/v1/tenants/acme", method: .get) { response throws in
                #expect(response.status == .ok)
                #expect(try decodeJSON(TenantInfo.self, String(buffer: response.body)).name == "acme")
            }
            try await client.execute(uri: "/v1/tenants/acme/stop", method: .post) { response throws in
                #expect(response.status == .ok)
                let tenant = try decodeJSON(TenantInfo.self, String(buffer: response.body))
                #expect(tenant.state == .stopped)
                #expect(tenant.pid == nil)
            }
            try await client.execute(uri: "/v1/tenants/acme/start", method: .post) { response throws in
                #expect(try decodeJSON(TenantInfo.self, String(buffer: response.body)).pid == 1234)
            }
            try await client.execute(uri: "/v1/tenants/acme/restart", method: .post) { response throws in
                #expect(try decodeJSON(TenantInfo.self, String(buffer: response.body)).pid == 1235)
            }
        }
        #expect(fleet.calls == ["tenantInfo acme", "stopTenant acme", "startTenant acme", "restartTenant acme"])
    }

    // MARK: Error mapping

    @Test(arguments: [
        ("/v1/tenants/nope", "GET"),
        ("/v1/tenants/nope/start", "POST"),
        ("/v1/tenants/nope/stop", "POST"),
        ("/v1/tenants/nope/restart", "POST"),
        ("/v1/tenants/nope/logs", "GET"),
    ])
    func unknownTenantIs404(uri: String, method: String) async throws {
        try await withApp { client in
            try await client.execute(uri: uri, method: HTTPRequest.Method(method)!) { response throws in
                #expect(response.status == .notFound)
                let body = try decodeJSON(APIErrorBody.self, String(buffer: response.body))
                #expect(body.code == "tenant_not_found")
                #expect(body.message.contains("nope"))
            }
        }
    }

    @Test(arguments: [
        ("/v1/tenants/Acme", "GET"),
        ("/v1/tenants/1abc/start", "POST"),
        ("/v1/tenants/a_b/stop", "POST"),
        ("/v1/tenants/a.b/restart", "POST"),
        ("/v1/tenants/ACME", "DELETE"),
        ("/v1/tenants/x%20y/logs", "GET"),
    ])
    func invalidNameInPathIs400(uri: String, method: String) async throws {
        try await withApp { client in
            try await client.execute(uri: uri, method: HTTPRequest.Method(method)!) { response throws in
                #expect(response.status == .badRequest)
                let body = try decodeJSON(APIErrorBody.self, String(buffer: response.body))
                #expect(body.code == "invalid_tenant_name")
            }
        }
        #expect(fleet.calls.isEmpty)
    }

    @Test func createOfExistingTenantStreamsA409Error() async throws {
        try await withApp { client in
            let body = try Self.json(CreateTenantRequest(name: "acme"))
            try await client.execute(uri: "/v1/tenants", method: .post, body: body) { response throws in
                // The stream has started (200); the failure is its last event.
                #expect(response.status == .ok)
                let events = try decodeNDJSON(String(buffer: response.body))
                #expect(events.last?.kind == .error)
                #expect(events.last?.error?.code == "tenant_exists")
            }
        }
    }

    @Test func invalidCreateBodiesAre400BeforeAnyStream() async throws {
        let cases: [(String, String)] = [
            ("", "empty"),
            ("{not json", "not valid JSON"),
            ("{\"pg\": 16}", "missing field \"name\""),
            ("{\"name\": 16}", "\"name\" is not a String"),
            ("{\"name\": \"Bad_Name\"}", "invalid tenant name"),
            ("{\"name\": \"ok\", \"superuser\": \"pg_bad\"}", "invalid superuser name"),
        ]
        try await withApp { client in
            for (body, expected) in cases {
                try await client.execute(uri: "/v1/tenants", method: .post, body: ByteBuffer(string: body)) { response throws in
                    #expect(response.status == .badRequest, "body: \(body)")
                    let error = try decodeJSON(APIErrorBody.self, String(buffer: response.body))
                    #expect(error.message.contains(expected), "got \(error.message) for \(body)")
                }
            }
        }
        #expect(fleet.calls.isEmpty)
    }

    @Test func internalErrorsAreGenericForTheClientAndDetailedInTheLog() async throws {
        fleet.state.withLock { $0.failInternally = true }
        try await withApp { client in
            try await client.execute(uri: "/v1/tenants", method: .get) { response throws in
                #expect(response.status == .internalServerError)
                let text = String(buffer: response.body)
                #expect(!text.contains(FakeFleet.internalDetail))
                let body = try decodeJSON(APIErrorBody.self, text)
                #expect(body.code == "internal_error")
            }
        }
        #expect(logs.text.contains(FakeFleet.internalDetail))
    }

    @Test func unknownRouteIsAJSON404() async throws {
        try await withApp { client in
            try await client.execute(uri: "/v1/nothing", method: .get) { response throws in
                #expect(response.status == .notFound)
                #expect(try decodeJSON(APIErrorBody.self, String(buffer: response.body)).code == "not_found")
            }
        }
    }

    // MARK: Streams

    @Test func createStreamsProgressThenResultWithPassword() async throws {
        try await withApp { client in
            let body = try Self.json(CreateTenantRequest(name: "gamma", superuser: "owner"))
            try await client.execute(uri: "/v1/tenants", method: .post, body: body) { response throws in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "application/x-ndjson")
                let text = String(buffer: response.body)
                #expect(text.hasSuffix("\n"))
                let events = try decodeNDJSON(text)
                #expect(events.map(\.kind) == [.progress, .progress, .result])
                #expect(events[0].message == "running initdb")
                #expect(events[1].completed == 1 && events[1].total == 1)
                #expect(events[2].tenant?.name == "gamma")
                #expect(events[2].tenant?.superuser == "owner")
                #expect(events[2].password == FakeFleet.generatedPassword)
            }
        }
        #expect(fleet.calls == ["createTenant gamma"])
    }

    @Test func createWithPasswordReturnsNoPasswordAndNeverLogsIt() async throws {
        let secret = "client-chosen-Secret-31337"
        try await withApp { client in
            let body = try Self.json(CreateTenantRequest(name: "delta", password: secret))
            try await client.execute(uri: "/v1/tenants", method: .post, body: body) { response throws in
                let events = try decodeNDJSON(String(buffer: response.body))
                #expect(events.last?.kind == .result)
                #expect(events.last?.password == nil)
            }
            // A failing create with a password, and a generated one.
            try await client.execute(uri: "/v1/tenants", method: .post, body: try Self.json(CreateTenantRequest(name: "delta", password: secret))) { _ in }
            try await client.execute(uri: "/v1/tenants", method: .post, body: try Self.json(CreateTenantRequest(name: "epsilon"))) { _ in }
        }
        #expect(fleet.createRequests.first?.password == secret)  // it did reach the fleet
        #expect(!logs.all.isEmpty)
        #expect(!logs.text.contains(secret))
        #expect(!logs.text.contains(FakeFleet.generatedPassword))
    }

    @Test func aNewPasswordIsReturnedOnceAndNeverLogged() async throws {
        let secret = "client-chosen-Secret-4242"
        try await withApp { client in
            try await client.execute(uri: "/v1/tenants/acme/password", method: .post, body: try Self.json(PasswordRequest())) { response throws in
                #expect(response.status == .ok)
                let result = try decodeJSON(PasswordResult.self, String(buffer: response.body))
                #expect(result.password == "generated-secret" && result.restarted && result.tenant.name == "acme")
            }
            try await client.execute(uri: "/v1/tenants/acme/password", method: .post, body: try Self.json(PasswordRequest(password: secret))) { response throws in
                #expect(try decodeJSON(PasswordResult.self, String(buffer: response.body)).password == nil)
            }
            try await client.execute(uri: "/v1/tenants/acme/password", method: .post, body: ByteBuffer(string: "{not json")) { response throws in
                #expect(response.status == .badRequest)
            }
            try await client.execute(uri: "/v1/tenants/nope/password", method: .post, body: try Self.json(PasswordRequest())) { response throws in
                #expect(response.status == .notFound)
            }
        }
        #expect(fleet.calls == ["resetPassword acme", "resetPassword acme", "resetPassword nope"])
        #expect(!logs.text.contains(secret) && !logs.text.contains("generated-secret"))
    }

    @Test func importStreamsProgressAndBundle() async throws {
        try await withApp { client in
            let body = try Self.json(ImportBundleRequest(path: "/usr/lib/postgresql/17", makeDefault: true))
            try await client.execute(uri: "/v1/bundles/import", method: .post, body: body) { response throws in
                #expect(response.status == .ok)
                let events = try decodeNDJSON(String(buffer: response.body))
                #expect(events.map(\.kind) == [.progress, .progress, .result])
                #expect(events[0].completed == 1 && events[0].total == 2)
                #expect(events[2].bundle?.id == "17.2-debian")
                #expect(events[2].bundle?.isDefault == true)
            }
            let relative = try Self.json(ImportBundleRequest(path: "usr/lib/postgresql/17"))
            try await client.execute(uri: "/v1/bundles/import", method: .post, body: relative) { response throws in
                #expect(response.status == .badRequest)
                #expect(try decodeJSON(APIErrorBody.self, String(buffer: response.body)).message.contains("must be absolute"))
            }
            let bad = try Self.json(ImportBundleRequest(path: "/tmp/nothing"))
            try await client.execute(uri: "/v1/bundles/import", method: .post, body: bad) { response throws in
                let events = try decodeNDJSON(String(buffer: response.body))
                #expect(events.map(\.kind) == [.error])
                #expect(events[0].error?.code == "invalid_bundle")
            }
        }
    }

    @Test func bundleDefaultAndRemove() async throws {
        try await withApp { client in
            let body = try Self.json(BundleDefaultRequest(fleet: true))
            try await client.execute(uri: "/v1/bundles/16.4-debian/default", method: .post, body: body) { response throws in
                #expect(response.status == .ok)
                #expect(try decodeJSON(BundleInfo.self, String(buffer: response.body)).isMajorDefault == true)
            }
            try await client.execute(uri: "/v1/bundles/16.4-debian", method: .delete) { response throws in
                #expect(response.status == .ok)
                #expect(try decodeJSON(BundleInfo.self, String(buffer: response.body)).id == "16.4-debian")
            }
            try await client.execute(uri: "/v1/bundles/16.4-debian", method: .delete) { response throws in
                #expect(response.status == .notFound)
                #expect(try decodeJSON(APIErrorBody.self, String(buffer: response.body)).code == "bundle_not_found")
            }
        }
        #expect(fleet.calls == ["setDefaultBundle 16.4-debian fleet=true", "removeBundle 16.4-debian", "removeBundle 16.4-debian"])
    }

    @Test func dropStreamsProgressAndResult() async throws {
        try await withApp { client in
            try await client.execute(uri: "/v1/tenants/beta", method: .delete) { response throws in
                #expect(response.status == .ok)
                let events = try decodeNDJSON(String(buffer: response.body))
                #expect(events.map(\.kind) == [.progress, .progress, .result])
            }
            try await client.execute(uri: "/v1/tenants/beta", method: .delete) { response throws in
                let events = try decodeNDJSON(String(buffer: response.body))
                #expect(events.last?.error?.code == "tenant_not_found")
            }
        }
        #expect(fleet.calls == ["dropTenant beta", "dropTenant beta"])
    }

    // MARK: Logs and metrics

    @Test func logsSendsTheLastLines() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let logFile = dir.path + "/postgresql.log"
        try (1...150).map { "line \($0)\n" }.joined().write(toFile: logFile, atomically: false, encoding: .utf8)
        fleet.state.withLock { $0.tenants["acme"] = FakeFleet.tenant("acme", logFile: logFile) }

        try await withApp { client in
            try await client.execute(uri: "/v1/tenants/acme/logs", method: .get) { response throws in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "text/plain; charset=utf-8")
                let lines = String(buffer: response.body).split(separator: "\n")
                #expect(lines.count == 100)
                #expect(lines.first == "line 51")
                #expect(lines.last == "line 150")
            }
            try await client.execute(uri: "/v1/tenants/acme/logs?lines=3&follow=false", method: .get) { response throws in
                #expect(String(buffer: response.body) == "line 148\nline 149\nline 150\n")
            }
            try await client.execute(uri: "/v1/tenants/acme/logs?lines=many", method: .get) { response throws in
                #expect(response.status == .badRequest)
                #expect(try decodeJSON(APIErrorBody.self, String(buffer: response.body)).code == "invalid_request")
            }
            try await client.execute(uri: "/v1/tenants/acme/logs?follow=maybe", method: .get) { response throws in
                #expect(response.status == .badRequest)
            }
        }
    }

    @Test func metricsAreThePrometheusText() async throws {
        registry.makeCounter(descriptor: MetricNameDescriptor(metricName: "pgfleet_test_total", unitName: "", helpText: "A counter for the test.")).increment(by: Int64(3))
        try await withApp { client in
            try await client.execute(uri: "/metrics", method: .get) { response throws in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "text/plain; version=0.0.4; charset=utf-8")
                let text = String(buffer: response.body)
                #expect(text.contains("# TYPE pgfleet_test_total counter"))
                #expect(text.contains("pgfleet_test_total 3"))
            }
        }
    }
}
