import FleetCore
import NIOCore
import NIOPosix

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
    func query(_ sql: String, socketDirectory: String, port: Int, needsRow: Bool = true) async -> (outcome: Outcome, value: String?, sent: Bool) {
        let path = "\(socketDirectory)/.s.PGSQL.\(port)"
        let sent = DoneFlag()
        do {
            let answer = try await withThrowingTaskGroup(of: (outcome: Outcome, value: String?).self) { group in
                group.addTask { try await self.run(path: path, sql: sql, needsRow: needsRow, sent: sent) }
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

    private func run(path: String, sql: String, needsRow: Bool, sent sentFlag: DoneFlag) async throws -> (outcome: Outcome, value: String?) {
        let channel = try await ClientBootstrap(group: eventLoopGroup)
            .connect(unixDomainSocketPath: path) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            var startup = ByteBuffer()
            startup.writeInteger(Int32(0))
            startup.writeInteger(Int32(196_608))  // protocol 3.0
            for (key, value) in [("user", HealthProbe.role), ("database", "postgres"), ("application_name", "pgfleet-health")] {
                startup.writeNullTerminatedString(key)
                startup.writeNullTerminatedString(value)
            }
            startup.writeInteger(UInt8(0))
            startup.setInteger(Int32(startup.readableBytes), at: 0)
            try await outbound.write(startup)

            var pending = ByteBuffer()
            var sentQuery = false
            var firstValue: String?
            var sawRow = false
            for try await chunk in inbound {
                pending.writeImmutableBuffer(chunk)
                while let (type, body) = try Self.nextMessage(&pending) {
                    switch type {
                    case UInt8(ascii: "R"):
                        var body = body
                        let code: Int32? = body.readInteger()
                        // Anything but AuthenticationOk means pg_hba.conf wants a password from us.
                        if code != 0 { return (.notReady("authentication required (code \(code ?? -1)): pg_hba.conf lacks the pgfleet peer rule"), nil) }
                    case UInt8(ascii: "E"):
                        return (.notReady(Self.errorText(body)), nil)
                    case UInt8(ascii: "D"):
                        if !sawRow { firstValue = Self.firstColumn(body) }
                        sawRow = true
                    case UInt8(ascii: "Z"):
                        if !sentQuery {
                            var query = ByteBuffer()
                            query.writeInteger(UInt8(ascii: "Q"))
                            query.writeInteger(Int32(4 + sql.utf8.count + 1))
                            query.writeNullTerminatedString(sql)
                            sentFlag.set()
                            try await outbound.write(query)
                            sentQuery = true
                        } else {
                            var terminate = ByteBuffer()
                            terminate.writeInteger(UInt8(ascii: "X"))
                            terminate.writeInteger(Int32(4))
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

    /// Frames one backend message; the length is bounded because even our own tenant's server
    /// is run by a tenant superuser who may have replaced it.
    static func nextMessage(_ buffer: inout ByteBuffer) throws -> (UInt8, ByteBuffer)? {
        guard buffer.readableBytes >= 5,
              let type: UInt8 = buffer.getInteger(at: buffer.readerIndex),
              let length: Int32 = buffer.getInteger(at: buffer.readerIndex + 1) else { return nil }
        guard length >= 4, length <= 1 << 20 else { throw ProbeError.badLength(Int(length)) }
        guard buffer.readableBytes >= 1 + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 5)
        let body = buffer.readSlice(length: Int(length) - 4)!
        buffer.discardReadBytes()
        return (type, body)
    }

    static func errorText(_ body: ByteBuffer) -> String {
        var body = body
        var fields: [UInt8: String] = [:]
        while let code: UInt8 = body.readInteger(), code != 0, let value = body.readNullTerminatedString() {
            fields[code] = value
        }
        let message = fields[UInt8(ascii: "M")] ?? "unknown error"
        let sqlstate = fields[UInt8(ascii: "C")].map { " (SQLSTATE \($0))" } ?? ""
        return message + sqlstate
    }

    enum ProbeError: Error { case badLength(Int) }
}
