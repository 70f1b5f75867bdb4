import FleetCore
import NIOCore
import NIOPosix

/// Proves a postmaster really serves queries: connects to its unix socket as the `pgfleet`
/// role, which pg_hba.conf admits by peer authentication only for the daemon's own OS user (so
/// the check needs no password and opens no door for anyone else), and runs `SELECT 1`.
public struct HealthProbe: Sendable {
    public static let role = "pgfleet"

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
        let path = "\(socketDirectory)/.s.PGSQL.\(port)"
        do {
            return try await withThrowingTaskGroup(of: Outcome.self) { group in
                group.addTask { try await self.run(path: path) }
                group.addTask {
                    try await Task.sleep(for: .nanoseconds(self.timeout.nanoseconds))
                    return .notReady("no answer within \(self.timeout.nanoseconds / 1_000_000) ms")
                }
                let first = try await group.next() ?? .notReady("cancelled")
                group.cancelAll()
                return first
            }
        } catch {
            return .notReady("\(error)")
        }
    }

    private func run(path: String) async throws -> Outcome {
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
            var sawRow = false
            for try await chunk in inbound {
                pending.writeImmutableBuffer(chunk)
                while let (type, body) = try Self.nextMessage(&pending) {
                    switch type {
                    case UInt8(ascii: "R"):
                        var body = body
                        let code: Int32? = body.readInteger()
                        // Anything but AuthenticationOk means pg_hba.conf wants a password from us.
                        if code != 0 { return .notReady("authentication required (code \(code ?? -1)): pg_hba.conf lacks the pgfleet peer rule") }
                    case UInt8(ascii: "E"):
                        return .notReady(Self.errorText(body))
                    case UInt8(ascii: "D"):
                        sawRow = true
                    case UInt8(ascii: "Z"):
                        if !sentQuery {
                            var query = ByteBuffer()
                            query.writeInteger(UInt8(ascii: "Q"))
                            query.writeInteger(Int32(4 + 9))
                            query.writeNullTerminatedString("SELECT 1")
                            try await outbound.write(query)
                            sentQuery = true
                        } else {
                            var terminate = ByteBuffer()
                            terminate.writeInteger(UInt8(ascii: "X"))
                            terminate.writeInteger(Int32(4))
                            try? await outbound.write(terminate)
                            return sawRow ? .ready : .notReady("SELECT 1 returned no row")
                        }
                    default:
                        break  // ParameterStatus, BackendKeyData, RowDescription, CommandComplete, notices
                    }
                }
            }
            return .notReady("connection closed by the server")
        }
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
