import NIOCore

/// One regular message: a type byte and the body that followed its length word.
public struct RawMessage: Hashable, Sendable {
    public var type: UInt8
    public var body: ByteBuffer

    public init(type: UInt8, body: ByteBuffer) {
        self.type = type
        self.body = body
    }

    /// Writes the message back out as it came: type, length, body.
    public func encode(into buffer: inout ByteBuffer) {
        buffer.writeMessage(type: self.type) { buffer in
            buffer.writeImmutableBuffer(self.body)
        }
    }
}

public enum MessageFramer {
    /// Frames one regular message (type byte + Int32 length incl. itself). Nil if incomplete; throws on length < 4 or
    /// > maxLength (checked as soon as the 5-byte header is there). `maxLength` bounds the length field, so a body
    /// is at most `maxLength - 4` bytes. The body shares storage with `buffer`; nothing is copied.
    /// Consumes nothing when it returns nil or throws.
    public static func next(_ buffer: inout ByteBuffer, maxLength: Int) throws(WireError) -> RawMessage? {
        let start = buffer.readerIndex
        guard let type = buffer.getInteger(at: start, as: UInt8.self),
            let rawLength = buffer.getInteger(at: start + 1, as: Int32.self)
        else { return nil }
        // Signed, as PostgreSQL reads it, so 0x80000000 and up are rejected as negative.
        let length = Int(rawLength)
        guard length >= 4, length <= maxLength else { throw .badMessageLength(type: type, length: length) }
        guard let body = buffer.getSlice(at: start + 5, length: length - 4) else { return nil }
        buffer.moveReaderIndex(forwardBy: 1 + length)
        return RawMessage(type: type, body: body)
    }
}

/// Type bytes of the backend messages this module decodes or builds.
public enum BackendMessageType {
    public static let authentication: UInt8 = 0x52  // R
    public static let backendKeyData: UInt8 = 0x4B  // K
    public static let errorResponse: UInt8 = 0x45  // E
    public static let noticeResponse: UInt8 = 0x4E  // N
    public static let parameterStatus: UInt8 = 0x53  // S
    public static let readyForQuery: UInt8 = 0x5A  // Z
    public static let negotiateProtocolVersion: UInt8 = 0x76  // v
    public static let commandComplete: UInt8 = 0x43  // C
    public static let dataRow: UInt8 = 0x44  // D
    public static let parseComplete: UInt8 = 0x31  // 1
    public static let bindComplete: UInt8 = 0x32  // 2
    public static let notificationResponse: UInt8 = 0x41  // A
}

/// Type bytes of the frontend messages a proxy looks at.
public enum FrontendMessageType {
    /// PasswordMessage, and also SASLInitialResponse, SASLResponse and GSSResponse: which one depends on context.
    public static let password: UInt8 = 0x70  // p
    public static let terminate: UInt8 = 0x58  // X
    public static let query: UInt8 = 0x51  // Q
    public static let sync: UInt8 = 0x53  // S
    public static let functionCall: UInt8 = 0x46  // F
    public static let parse: UInt8 = 0x50  // P
    public static let bind: UInt8 = 0x42  // B
    public static let execute: UInt8 = 0x45  // E
    public static let copyData: UInt8 = 0x64  // d
    public static let copyDone: UInt8 = 0x63  // c
    public static let copyFail: UInt8 = 0x66  // f
}
