import FleetCore
import Foundation
import Logging
import Synchronization

/// An in-memory `FleetControl` that records what it was asked.
final class FakeFleet: FleetControl {
    static let generatedPassword = "gen-Pa55word-9f3c1e"
    static let internalDetail = "sqlite: database disk image is malformed at page 7"

    struct State {
        var tenants: [String: TenantInfo] = [:]
        var bundles: [BundleInfo] = [FakeFleet.bundle()]
        var calls: [String] = []
        var createRequests: [CreateTenantRequest] = []
        /// Every call throws this non-FleetError, to test 500 answers.
        var failInternally = false
    }

    let state = Mutex(State())

    init(tenants: [TenantInfo] = []) {
        state.withLock { state in
            for tenant in tenants { state.tenants[tenant.name] = tenant }
        }
    }

    var calls: [String] { state.withLock { $0.calls } }
    var createRequests: [CreateTenantRequest] { state.withLock { $0.createRequests } }

    private func record(_ call: String) throws {
        let failing = state.withLock { state in
            state.calls.append(call)
            return state.failInternally
        }
        if failing { throw InternalFailure(detail: Self.internalDetail) }
    }

    private func tenant(_ name: TenantName) throws -> TenantInfo {
        guard let tenant = state.withLock({ $0.tenants[name.rawValue] }) else { throw FleetError.tenantNotFound(name.rawValue) }
        return tenant
    }

    func doctor() async throws -> DoctorReport {
        try record("doctor")
        let demand = FleetDemand(tenants: [TenantDemand(name: "alpha", maxConnections: 40)], sandboxed: true, root: "/var/lib/pgfleet")
        return DoctorReport(checks: [HostCheck(name: "descriptors", status: .warn, detail: "low", fix: "ulimit -Hn 65536")], demand: demand)
    }

    func status() async throws -> DaemonStatus {
        try record("status")
        let (tenants, bundles) = state.withLock { ($0.tenants.count, $0.bundles.count) }
        return DaemonStatus(
            version: "0.1.0", root: "/var/lib/pgfleet", pid: 4242, isolated: true,
            startedAt: Date(timeIntervalSince1970: 1_700_000_000), tenants: tenants,
            tenantsByState: tenants > 0 ? ["running": tenants] : [:], bundles: bundles
        )
    }

    func listBundles() async throws -> [BundleInfo] {
        try record("listBundles")
        return state.withLock { $0.bundles }
    }

    func setDefaultBundle(_ id: String, _ request: BundleDefaultRequest) async throws -> BundleInfo {
        try record("setDefaultBundle \(id) fleet=\(request.fleet ?? false)")
        return try state.withLock { state in
            guard let index = state.bundles.firstIndex(where: { $0.id == id }) else { throw FleetError.bundleNotFound(id) }
            state.bundles[index].isMajorDefault = true
            return state.bundles[index]
        }
    }

    func removeBundle(_ id: String) async throws -> BundleInfo {
        try record("removeBundle \(id)")
        return try state.withLock { state in
            guard let index = state.bundles.firstIndex(where: { $0.id == id }) else { throw FleetError.bundleNotFound(id) }
            return state.bundles.remove(at: index)
        }
    }

    func importBundle(_ request: ImportBundleRequest, progress: @escaping ProgressReporter) async throws -> BundleInfo {
        try record("importBundle \(request.path)")
        guard request.path.hasPrefix("/usr/lib/postgresql/") else {
            throw FleetError.invalidBundle("\(request.path) has no bin/postgres")
        }
        await progress(.progress("copying files", completed: 1, total: 2))
        await progress(.progress("verifying", completed: 2, total: 2))
        var bundle = Self.bundle(id: "17.2-debian", major: 17, version: "17.2")
        bundle.source = request.path
        bundle.isDefault = request.makeDefault ?? false
        state.withLock { [bundle] in $0.bundles.append(bundle) }
        return bundle
    }

    func listTenants() async throws -> [TenantInfo] {
        try record("listTenants")
        return state.withLock { $0.tenants.values.sorted { $0.name < $1.name } }
    }

    func tenantInfo(_ name: TenantName) async throws -> TenantInfo {
        try record("tenantInfo \(name)")
        return try tenant(name)
    }

    func createTenant(_ request: CreateTenantRequest, progress: @escaping ProgressReporter) async throws -> (TenantInfo, String?) {
        try record("createTenant \(request.name)")
        let name = try TenantName(validating: request.name)
        state.withLock { $0.createRequests.append(request) }
        if state.withLock({ $0.tenants[name.rawValue] != nil }) { throw FleetError.tenantExists(name.rawValue) }
        await progress(.progress("running initdb"))
        await progress(.progress("starting postgres", completed: 1, total: 1))
        var tenant = Self.tenant(name.rawValue)
        tenant.superuser = request.superuser ?? "postgres"
        state.withLock { [tenant] in $0.tenants[name.rawValue] = tenant }
        return (tenant, request.password == nil ? Self.generatedPassword : nil)
    }

    func startTenant(_ name: TenantName) async throws -> TenantInfo {
        try record("startTenant \(name)")
        return try setState(name, .running, pid: 1234)
    }

    func stopTenant(_ name: TenantName) async throws -> TenantInfo {
        try record("stopTenant \(name)")
        return try setState(name, .stopped, pid: nil)
    }

    func setSettings(_ name: TenantName, _ request: SettingsRequest) async throws -> SettingsResult {
        try record("setSettings \(name) \(request.settings.map(\.name))")
        return SettingsResult(
            tenant: try setState(name, .running, pid: 1234), applied: request.settings.map { "\($0.name) = \($0.value)" },
            restartNeeded: [], restarted: false
        )
    }

    func suspendTenant(_ name: TenantName) async throws -> TenantInfo {
        try record("suspendTenant \(name)")
        return try setState(name, .suspended, pid: nil)
    }

    func restartTenant(_ name: TenantName) async throws -> TenantInfo {
        try record("restartTenant \(name)")
        return try setState(name, .running, pid: 1235)
    }

    func resetPassword(_ name: TenantName, _ request: PasswordRequest) async throws -> PasswordResult {
        try record("resetPassword \(name)")
        return PasswordResult(tenant: try setState(name, .running, pid: 1236), password: request.password == nil ? "generated-secret" : nil, restarted: true)
    }

    func dropTenant(_ name: TenantName, progress: @escaping ProgressReporter) async throws {
        try record("dropTenant \(name)")
        _ = try tenant(name)
        await progress(.progress("stopping"))
        await progress(.progress("removing files"))
        state.withLock { _ = $0.tenants.removeValue(forKey: name.rawValue) }
    }

    private func setState(_ name: TenantName, _ newState: TenantState, pid: Int32?) throws -> TenantInfo {
        var tenant = try tenant(name)
        tenant.state = newState
        tenant.desiredState = newState == .running ? .running : .stopped
        tenant.pid = pid
        state.withLock { [tenant] in $0.tenants[name.rawValue] = tenant }
        return tenant
    }

    static func tenant(_ name: String, logFile: String? = nil) -> TenantInfo {
        let dir = "/var/lib/pgfleet/tenants/\(name)"
        return TenantInfo(
            name: name, version: "16.4", major: 16, bundle: "16.4-debian", state: .running, desiredState: .running,
            pid: 777, superuser: "postgres", osUser: "pgf-\(name)", socketDirectory: dir + "/socket", port: 5432,
            dataDirectory: dir + "/data", logFile: logFile ?? dir + "/log/postgresql.log",
            createdAt: Date(timeIntervalSince1970: 1_700_000_000), runningSince: Date(timeIntervalSince1970: 1_700_000_100),
            restarts: 0, failureReason: nil
        )
    }

    static func bundle(id: String = "16.4-debian", major: Int = 16, version: String = "16.4") -> BundleInfo {
        BundleInfo(
            id: id, major: major, version: version, sourceKind: "system", source: "/usr/lib/postgresql/\(major)",
            path: "/var/lib/pgfleet/bundles/\(id)", isDefault: true, importedAt: Date(timeIntervalSince1970: 1_700_000_000),
            glibcVersion: "2.36", icuVersion: "72", fileCount: 1200, tenants: 0
        )
    }
}

struct InternalFailure: Error, CustomStringConvertible {
    var detail: String
    var description: String { "InternalFailure(\(detail))" }
}

/// Keeps every log line (message and metadata) for inspection.
final class CapturedLogs: Sendable {
    private let lines = Mutex<[String]>([])

    var all: [String] { lines.withLock { $0 } }
    var text: String { all.joined(separator: "\n") }

    func append(_ line: String) {
        lines.withLock { $0.append(line) }
    }

    func logger(_ label: String = "test") -> Logger {
        var logger = Logger(label: label) { _ in CapturingLogHandler(sink: self) }
        logger.logLevel = .trace
        return logger
    }
}

struct CapturingLogHandler: LogHandler {
    let sink: CapturedLogs
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        let rendered = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        sink.append("\(event.level) \(event.message) \(rendered)")
    }
}

/// A fresh directory under the system temp dir, removed by `cleanup()`.
struct TemporaryDirectory {
    let path: String

    init() throws {
        // Short: unix socket paths are limited to ~104 bytes.
        path = "/tmp/pgf-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func cleanup() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

func decodeNDJSON(_ text: String) throws -> [StreamEvent] {
    let decoder = JSONDecoder()
    decoder.dateDecodingStrategy = .iso8601
    return try text.split(separator: "\n").map { try decoder.decode(StreamEvent.self, from: Data($0.utf8)) }
}

func decodeJSON<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
    let decoder = JSONDecoder()
    decoder.dateDecodingStrategy = .iso8601
    return try decoder.decode(T.self, from: Data(text.utf8))
}
