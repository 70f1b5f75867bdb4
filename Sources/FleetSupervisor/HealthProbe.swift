import FleetCore
import NIOCore
import NIOPosix
import PGWire

/// Proves a postmaster really serves queries: connects to its unix socket as the `pgfleet`
/// role, which pg_hba.conf admits by peer authentication only for the daemon's own OS user (so
/// the check needs no password and opens no door for anyone else), and runs `SELECT 1`.
public struct HealthProbe: Sendable {
    public static let role = TenantRoles.daemon

    public enum Outcome: Sendable, Equatable {
        case ready
        /// Not (yet) able to serve: refused, starting up, in recovery, …
        case notReady(String)
    }

    let eventLoopGroup: any EventLoopGroup
    let timeout: TimeAmount

    public init(eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, timeout: TimeAmount = .seconds(3)) {
        self.eventLoopGroup = eventLoopGroup
        self.timeout = timeout
    }

    public func check(socketDirectory: String, port: Int = FleetLayout.tenantPort) async -> Outcome {
        await query("SELECT 1", socketDirectory: socketDirectory, port: port).outcome
    }

    /// Client sessions other than the probe's own, counted from pg_stat_activity (the role has
    /// pg_monitor): connections that bypass the proxy keep a tenant awake too. Nil if it cannot tell.
    public func clientSessions(socketDirectory: String, port: Int = FleetLayout.tenantPort) async -> Int? {
        let answer = await query(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
            socketDirectory: socketDirectory, port: port
        )
        guard answer.outcome == .ready, let value = answer.value else { return nil }
        return Int(value)
    }

    /// Runs `sql` (one or more statements: one transaction) as the daemon's role; nil when it
    /// succeeded, else why not. The statement text is never logged: it may carry a password verifier.
    public func execute(_ sql: String, socketDirectory: String, port: Int = FleetLayout.tenantPort) async -> String? {
        await executeTracked(sql, socketDirectory: socketDirectory, port: port).problem
    }

    /// `execute`, also saying whether the statement reached the server: a failure before that
    /// (no socket yet, "the database system is starting up") can be retried safely.
    func executeTracked(_ sql: String, socketDirectory: String, port: Int = FleetLayout.tenantPort) async -> (problem: String?, sent: Bool) {
        let answer = await query(sql, socketDirectory: socketDirectory, port: port, needsRow: false)
        switch answer.outcome {
        case .ready: return (nil, true)
        case .notReady(let why): return (why, answer.sent)
        }
    }

    /// Runs one simple query and returns whether it worked and the first column of its first row.
    /// `sent`: the query went out (so it may have run, even if the answer says otherwise or
    /// never came); a timeout counts as sent.
    func query(
        _ sql: String, socketDirectory: String, port: Int, database: String = "postgres", needsRow: Bool = true
    ) async -> (outcome: Outcome, value: String?, sent: Bool) {
        let path = "\(socketDirectory)/.s.PGSQL.\(port)"
        let sent = DoneFlag()
        do {
            let answer = try await withThrowingTaskGroup(of: (outcome: Outcome, value: String?).self) { group in
                group.addTask { try await self.run(path: path, database: database, sql: sql, needsRow: needsRow, sent: sent) }
                group.addTask {
                    try await Task.sleep(for: .nanoseconds(self.timeout.nanoseconds))
                    sent.set()
                    return (.notReady("no answer within \(self.timeout.nanoseconds / 1_000_000) ms"), nil)
                }
                let first = try await group.next() ?? (.notReady("cancelled"), nil)
                group.cancelAll()
                return first
            }
            return (answer.outcome, answer.value, sent.value)
        } catch {
            return (.notReady("\(error)"), nil, sent.value)
        }
    }

    private func run(path: String, database: String, sql: String, needsRow: Bool, sent sentFlag: DoneFlag) async throws -> (outcome: Outcome, value: String?) {
        let channel = try await ClientBootstrap(group: eventLoopGroup)
            .connect(unixDomainSocketPath: path) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            var startup = ByteBuffer()
            let parameters = [("user", HealthProbe.role), ("database", database), ("application_name", "pgfleet-health")]
            StartupCodec.encode(
                .startup(version: .v3_0, parameters: parameters.map { StartupParameter(name: $0.0, value: $0.1) }), into: &startup
            )
            try await outbound.write(startup)

            // Bounded even from our own tenant's server: a tenant superuser may have replaced it.
            var messages = PGMessageBuffer(maxLength: 1 << 20)
            var sentQuery = false
            var firstValue: String?
            var sawRow = false
            for try await chunk in inbound {
                messages.append(chunk)
                while let message = try messages.next() {
                    switch message.type {
                    case BackendMessageType.authentication:
                        // Anything but AuthenticationOk means pg_hba.conf wants a password from us.
                        let request = try AuthenticationRequest(body: message.body)
                        if request != .ok { return (.notReady("authentication required (\(Self.describe(request))): pg_hba.conf lacks the pgfleet peer rule"), nil) }
                    case BackendMessageType.errorResponse:
                        return (.notReady(Self.errorText(message.body)), nil)
                    case BackendMessageType.dataRow:
                        if !sawRow { firstValue = Self.firstColumn(message.body) }
                        sawRow = true
                    case BackendMessageType.readyForQuery:
                        if !sentQuery {
                            var query = ByteBuffer()
                            query.writeMessage(type: FrontendMessageType.query) { $0.writeCString(sql) }
                            sentFlag.set()
                            try await outbound.write(query)
                            sentQuery = true
                        } else {
                            var terminate = ByteBuffer()
                            terminate.writeMessage(type: FrontendMessageType.terminate) { _ in }
                            try? await outbound.write(terminate)
                            return sawRow || !needsRow ? (.ready, firstValue) : (.notReady("the query returned no row"), nil)
                        }
                    default:
                        break  // ParameterStatus, BackendKeyData, RowDescription, CommandComplete, notices
                    }
                }
            }
            return (.notReady("connection closed by the server"), nil)
        }
    }

    static func firstColumn(_ body: ByteBuffer) -> String? {
        var body = body
        guard let count: Int16 = body.readInteger(), count > 0, let length: Int32 = body.readInteger(), length >= 0,
              let bytes = body.readBytes(length: Int(length)) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func errorText(_ body: ByteBuffer) -> String {
        guard let error = try? ErrorResponse(body: body) else { return "a malformed error response" }
        let message = error.message ?? "unknown error"
        let sqlstate = error.sqlstate.map { " (SQLSTATE \($0))" } ?? ""
        return message + sqlstate
    }

    private static func describe(_ request: AuthenticationRequest) -> String {
        switch request {
        case .ok: "ok"
        case .cleartextPassword: "code 3"
        case .md5Password: "code 5"
        case .sasl, .saslContinue, .saslFinal: "SASL"
        case .other(let code, _): "code \(code)"
        }
    }
}
