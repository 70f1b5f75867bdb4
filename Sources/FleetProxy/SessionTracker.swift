import NIOCore
import PGWire

/// Follows message boundaries in one direction of an established session, buffer by buffer,
/// without copying or holding the bytes: it reads only the 5-byte headers (and the bodies of the
/// few small messages asked for), however the messages are split across reads.
struct MessageScanner {
    /// Bodies of these types are collected (up to `captureLimit` bytes) and reported.
    let captureTypes: Set<UInt8>
    static let captureLimit = 4096

    private var header: [UInt8] = []
    private var type: UInt8 = 0
    /// Body bytes of the current message still to come.
    private var remaining = 0
    private var capture: [UInt8]?
    /// A length below 4: the stream is not the protocol any more; nothing more is reported.
    private(set) var broken = false

    init(captureTypes: Set<UInt8> = []) {
        self.captureTypes = captureTypes
    }

    /// Scans `buffer`. `onStart(type, offset)` is called where a message starts (its offset in
    /// the readable bytes of `buffer`); returning false stops the scan there. `onComplete(type,
    /// body)` is called when a message ends, with the body for `captureTypes` (nil when longer
    /// than the limit) and nil otherwise.
    mutating func scan(
        _ buffer: ByteBuffer, onStart: (UInt8, Int) -> Bool = { _, _ in true }, onComplete: (UInt8, [UInt8]?) -> Void
    ) {
        let view = buffer.readableBytesView
        var index = view.startIndex
        while index < view.endIndex, !broken {
            if remaining == 0 && header.isEmpty {
                guard onStart(view[index], index - view.startIndex) else { return }
            }
            if header.count < 5 {
                let take = min(5 - header.count, view.endIndex - index)
                header.append(contentsOf: view[index..<index + take])
                index += take
                guard header.count == 5 else { return }
                type = header[0]
                let length = Int(Int32(bitPattern: UInt32(header[1]) << 24 | UInt32(header[2]) << 16 | UInt32(header[3]) << 8 | UInt32(header[4])))
                guard length >= 4 else {
                    broken = true
                    return
                }
                remaining = length - 4
                capture = captureTypes.contains(type) && remaining <= Self.captureLimit ? [] : nil
                capture?.reserveCapacity(remaining)
            }
            let take = min(remaining, view.endIndex - index)
            if take > 0 {
                capture?.append(contentsOf: view[index..<index + take])
                remaining -= take
                index += take
            }
            if remaining == 0 {
                onComplete(type, capture)
                header.removeAll(keepingCapacity: true)
                capture = nil
            }
        }
    }
}

/// What the proxy knows of a pooled session's protocol state, so that a client's server
/// connection goes back to the pool only when it is idle: every query and Sync answered by a
/// ReadyForQuery, no transaction open, nothing half-sent. Anything unclear means "not reusable".
struct SessionTracker {
    private var client = MessageScanner()
    private var server = MessageScanner(captureTypes: [BackendMessageType.readyForQuery, BackendMessageType.parameterStatus])
    /// Queries, Syncs and function calls sent whose ReadyForQuery has not come yet.
    private(set) var awaitingReady = 0
    /// Extended-protocol messages after the last Sync: an unfinished batch.
    private(set) var unsynced = 0
    private(set) var transactionStatus = ReadyForQuery.idle
    /// The client sent Terminate, which stayed with the proxy.
    private(set) var terminated = false
    /// The client sent Terminate while the server was busy: it went on, the server ends the session.
    private(set) var terminateForwarded = false
    /// ParameterStatus values as the client last saw them, in first-seen order.
    private(set) var parameters: [ParameterStatus]

    init(parameters: [ParameterStatus]) {
        self.parameters = parameters
    }

    var isIdle: Bool {
        !client.broken && !server.broken && !terminateForwarded && awaitingReady == 0 && unsynced == 0 && transactionStatus == ReadyForQuery.idle
    }

    /// Client bytes on their way to the server: how many of them to pass on. A Terminate and
    /// anything after it stay with the proxy when the session is idle (the server connection
    /// stays open for the next client); otherwise everything goes, and the server ends the session.
    mutating func clientSent(_ buffer: ByteBuffer) -> Int {
        if terminated { return 0 }
        if terminateForwarded { return buffer.readableBytes }
        var forward = buffer.readableBytes
        var awaiting = awaitingReady
        var unsynced = unsynced
        var terminated = false
        client.scan(buffer, onStart: { type, offset in
            switch type {
            case FrontendMessageType.terminate:
                terminated = true
                if awaiting == 0 && unsynced == 0 { forward = offset }
                return false
            case FrontendMessageType.query, FrontendMessageType.sync, FrontendMessageType.functionCall:
                awaiting += 1
                unsynced = 0
            case FrontendMessageType.copyData, FrontendMessageType.copyDone, FrontendMessageType.copyFail:
                break
            default:
                unsynced += 1
            }
            return true
        }, onComplete: { _, _ in })
        awaitingReady = awaiting
        self.unsynced = unsynced
        if terminated {
            if forward == buffer.readableBytes { terminateForwarded = true } else { self.terminated = true }
        }
        return forward
    }

    mutating func serverSent(_ buffer: ByteBuffer) {
        var awaiting = awaitingReady
        var status = transactionStatus
        var parameters = parameters
        server.scan(buffer) { type, body in
            switch type {
            case BackendMessageType.readyForQuery:
                awaiting -= 1
                status = body?.first ?? 0
            case BackendMessageType.parameterStatus:
                guard let body, let parameter = try? ParameterStatus(body: ByteBuffer(bytes: body)) else { return }
                if let index = parameters.firstIndex(where: { $0.name == parameter.name }) {
                    parameters[index] = parameter
                } else {
                    parameters.append(parameter)
                }
            default:
                break
            }
        }
        awaitingReady = awaiting
        transactionStatus = status
        self.parameters = parameters
    }
}
