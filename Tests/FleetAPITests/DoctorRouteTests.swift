import FleetAPI
import FleetCore
import Foundation
import Hummingbird
import HummingbirdTesting
import Prometheus
import Testing

/// `GET /v1/doctor`: the daemon's checks and the demand they were weighed against, as JSON.
@Suite struct DoctorRouteTests {
    @Test func doctorAnswersTheDaemonsChecksAndDemand() async throws {
        let fleet = FakeFleet()
        let logs = CapturedLogs()
        let router = buildRouter(fleet: fleet, metrics: PrometheusCollectorRegistry(), logger: logs.logger())
        let app = Application(router: router, logger: logs.logger("hummingbird"))
        try await app.test(.router) { client in
            try await client.execute(uri: "/v1/doctor", method: .get) { response throws in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "application/json; charset=utf-8")
                let report = try decodeJSON(DoctorReport.self, String(buffer: response.body))
                #expect(report.checks == [HostCheck(name: "descriptors", status: .warn, detail: "low", fix: "ulimit -Hn 65536")])
                #expect(report.demand.tenants.map(\.name) == ["alpha"])
                #expect(report.demand.sandboxed)
            }
        }
        #expect(fleet.calls == ["doctor"])
    }
}
