import CoreMetrics
import FleetCore
import Logging
import NIOCore
import NIOEmbedded
import PGWire
import Synchronization
import Testing

@testable import FleetProxy

/// Remembers every series made through it (label and dimensions), which is what a Prometheus
/// registry keeps forever.
final class SeriesRecorder: MetricsFactory, Sendable {
    struct Series: Hashable {
        var label: String
        var dimensions: [String]
        func value(of name: String) -> String? {
            dimensions.first(where: { $0.hasPrefix(name + "=") }).map { String($0.dropFirst(name.count + 1)) }
        }
    }

    /// Each series with its counter's total.
    private let made = Mutex<[Series: Int64]>([:])
    var series: Set<Series> { made.withLock { Set($0.keys) } }
    func total(_ series: Series) -> Int64? { made.withLock { $0[series] } }

    private func note(_ label: String, _ dimensions: [(String, String)]) -> Handler {
        let series = Series(label: label, dimensions: dimensions.map { "\($0.0)=\($0.1)" })
        made.withLock { made in made[series] = made[series] ?? 0 }
        return Handler(series: series, recorder: self)
    }

    fileprivate func add(_ amount: Int64, to series: Series) {
        made.withLock { $0[series, default: 0] += amount }
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        note(label, dimensions)
    }
    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        note(label, dimensions)
    }
    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        note(label, dimensions)
    }
    func destroyCounter(_ handler: any CounterHandler) {}
    func destroyRecorder(_ handler: any RecorderHandler) {}
    func destroyTimer(_ handler: any TimerHandler) {}

    fileprivate final class Handler: CounterHandler, RecorderHandler, TimerHandler, Sendable {
        let series: Series
        let recorder: SeriesRecorder
        init(series: Series, recorder: SeriesRecorder) {
            self.series = series
            self.recorder = recorder
        }
        func increment(by amount: Int64) { recorder.add(amount, to: series) }
        func reset() {}
        func record(_ value: Int64) {}
        func record(_ value: Double) {}
        func recordNanoseconds(_ duration: Int64) {}
    }
}

/// Knows one tenant, `acme`, stopped (so a test needs no server) until it is dropped; every
/// other name is unknown.
private final class OneStoppedTenant: RouteProvider {
    let dropped = Atomic(false)
    func route(for tenant: TenantName) async -> TenantRoute { cachedRoute(for: tenant)! }
    func wake(_ tenant: TenantName) async -> TenantRoute { cachedRoute(for: tenant)! }
    func cachedRoute(for tenant: TenantName) -> TenantRoute? {
        tenant.rawValue == "acme" && !dropped.load(ordering: .relaxed) ? .stopped : .unknown
    }
}

@Suite struct ProxyMetricsTests {
    /// Sends one startup packet for `user` through a fresh client handler.
    private func connect(as user: String, shared: ProxyContext) throws {
        let channel = EmbeddedChannel(handler: ClientConnectionHandler(shared: shared))
        channel.pipeline.fireChannelActive()
        var packet = channel.allocator.buffer(capacity: 64)
        StartupCodec.encode(.startup(version: .v3_0, parameters: [StartupParameter(name: "user", value: user)]), into: &packet)
        try channel.writeInbound(packet)
        #expect(!channel.isActive, "the proxy refused \(user)")
        _ = try? channel.finish()
    }

    @Test func tenantsTheRoutesDoNotKnowShareOneSetOfSeries() throws {
        let recorder = SeriesRecorder()
        let routes = OneStoppedTenant()
        let shared = ProxyContext(
            configuration: ProxyConfiguration(tlsMode: .disable), routes: routes, tls: nil, cancels: CancelRegistry(),
            limits: ConnectionLimits(maxTotal: 10_000, maxPerTenant: 1_000), logger: Logger(label: "test"),
            metrics: ProxyMetrics(factory: recorder)
        )
        try connect(as: "postgres@acme", shared: shared)
        let afterOne = recorder.series.filter { $0.value(of: "tenant") != nil }.count
        for n in 1...300 { try connect(as: "postgres@nosuch\(n)", shared: shared) }

        let tenants = Set(recorder.series.compactMap { $0.value(of: "tenant") })
        #expect(tenants == ["acme", ProxyMetrics.unknownTenantLabel])
        // The first unknown name adds the one shared series; the other 299 add nothing.
        #expect(recorder.series.filter { $0.value(of: "tenant") != nil }.count == afterOne + 1)
        let acme = SeriesRecorder.Series(label: "pgfleet_proxy_connections_total", dimensions: ["tenant=acme"])
        let unknown = SeriesRecorder.Series(label: "pgfleet_proxy_connections_total", dimensions: ["tenant=_unknown"])
        #expect(recorder.total(acme) == 1)
        #expect(recorder.total(unknown) == 300)

        // A dropped tenant's name is as good as made up: its series stop growing.
        routes.dropped.store(true, ordering: .relaxed)
        let beforeDrop = recorder.series.count
        for _ in 1...10 { try connect(as: "postgres@acme", shared: shared) }
        #expect(recorder.series.count == beforeDrop)
        #expect(recorder.total(acme) == 1)
        #expect(recorder.total(unknown) == 310)
    }
}
