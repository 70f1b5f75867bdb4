import NIOCore
import PGWire

/// Follows message boundaries in one direction of an established session, buffer by buffer,
/// without copying or holding the bytes: it reads only the 5-byte headers, the last byte of each
/// body, and the whole body of one small message type if asked to, however the messages are
/// split across reads. It runs on every buffer of a pooled session, so it allocates nothing else.
struct MessageScanner {
    /// Bodies of this type are collected (up to `captureLimit` bytes) and reported.
    let captureType: UInt8?
    static let captureLimit = 4096

    private var headerCount = 0
    private var headerLength: UInt32 = 0
    private var type: UInt8 = 0
    /// Body bytes of the current message still to come.
    private var remaining = 0
    private var lastByte: UInt8 = 0
    private var capture: [UInt8]?
    /// A length below 4: the stream is not the protocol any more; nothing more is reported.
    private(set) var broken = false

    init(captureType: UInt8? = nil) {
        self.captureType = captureType
    }

    /// Scans `buffer`. `onStart(type, offset)` is called where a message starts (its offset in
    /// the readable bytes of `buffer`); returning false stops the scan there. `onComplete(type,
    /// lastByte, body)` is called when a message ends, with its last body byte (0 if empty) and
    /// its body for `captureType` (nil when longer than the limit, and for other types).
    mutating func scan(
        _ buffer: ByteBuffer, onStart: (UInt8, Int) -> Bool = { _, _ in true }, onComplete: (UInt8, UInt8, [UInt8]?) -> Void
    ) {
        buffer.withUnsafeReadableBytes { bytes in
            var index = 0
            while index < bytes.count, !broken {
                if headerCount == 0 {
                    guard onStart(bytes[index], index) else { return }
                    type = bytes[index]
                    headerLength = 0
                    headerCount = 1
                    index += 1
                    continue
                }
                if headerCount < 5 {
                    headerLength = headerLength << 8 | UInt32(bytes[index])
                    headerCount += 1
                    index += 1
                    guard headerCount == 5 else { continue }
                    let length = Int(Int32(bitPattern: headerLength))
                    guard length >= 4 else {
                        broken = true
                        return
                    }
                    remaining = length - 4
                    lastByte = 0
                    capture = type == captureType && remaining <= Self.captureLimit ? [] : nil
                }
                let take = min(remaining, bytes.count - index)
                if take > 0 {
                    capture?.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[index..<index + take]))
                    lastByte = bytes[index + take - 1]
                    remaining -= take
                    index += take
                }
                if remaining == 0 {
                    onComplete(type, lastByte, capture)
                    headerCount = 0
                    capture = nil
                }
            }
        }
    }
}

/// What the proxy knows of a pooled session's protocol state, so that a client's server
/// connection goes back to the pool only when it is idle: every query and Sync answered by a
/// ReadyForQuery, no transaction open, nothing half-sent. Anything unclear means "not reusable".
struct SessionTracker {
    private var client = MessageScanner()
    private var server = MessageScanner(captureType: BackendMessageType.parameterStatus)
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
        }, onComplete: { _, _, _ in })
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
        server.scan(buffer) { type, lastByte, body in
            switch type {
            case BackendMessageType.readyForQuery:
                awaiting -= 1
                status = lastByte
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
