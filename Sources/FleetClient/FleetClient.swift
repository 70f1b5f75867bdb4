import FleetCore
import Foundation
import NIOCore
import NIOHTTP1

/// JSON as the API speaks it: ISO-8601 dates, sorted keys.
public enum FleetJSON {
    public static func makeEncoder(pretty: Bool = false) -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    public static func makeDecoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}

/// The CLI's side of the API: one call per method of `FleetControl`, over the daemon's unix socket.
///
/// Errors: a daemon that cannot be reached is `FleetError.daemonUnavailable` (saying how to start
/// it); a refusal by the daemon is the `APIErrorBody` it answered with.
public struct FleetClient: Sendable {
    public let socketPath: String
    private let transport: UnixHTTPTransport

    public init(socketPath: String) {
        self.socketPath = socketPath
        // The layout puts the socket at ROOT/run/api.sock; naming the root helps the operator
        // who forgot --root.
        let suffix = "/run/api.sock"
        let root = socketPath.hasSuffix(suffix) ? String(socketPath.dropLast(suffix.count)) : nil
        self.transport = UnixHTTPTransport(socketPath: socketPath, root: root.flatMap { $0.isEmpty ? "/" : $0 })
    }

    public init(layout: FleetLayout) {
        self.init(socketPath: layout.apiSocketPath)
    }

    // MARK: Daemon

    public func status() async throws -> DaemonStatus {
        try await get("/v1/status")
    }

    public func doctor() async throws -> DoctorReport {
        try await get("/v1/doctor")
    }

    public func metrics() async throws -> String {
        var bytes: [UInt8] = []
        try await transport.exchange(method: .GET, path: "/metrics") { buffer in
            guard bytes.count + buffer.readableBytes <= UnixHTTPTransport.maxBodyLength else { throw Self.tooLarge("/metrics") }
            bytes += buffer.readableBytesView
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    // MARK: Bundles

    public func listBundles() async throws -> [BundleInfo] {
        try await get("/v1/bundles")
    }

    /// Imports a bundle; `onEvent` sees each progress event, the `result` event (carrying the
    /// bundle) is returned, an `error` event is thrown as its `APIErrorBody`.
    public func importBundle(
        _ request: ImportBundleRequest,
        onEvent: (StreamEvent) async throws -> Void = { _ in }
    ) async throws -> StreamEvent {
        try await stream(.POST, "/v1/bundles/import", body: try encode(request), onEvent: onEvent)
    }

    public func setDefaultBundle(_ id: String, fleet: Bool) async throws -> BundleInfo {
        try await call(.POST, Self.bundlePath(id) + "/default", body: try encode(BundleDefaultRequest(fleet: fleet ? true : nil)))
    }

    public func removeBundle(_ id: String) async throws -> BundleInfo {
        try await call(.DELETE, Self.bundlePath(id))
    }

    /// Verifies a bundle in a sandbox holding only it (`POST /v1/bundles/{id}/verify`); the
    /// result event carries the bundle with its `verification`.
    public func verifyBundle(_ id: String, onEvent: (StreamEvent) async throws -> Void = { _ in }) async throws -> StreamEvent {
        let escaped = id.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? id
        return try await stream(.POST, "/v1/bundles/\(escaped)/verify", body: nil, onEvent: onEvent)
    }

    // MARK: Tenants

    public func listTenants() async throws -> [TenantInfo] {
        let path = "/v1/tenants"
        let bytes = try await body(.GET, path)
        // The list is long: read by hand when it has the daemon's usual shape, else as any answer.
        if let tenants = TenantListReader.read(bytes) { return tenants }
        return try decode(.GET, path, bytes)
    }

    public func tenantInfo(_ name: TenantName) async throws -> TenantInfo {
        try await get(Self.tenantPath(name))
    }

    /// Creates a tenant; `onEvent` sees each progress event, the `result` event (tenant, and the
    /// password when the daemon generated it) is returned, an `error` event is thrown.
    public func createTenant(
        _ request: CreateTenantRequest,
        onEvent: (StreamEvent) async throws -> Void = { _ in }
    ) async throws -> StreamEvent {
        _ = try TenantName(validating: request.name)
        return try await stream(.POST, "/v1/tenants", body: try encode(request), onEvent: onEvent)
    }

    public func startTenant(_ name: TenantName) async throws -> TenantInfo {
        try await call(.POST, Self.tenantPath(name) + "/start")
    }

    public func stopTenant(_ name: TenantName) async throws -> TenantInfo {
        try await call(.POST, Self.tenantPath(name) + "/stop")
    }

    public func setSettings(_ name: TenantName, _ request: SettingsRequest) async throws -> SettingsResult {
        try await call(.POST, Self.tenantPath(name) + "/settings", body: try encode(request))
    }

    public func suspendTenant(_ name: TenantName) async throws -> TenantInfo {
        try await call(.POST, Self.tenantPath(name) + "/suspend")
    }

    public func restartTenant(_ name: TenantName) async throws -> TenantInfo {
        try await call(.POST, Self.tenantPath(name) + "/restart")
    }

    public func resetPassword(_ name: TenantName, _ request: PasswordRequest) async throws -> PasswordResult {
        try await call(.POST, Self.tenantPath(name) + "/password", body: try encode(request))
    }

    /// Moves a tenant to another minor of its major (`tenant update`); `onEvent` sees each
    /// progress event, the `result` event (carrying the tenant) is returned, an `error` event is thrown.
    public func updateTenant(
        _ name: TenantName, _ request: UpdateTenantRequest,
        onEvent: (StreamEvent) async throws -> Void = { _ in }
    ) async throws -> StreamEvent {
        try await stream(.POST, Self.tenantPath(name) + "/update", body: try encode(request), onEvent: onEvent)
    }

    /// Drops a tenant and its data; `onEvent` sees each progress event.
    public func dropTenant(
        _ name: TenantName,
        onEvent: (StreamEvent) async throws -> Void = { _ in }
    ) async throws -> StreamEvent {
        try await stream(.DELETE, Self.tenantPath(name), body: nil, onEvent: onEvent)
    }

    /// The last `lines` lines of the tenant's PostgreSQL log (the daemon's default when nil),
    /// then, with `follow`, what is appended until the task is cancelled or `onChunk` throws.
    /// Chunks are raw bytes: they need not end on a line, nor on a UTF-8 character.
    public func logs(
        name: TenantName,
        lines: Int? = nil,
        follow: Bool = false,
        onChunk: ([UInt8]) async throws -> Void
    ) async throws {
        var query = ["follow=\(follow)"]
        if let lines { query.insert("lines=\(lines)", at: 0) }
        let path = Self.tenantPath(name) + "/logs?" + query.joined(separator: "&")
        try await transport.exchange(method: .GET, path: path) { buffer in
            try await onChunk(Array(buffer.readableBytesView))
        }
    }

    // MARK: - Plumbing

    /// Bundle ids are checked by the daemon; anything outside their alphabet is escaped here so
    /// that it reaches the daemon (and its error message) as one path segment.
    private static func bundlePath(_ id: String) -> String {
        "/v1/bundles/" + (id.addingPercentEncoding(withAllowedCharacters: bundleIDCharacters) ?? "")
    }

    private static let bundleIDCharacters = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")

    private static func tenantPath(_ name: TenantName) -> String {
        // Tenant names are [a-z0-9-]: nothing to escape.
        "/v1/tenants/" + name.rawValue
    }

    private func encode(_ value: some Encodable) throws -> [UInt8] {
        Array(try FleetJSON.makeEncoder().encode(value))
    }

    private func get<T: Decodable>(_ path: String) async throws -> T {
        try await call(.GET, path)
    }

    private func call<T: Decodable>(_ method: HTTPMethod, _ path: String, body: [UInt8]? = nil) async throws -> T {
        try decode(method, path, try await self.body(method, path, body: body))
    }

    /// The body of a 2xx answer.
    private func body(_ method: HTTPMethod, _ path: String, body: [UInt8]? = nil) async throws -> [UInt8] {
        var bytes: [UInt8] = []
        try await transport.exchange(method: method, path: path, body: body) { buffer in
            guard bytes.count + buffer.readableBytes <= UnixHTTPTransport.maxBodyLength else { throw Self.tooLarge(path) }
            // Through the raw bytes: appending the view went byte by byte.
            buffer.withUnsafeReadableBytes { bytes.append(contentsOf: $0) }
        }
        return bytes
    }

    private func decode<T: Decodable>(_ method: HTTPMethod, _ path: String, _ bytes: [UInt8]) throws -> T {
        do {
            return try FleetJSON.makeDecoder().decode(T.self, from: Data(bytes))
        } catch {
            throw Self.unexpected(method, path, error)
        }
    }

    private func stream(
        _ method: HTTPMethod,
        _ path: String,
        body: [UInt8]?,
        onEvent: (StreamEvent) async throws -> Void
    ) async throws -> StreamEvent {
        var splitter = NDJSONSplitter()
        var final: StreamEvent?
        let decoder = FleetJSON.makeDecoder()

        func handle(_ line: [UInt8]) async throws {
            let event: StreamEvent
            do {
                event = try decoder.decode(StreamEvent.self, from: Data(line))
            } catch {
                throw Self.unexpected(method, path, error)
            }
            switch event.kind {
            case .progress:
                try await onEvent(event)
            case .result:
                final = event
            case .error:
                throw event.error ?? APIErrorBody(code: "failed", message: event.message ?? "the operation failed")
            }
        }

        try await transport.exchange(method: method, path: path, body: body) { buffer in
            for line in try splitter.append(buffer.readableBytesView) {
                try await handle(line)
            }
        }
        if let line = splitter.finish() { try await handle(line) }
        guard let final else {
            throw FleetError.failed("pgfleet serve ended its answer to \(method.rawValue) \(path) without a result; check `pgfleet status` and the daemon's log")
        }
        return final
    }

    private static func tooLarge(_ path: String) -> FleetError {
        .failed("pgfleet serve's answer to \(path) is larger than \(UnixHTTPTransport.maxBodyLength) bytes")
    }

    private static func unexpected(_ method: HTTPMethod, _ path: String, _ error: any Error) -> FleetError {
        .failed("unexpected answer from pgfleet serve to \(method.rawValue) \(path) (is the daemon a different pgfleet version than this CLI, \(PGFleetVersion.current)?): \(error)")
    }
}
