import FleetCore
import Foundation
import Hummingbird
import Logging
import Prometheus

/// The daemon's HTTP API (routes listed in FleetCore's API.swift) over `fleet`.
///
/// Request bodies are never logged: create requests carry passwords.
public func buildRouter(fleet: any FleetControl, metrics: PrometheusCollectorRegistry, logger: Logger) -> Router<BasicRequestContext> {
    let router = Router(context: BasicRequestContext.self)
    // Added first so that it wraps every route, including the not-found answer.
    router.add(middleware: APIErrorMiddleware<BasicRequestContext>(logger: logger))

    let v1 = router.group("v1")

    v1.get("status") { _, _ in
        try APICoding.jsonResponse(try await fleet.status())
    }

    v1.get("doctor") { _, _ in
        try APICoding.jsonResponse(try await fleet.doctor())
    }

    // MARK: Bundles

    v1.get("bundles") { _, _ in
        try APICoding.jsonResponse(try await fleet.listBundles())
    }

    v1.post("bundles/import") { request, _ in
        let importRequest = try await APICoding.decodeBody(ImportBundleRequest.self, from: request)
        guard importRequest.path.hasPrefix("/") else {
            // The daemon's working directory is not the caller's.
            throw FleetError.invalidRequest("\"path\" must be absolute, got \"\(importRequest.path.debugClipped)\"")
        }
        return ProgressStream.response(logger: logger, method: "POST", path: request.uri.path) { progress in
            let bundle = try await fleet.importBundle(importRequest, progress: progress)
            return StreamEvent(kind: .result, message: "imported bundle \(bundle.id)", bundle: bundle)
        }
    }

    v1.post("bundles/:id/default") { request, context in
        let body = try await APICoding.decodeBody(BundleDefaultRequest.self, from: request)
        return try APICoding.jsonResponse(try await fleet.setDefaultBundle(context.parameters.get("id") ?? "", body))
    }

    v1.delete("bundles/:id") { _, context in
        try APICoding.jsonResponse(try await fleet.removeBundle(context.parameters.get("id") ?? ""))
    }

    v1.post("bundles/:id/verify") { request, context in
        let id = context.parameters.get("id") ?? ""
        return ProgressStream.response(logger: logger, method: "POST", path: request.uri.path) { progress in
            let bundle = try await fleet.verifyBundle(id: id, progress: progress)
            let passed = bundle.verification?.passed == true
            return StreamEvent(kind: .result, message: "bundle \(bundle.id) \(passed ? "passed" : "failed") its verification", bundle: bundle)
        }
    }

    // MARK: Tenants

    v1.get("tenants") { _, _ in
        // The same bytes JSONEncoder would write, written by hand: with thousands of tenants the
        // encoder took most of this answer's time.
        APICoding.jsonResponse(bytes: TenantJSON.encode(try await fleet.listTenants(), style: .compact))
    }

    v1.post("tenants") { request, _ in
        let createRequest = try await APICoding.decodeBody(CreateTenantRequest.self, from: request)
        // Before the stream opens, so that a bad request is a plain 400.
        let name = try createRequest.validated(spelling: .json).name
        return ProgressStream.response(logger: logger, method: "POST", path: request.uri.path) { progress in
            let (tenant, password) = try await fleet.createTenant(createRequest, progress: progress)
            return StreamEvent(kind: .result, message: "created tenant \(name)", tenant: tenant, password: password)
        }
    }

    v1.get("tenants/:name") { _, context in
        try APICoding.jsonResponse(try await fleet.tenantInfo(try tenantName(context)))
    }

    v1.post("tenants/:name/start") { _, context in
        try APICoding.jsonResponse(try await fleet.startTenant(try tenantName(context)))
    }

    v1.post("tenants/:name/settings") { request, context in
        let name = try tenantName(context)
        let settings = try await APICoding.decodeBody(SettingsRequest.self, from: request)
        return try APICoding.jsonResponse(try await fleet.setSettings(name, settings))
    }
    v1.post("tenants/:name/suspend") { _, context in
        try APICoding.jsonResponse(try await fleet.suspendTenant(try tenantName(context)))
    }
    v1.post("tenants/:name/stop") { _, context in
        try APICoding.jsonResponse(try await fleet.stopTenant(try tenantName(context)))
    }

    v1.post("tenants/:name/restart") { _, context in
        try APICoding.jsonResponse(try await fleet.restartTenant(try tenantName(context)))
    }

    v1.post("tenants/:name/password") { request, context in
        let name = try tenantName(context)
        let body = try await APICoding.decodeBody(PasswordRequest.self, from: request)
        return try APICoding.jsonResponse(try await fleet.resetPassword(name, body))
    }

    v1.delete("tenants/:name") { request, context in
        let name = try tenantName(context)
        return ProgressStream.response(logger: logger, method: "DELETE", path: request.uri.path) { progress in
            try await fleet.dropTenant(name, progress: progress)
            return StreamEvent(kind: .result, message: "dropped tenant \(name)")
        }
    }

    v1.post("tenants/:name/update") { request, context in
        let name = try tenantName(context)
        // Before the stream opens, so that a bad request is a plain 400.
        let body = try await APICoding.decodeBody(UpdateTenantRequest.self, from: request)
        return ProgressStream.response(logger: logger, method: "POST", path: request.uri.path) { progress in
            let tenant = try await fleet.updateTenant(name, body, progress: progress)
            return StreamEvent(kind: .result, message: "tenant \(name) runs on bundle \(tenant.bundle)", tenant: tenant)
        }
    }

    v1.get("tenants/:name/logs") { request, context in
        let name = try tenantName(context)
        let query = try LogsQuery(request.uri.queryParameters)
        let tenant = try await fleet.tenantInfo(name)
        return try logsResponse(request: request, logFile: tenant.logFile, query: query)
    }

    // MARK: Metrics

    router.get("metrics") { _, _ in
        var bytes: [UInt8] = []
        metrics.emit(into: &bytes)
        return Response(
            status: .ok,
            headers: [.contentType: APICoding.prometheusContentType],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes))
        )
    }

    return router
}

private func tenantName(_ context: BasicRequestContext) throws -> TenantName {
    // The router only matches a non-empty segment, already percent-decoded.
    let raw = context.parameters.get("name") ?? ""
    return try TenantName(validating: raw)
}

/// `?lines=N&follow=true` of the logs route.
struct LogsQuery: Equatable {
    static let defaultLines = 100
    static let maxLines = 100_000

    var lines: Int
    var follow: Bool

    init(lines: Int = LogsQuery.defaultLines, follow: Bool = false) {
        self.lines = lines
        self.follow = follow
    }

    init(_ parameters: Parameters) throws(FleetError) {
        self.init()
        if let raw = parameters.get("lines") {
            guard let value = Int(raw), value >= 0 else {
                throw .invalidRequest("\"lines\" must be a whole number >= 0, got \"\(String(raw).debugClipped)\"")
            }
            lines = min(value, Self.maxLines)
        }
        if let raw = parameters.get("follow") {
            switch raw.lowercased() {
            case "true", "1", "yes", "": follow = true
            case "false", "0", "no": follow = false
            default: throw .invalidRequest("\"follow\" must be true or false, got \"\(String(raw).debugClipped)\"")
            }
        }
    }
}

private func logsResponse(request: Request, logFile: String, query: LogsQuery) throws -> Response {
    let tail = LogTail(path: logFile)
    let head = try tail.lastLines(query.lines)
    let headers: HTTPFields = [.contentType: APICoding.textContentType]
    guard query.follow else {
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: head)))
    }
    let body = ResponseBody { writer in
        if !head.isEmpty { try await writer.write(ByteBuffer(bytes: head)) }
        do {
            // Ends when the client hangs up (the request's inbound side closes), or when the
            // daemon shuts down: an open follower must not hold up a graceful shutdown.
            try await request.body.consumeWithCancellationOnInboundClose { _ in
                try await tail.follow(while: { !Task.isShuttingDownGracefully }) { bytes in
                    try await writer.write(ByteBuffer(bytes: bytes))
                }
            }
        } catch is CancellationError {
            // The client is gone; there is no one to finish the response for.
            return
        }
        try await writer.finish(nil)
    }
    return Response(status: .ok, headers: headers, body: body)
}
