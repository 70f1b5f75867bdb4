import NIOCore

/// The one way to turn a peer's byte stream into regular messages (type byte + Int32 length), each
/// framed with the hard bound `maxLength` on its length field (so a body is at most `maxLength - 4`
/// bytes). A length below 4 or above the bound throws `WireError.badMessageLength` as soon as the
/// 5-byte header is there, so a peer can never make us wait for (or buffer) more than one bounded
/// message.
///
/// Two ways to use it:
/// - `PGMessageBuffer` (a handler that reads a phase of messages, then stops or hands the rest on):
///   ```swift
///   private var messages = PGMessageBuffer(maxLength: ProxyConfiguration.handshakeMessageLimit)
///   func channelRead(context: ChannelHandlerContext, data: NIOAny) {
///       messages.append(unwrapInboundIn(data))
///       do {
///           while !finished, let message = try messages.next() { try handle(message) }
///       } catch { /* close */ }
///       // after switching to a raw pump: `if let rest = messages.takeRemaining() { forward(rest) }`
///   }
///   ```
/// - `PGMessageDecoder` in a `NIOSingleStepByteToMessageProcessor` (every message to one closure) or
///   in a `ByteToMessageHandler` (messages as `RawMessage` down the pipeline).
///
/// Either way consumed bytes are discarded, so what stays buffered is one incomplete message at most
/// (plus the rest of the read that brought it).
public struct PGMessageDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = RawMessage

    /// The largest length field accepted (it counts itself, not the type byte).
    public let maxLength: Int

    public init(maxLength: Int) {
        precondition(maxLength >= 4, "a message length counts its own 4 bytes")
        self.maxLength = maxLength
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> RawMessage? {
        try MessageFramer.next(&buffer, maxLength: maxLength)
    }

    /// At EOF an incomplete message stays in the buffer: the caller's `ByteToMessageHandler` reports it as
    /// left-over data, and a processor's owner can see it in `unprocessedBytes`.
    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> RawMessage? {
        try decode(buffer: &buffer)
    }
}

extension NIOSingleStepByteToMessageProcessor where Decoder == PGMessageDecoder {
    /// A processor framing messages of at most `maxLength` (see `PGMessageDecoder`).
    public convenience init(maxLength: Int) {
        self.init(PGMessageDecoder(maxLength: maxLength))
    }
}

/// Accumulates a peer's bytes and frames them one message at a time, so a handler can stop between
/// messages (a login that is over, a handshake that switches to a byte pump) and take the rest as it
/// came. Bytes already framed are dropped: the storage holds at most the unread tail.
public struct PGMessageBuffer {
    private var buffer: ByteBuffer?
    public let maxLength: Int

    public init(maxLength: Int) {
        precondition(maxLength >= 4, "a message length counts its own 4 bytes")
        self.maxLength = maxLength
    }

    /// Adds bytes read from the peer.
    public mutating func append(_ bytes: ByteBuffer) {
        var bytes = bytes
        if buffer == nil || buffer!.readableBytes == 0 {
            buffer = bytes
        } else {
            buffer!.writeBuffer(&bytes)
        }
    }

    /// The next complete message, nil when more bytes are needed. Throws on a length out of bounds; the
    /// buffer is then left as it was (a handler closes the connection).
    public mutating func next() throws(WireError) -> RawMessage? {
        guard var bytes = buffer else { return nil }
        buffer = nil  // so `bytes` is the only reference and the framing below does not copy
        defer { buffer = bytes }
        guard let message = try MessageFramer.next(&bytes, maxLength: maxLength) else {
            reclaim(&bytes)
            return nil
        }
        return message
    }

    /// Everything not yet framed, as the peer sent it; the buffer is empty afterwards. Nil if nothing is left.
    public mutating func takeRemaining() -> ByteBuffer? {
        defer { buffer = nil }
        guard let rest = buffer, rest.readableBytes > 0 else { return nil }
        return rest
    }

    /// Bytes received and not yet framed.
    public var unprocessedBytes: Int { buffer?.readableBytes ?? 0 }

    /// The bytes of storage held (for tests that the buffer stays bounded).
    public var storageCapacity: Int { buffer?.capacity ?? 0 }

    private func reclaim(_ bytes: inout ByteBuffer) {
        // Waiting for more: the read part is garbage. Drop it all when nothing is left, or move the
        // incomplete tail (bounded by maxLength) to the front.
        if bytes.readableBytes == 0 {
            bytes = ByteBuffer()
        } else if bytes.readerIndex > 0 {
            bytes.discardReadBytes()
        }
    }
}
