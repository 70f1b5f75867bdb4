#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import FleetAPI
import FleetClient
import FleetCore
import Foundation
import Prometheus
import ServiceLifecycle
import Synchronization
import Testing

/// FleetClient against the real API server on a real unix socket.
@Suite(.timeLimit(.minutes(1)))
struct FleetClientTests {
    struct Server {
        var root: String
        var socketPath: String
        var client: FleetClient { FleetClient(socketPath: socketPath) }
    }

    /// Runs the API over `fleet` on ROOT/run/api.sock for the duration of `body`.
    func withServer(
        _ fleet: FakeFleet,
        logs: CapturedLogs = CapturedLogs(),
        metrics: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
        _ body: @Sendable (Server) async throws -> Void
    ) async throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let layout = FleetLayout(root: dir.path)
        try FileManager.default.createDirectory(atPath: layout.runDirectory, withIntermediateDirectories: true)
        let server = Server(root: dir.path, socketPath: layout.apiSocketPath)
        try await run(fleet, socketPath: server.socketPath, logs: logs, metrics: metrics) {
            try await body(server)
        }
    }

    func run(
        _ fleet: FakeFleet,
        socketPath: String,
        logs: CapturedLogs,
        metrics: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
        _ body: @Sendable () async throws -> Void
    ) async throws {
        let router = buildRouter(fleet: fleet, metrics: metrics, logger: logs.logger())
        let app = buildApplication(router: router, socketPath: socketPath, logger: logs.logger("server"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.run() }
            try await waitForPrivateSocket(socketPath)
            do {
                try await body()
            } catch {
                group.cancelAll()
                throw error
            }
            group.cancelAll()
        }
    }

    /// The server is ready once its socket exists with mode 0600 (set right after bind).
    func waitForPrivateSocket(_ path: String) async throws {
        for _ in 0..<1000 {
            if let attributes = try? FileManager.default.attributesOfItem(atPath: path),
                attributes[.type] as? FileAttributeType == .typeSocket,
                (attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600
            {
                return
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        Issue.record("no socket with mode 0600 appeared at \(path)")
        throw CancellationError()
    }

    // MARK: -

    @Test func plainCallsRoundTrip() async throws {
        let fleet = FakeFleet(tenants: [FakeFleet.tenant("acme")])
        let metrics = PrometheusCollectorRegistry()
        metrics.makeGauge(descriptor: MetricNameDescriptor(metricName: "pgfleet_tenants", unitName: "", helpText: "Tenants.")).set(Double(1))
        try await withServer(fleet, metrics: metrics) { server in
            let client = server.client
            let status = try await client.status()
            #expect(status.pid == 4242)
            #expect(status.startedAt == Date(timeIntervalSince1970: 1_700_000_000))
            #expect(try await client.listBundles().map(\.id) == ["16.4-debian"])
            #expect(try await client.listTenants().map(\.name) == ["acme"])
            let acme = try TenantName(validating: "acme")
            #expect(try await client.tenantInfo(acme) == FakeFleet.tenant("acme"))
            #expect(try await client.stopTenant(acme).state == .stopped)
            #expect(try await client.startTenant(acme).pid == 1234)
            #expect(try await client.restartTenant(acme).pid == 1235)
            #expect(try await client.metrics().contains("pgfleet_tenants 1"))
        }
        #expect(fleet.calls == [
            "status", "listBundles", "listTenants", "tenantInfo acme", "stopTenant acme", "startTenant acme", "restartTenant acme",
        ])
    }

    @Test func errorsComeBackAsAPIErrorBodies() async throws {
        try await withServer(FakeFleet(tenants: [FakeFleet.tenant("acme")])) { server in
            let client = server.client
            let missing = try TenantName(validating: "missing")
            let notFound = await #expect(throws: APIErrorBody.self) { try await client.tenantInfo(missing) }
            #expect(notFound?.code == "tenant_not_found")
            #expect(notFound?.message.contains("missing") == true)

            // An error event in a stream is thrown too.
            let exists = await #expect(throws: APIErrorBody.self) {
                try await client.createTenant(CreateTenantRequest(name: "acme", password: "x"))
            }
            #expect(exists?.code == "tenant_exists")
        }
    }

    @Test func createStreamsProgressAndReturnsTheResult() async throws {
        let fleet = FakeFleet()
        try await withServer(fleet) { server in
            let seen = Mutex<[StreamEvent]>([])
            let result = try await server.client.createTenant(CreateTenantRequest(name: "gamma", pg: 16)) { event in
                seen.withLock { $0.append(event) }
            }
            let progress = seen.withLock { $0 }
            #expect(progress.map(\.kind) == [.progress, .progress])
            #expect(progress.map(\.message) == ["running initdb", "starting postgres"])
            #expect(result.kind == .result)
            #expect(result.tenant?.name == "gamma")
            #expect(result.password == FakeFleet.generatedPassword)

            let dropped = try await server.client.dropTenant(try TenantName(validating: "gamma"))
            #expect(dropped.kind == .result)
            #expect(try await server.client.listTenants().isEmpty)
        }
        #expect(fleet.createRequests.map(\.pg) == [16])
    }

    @Test func importStreamsAndReturnsTheBundle() async throws {
        try await withServer(FakeFleet()) { server in
            let count = Mutex(0)
            let result = try await server.client.importBundle(ImportBundleRequest(path: "/usr/lib/postgresql/17")) { _ in
                count.withLock { $0 += 1 }
            }
            #expect(count.withLock { $0 } == 2)
            #expect(result.bundle?.version == "17.2")
        }
    }

    @Test func logsAndFollow() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let logFile = dir.path + "/postgresql.log"
        try "one\ntwo\nthree\n".write(toFile: logFile, atomically: false, encoding: .utf8)
        let fleet = FakeFleet(tenants: [FakeFleet.tenant("acme", logFile: logFile)])

        try await withServer(fleet) { server in
            let acme = try TenantName(validating: "acme")
            let received = Mutex<[UInt8]>([])
            try await server.client.logs(name: acme, lines: 2) { bytes in received.withLock { $0 += bytes } }
            #expect(String(decoding: received.withLock { $0 }, as: UTF8.self) == "two\nthree\n")

            // Follow: the last line first, then what is appended, until we stop reading.
            struct Enough: Error {}
            let followed = Mutex<[UInt8]>([])
            let appender = Task {
                // Appends once the follower has the last line, so it is surely following.
                let deadline = ContinuousClock.now + .seconds(30)
                while !String(decoding: followed.withLock { $0 }, as: UTF8.self).contains("three\n") {
                    guard ContinuousClock.now < deadline else { Issue.record("the follower never got the last line"); return }
                    try await Task.sleep(for: .milliseconds(10))
                }
                let handle = try #require(FileHandle(forWritingAtPath: logFile))
                try handle.seekToEnd()
                try handle.write(contentsOf: Data("four\n".utf8))
                try handle.close()
            }
            await #expect(throws: Enough.self) {
                try await server.client.logs(name: acme, lines: 1, follow: true) { bytes in
                    let text = followed.withLock { $0 += bytes; return String(decoding: $0, as: UTF8.self) }
                    if text.contains("four\n") { throw Enough() }
                }
            }
            try await appender.value
            #expect(String(decoding: followed.withLock { $0 }, as: UTF8.self) == "three\nfour\n")

            // The server is still answering after the follower hung up.
            #expect(try await server.client.status().pid == 4242)
        }
    }

    @Test func gracefulShutdownEndsFollowers() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let layout = FleetLayout(root: dir.path)
        try FileManager.default.createDirectory(atPath: layout.runDirectory, withIntermediateDirectories: true)
        let logFile = dir.path + "/postgresql.log"
        try "hello\n".write(toFile: logFile, atomically: false, encoding: .utf8)
        let fleet = FakeFleet(tenants: [FakeFleet.tenant("acme", logFile: logFile)])
        let logs = CapturedLogs()
        let app = buildApplication(
            router: buildRouter(fleet: fleet, metrics: PrometheusCollectorRegistry(), logger: logs.logger()),
            socketPath: layout.apiSocketPath,
            logger: logs.logger("server")
        )
        let group = ServiceGroup(services: [app], logger: logs.logger("group"))
        let acme = try TenantName(validating: "acme")

        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await waitForPrivateSocket(layout.apiSocketPath)
            let (received, receivedContinuation) = AsyncStream.makeStream(of: Void.self)
            tasks.addTask {
                // Returns normally: the daemon finishes the response as it shuts down.
                try await FleetClient(layout: layout).logs(name: acme, lines: 10, follow: true) { _ in
                    receivedContinuation.yield()
                }
            }
            var iterator = received.makeAsyncIterator()
            await iterator.next()
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    @Test func missingSocketIsDaemonUnavailable() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let layout = FleetLayout(root: dir.path)
        let error = await #expect(throws: FleetError.self) { try await FleetClient(layout: layout).status() }
        guard case .daemonUnavailable(let message) = error else {
            Issue.record("expected daemonUnavailable, got \(String(describing: error))")
            return
        }
        #expect(message.contains("pgfleet serve is not running for root \(dir.path)"))
        #expect(message.contains("no API socket at \(layout.apiSocketPath)"))
        #expect(message.contains("pgfleet serve"))
        #expect(message.contains("PGFLEET_ROOT"))
        #expect(error?.httpStatus == 503)
    }

    @Test func staleSocketIsDaemonUnavailableAndASecondDaemonIsRefused() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let layout = FleetLayout(root: dir.path)
        try FileManager.default.createDirectory(atPath: layout.runDirectory, withIntermediateDirectories: true)
        let logs = CapturedLogs()

        try await run(FakeFleet(), socketPath: layout.apiSocketPath, logs: logs) {
            // A second daemon on the same socket must not steal it.
            let second = buildApplication(
                router: buildRouter(fleet: FakeFleet(), metrics: PrometheusCollectorRegistry(), logger: logs.logger()),
                socketPath: layout.apiSocketPath,
                logger: logs.logger("second")
            )
            let refused = await #expect(throws: FleetError.self) { try await second.run() }
            #expect(refused?.code == "conflict")
            let status = try await FleetClient(layout: layout).status()
            #expect(status.pid == 4242)
        }

        // A daemon that died leaves its socket file behind, refusing connections.
        try makeStaleSocket(at: layout.apiSocketPath)
        let error = await #expect(throws: FleetError.self) { try await FleetClient(layout: layout).status() }
        guard case .daemonUnavailable(let message) = error else {
            Issue.record("expected daemonUnavailable, got \(String(describing: error))")
            return
        }
        #expect(message.contains(layout.apiSocketPath))
        #expect(message.contains("nothing is listening"))

        // A new daemon replaces the stale socket.
        try await run(FakeFleet(), socketPath: layout.apiSocketPath, logs: logs) {
            let status = try await FleetClient(layout: layout).status()
            #expect(status.pid == 4242)
        }
    }

    /// A socket file nobody listens on, as a killed daemon leaves it.
    func makeStaleSocket(at path: String) throws {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        try #require(descriptor >= 0)
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: Array(path.utf8) + [0])
        }
        let bound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        try #require(bound == 0)
    }
}
