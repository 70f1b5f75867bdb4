import NIOCore

// Bodies are what `MessageFramer` returns: already bounded by the caller's maximum length, with the type byte and
// length word removed. Every decoder consumes its whole body and rejects anything left over.

/// Backend 'R'.
public enum AuthenticationRequest: Hashable, Sendable {
    case ok
    case cleartextPassword
    /// The salt is 4 bytes.
    case md5Password(salt: [UInt8])
    /// Mechanisms in the server's order of preference; at least one.
    case sasl(mechanisms: [String])
    case saslContinue([UInt8])
    case saslFinal([UInt8])
    /// Kerberos, SCM credentials, GSSAPI, SSPI and anything newer: passed on, not understood.
    case other(code: Int32, body: [UInt8])

    static let okCode: Int32 = 0
    static let cleartextPasswordCode: Int32 = 3
    static let md5PasswordCode: Int32 = 5
    static let saslCode: Int32 = 10
    static let saslContinueCode: Int32 = 11
    static let saslFinalCode: Int32 = 12

    public init(body: ByteBuffer) throws(WireError) {
        var body = body
        let code = try body.readInt32("authentication request code")
        switch code {
        case Self.okCode:
            self = .ok
        case Self.cleartextPasswordCode:
            self = .cleartextPassword
        case Self.md5PasswordCode:
            guard let salt = body.readBytes(length: 4) else { throw .malformed("MD5 salt is truncated") }
            self = .md5Password(salt: salt)
        case Self.saslCode:
            var mechanisms: [String] = []
            while true {
                let mechanism = try body.readCString("SASL mechanism name")
                if mechanism.isEmpty { break }  // the list's terminator
                mechanisms.append(mechanism)
            }
            guard !mechanisms.isEmpty else { throw .malformed("SASL mechanism list is empty") }
            self = .sasl(mechanisms: mechanisms)
        case Self.saslContinueCode:
            self = .saslContinue(body.readBytes(length: body.readableBytes) ?? [])
        case Self.saslFinalCode:
            self = .saslFinal(body.readBytes(length: body.readableBytes) ?? [])
        default:
            self = .other(code: code, body: body.readBytes(length: body.readableBytes) ?? [])
        }
        try body.expectEnd(of: "authentication request")
    }

    /// The full message, including 'R' and the length.
    public func encode(into buffer: inout ByteBuffer) {
        buffer.writeMessage(type: BackendMessageType.authentication) { buffer in
            switch self {
            case .ok:
                buffer.writeInteger(Self.okCode)
            case .cleartextPassword:
                buffer.writeInteger(Self.cleartextPasswordCode)
            case .md5Password(let salt):
                buffer.writeInteger(Self.md5PasswordCode)
                buffer.writeBytes(salt)
            case .sasl(let mechanisms):
                buffer.writeInteger(Self.saslCode)
                for mechanism in mechanisms { buffer.writeCString(mechanism) }
                buffer.writeInteger(UInt8(0))
            case .saslContinue(let data):
                buffer.writeInteger(Self.saslContinueCode)
                buffer.writeBytes(data)
            case .saslFinal(let data):
                buffer.writeInteger(Self.saslFinalCode)
                buffer.writeBytes(data)
            case .other(let code, let body):
                buffer.writeInteger(code)
                buffer.writeBytes(body)
            }
        }
    }
}

/// Backend 'K': what a client needs to cancel a query. The key is 4 bytes in protocol 3.0, up to 256 in 3.2.
public struct BackendKeyData: Hashable, Sendable {
    public var processID: Int32
    public var secretKey: [UInt8]

    public init(processID: Int32, secretKey: [UInt8]) {
        self.processID = processID
        self.secretKey = secretKey
    }

    public init(body: ByteBuffer) throws(WireError) {
        var body = body
        self.processID = try body.readInt32("BackendKeyData process ID")
        guard StartupCodec.secretKeyLengths.contains(body.readableBytes),
            let secretKey = body.readBytes(length: body.readableBytes)
        else {
            throw .malformed("BackendKeyData key must be 4 to 256 bytes")
        }
        self.secretKey = secretKey
    }

    public func encode(into buffer: inout ByteBuffer) {
        buffer.writeMessage(type: BackendMessageType.backendKeyData) { buffer in
            buffer.writeInteger(self.processID)
            buffer.writeBytes(self.secretKey)
        }
    }
}

/// Backend 'E'; NoticeResponse 'N' has the same body.
public struct ErrorResponse: Hashable, Sendable {
    public enum Field {
        public static let severity: UInt8 = 0x53  // S, localized
        public static let severityNonLocalized: UInt8 = 0x56  // V
        public static let sqlstate: UInt8 = 0x43  // C
        public static let message: UInt8 = 0x4D  // M
        public static let detail: UInt8 = 0x44  // D
        public static let hint: UInt8 = 0x48  // H
    }

    /// 'S' severity, 'V', 'C' sqlstate, 'M' message, 'D' detail, 'H' hint …
    public var fields: [UInt8: String]

    public init(fields: [UInt8: String]) {
        self.fields = fields
    }

    /// Sets both 'S' and 'V' to `severity`.
    public init(severity: String, sqlstate: String, message: String, detail: String? = nil, hint: String? = nil) {
        self.fields = [
            Field.severity: severity,
            Field.severityNonLocalized: severity,
            Field.sqlstate: sqlstate,
            Field.message: message,
        ]
        if let detail { self.fields[Field.detail] = detail }
        if let hint { self.fields[Field.hint] = hint }
    }

    public init(body: ByteBuffer) throws(WireError) {
        var body = body
        var fields: [UInt8: String] = [:]
        while true {
            guard let code = body.readInteger(as: UInt8.self) else {
                throw .malformed("error fields have no terminator")
            }
            if code == 0 { break }
            let value = try body.readCString("error field")
            guard fields.updateValue(value, forKey: code) == nil else {
                throw .malformed("duplicate error field")
            }
        }
        try body.expectEnd(of: "error fields")
        self.fields = fields
    }

    public var severity: String? { self.fields[Field.severityNonLocalized] ?? self.fields[Field.severity] }
    public var sqlstate: String? { self.fields[Field.sqlstate] }
    public var message: String? { self.fields[Field.message] }

    /// The full message, 'E' unless told otherwise (pass `BackendMessageType.noticeResponse` for a notice).
    /// Fields go out in PostgreSQL's order (S, V, C, M, then by code) so the bytes are deterministic.
    public func encode(into buffer: inout ByteBuffer, type: UInt8 = BackendMessageType.errorResponse) {
        let leading = [Field.severity, Field.severityNonLocalized, Field.sqlstate, Field.message]
        let rest = self.fields.keys.filter { !leading.contains($0) }.sorted()
        buffer.writeMessage(type: type) { buffer in
            // Code 0 would end the list early on the peer's side.
            for code in leading + rest where code != 0 {
                guard let value = self.fields[code] else { continue }
                buffer.writeInteger(code)
                buffer.writeCString(value)
            }
            buffer.writeInteger(UInt8(0))
        }
    }
}

/// Backend 'S'.
public struct ParameterStatus: Hashable, Sendable {
    public var name: String
    public var value: String

    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }

    public init(body: ByteBuffer) throws(WireError) {
        var body = body
        self.name = try body.readCString("parameter status name")
        guard !self.name.isEmpty else { throw .malformed("parameter status name is empty") }
        self.value = try body.readCString("parameter status value")
        try body.expectEnd(of: "parameter status")
    }

    public func encode(into buffer: inout ByteBuffer) {
        buffer.writeMessage(type: BackendMessageType.parameterStatus) { buffer in
            buffer.writeCString(self.name)
            buffer.writeCString(self.value)
        }
    }
}

/// Backend 'Z'.
public enum ReadyForQuery {
    public static let idle: UInt8 = 0x49  // I
    public static let inTransaction: UInt8 = 0x54  // T
    public static let failedTransaction: UInt8 = 0x45  // E

    /// The transaction status: 'I', 'T' or 'E'.
    public static func status(body: ByteBuffer) throws(WireError) -> UInt8 {
        guard body.readableBytes == 1, let status = body.getInteger(at: body.readerIndex, as: UInt8.self),
            status == Self.idle || status == Self.inTransaction || status == Self.failedTransaction
        else {
            throw .malformed("ReadyForQuery status must be one of 'I', 'T', 'E'")
        }
        return status
    }

    public static func encode(status: UInt8, into buffer: inout ByteBuffer) {
        buffer.writeMessage(type: BackendMessageType.readyForQuery) { buffer in
            buffer.writeInteger(status)
        }
    }
}

/// Backend 'v': the newest minor version of the client's major version that the server supports, and the
/// `_pq_.` options it did not recognise.
public struct NegotiateProtocolVersion: Hashable, Sendable {
    public var newestMinor: Int32
    public var unrecognizedOptions: [String]

    public init(newestMinor: Int32, unrecognizedOptions: [String]) {
        self.newestMinor = newestMinor
        self.unrecognizedOptions = unrecognizedOptions
    }

    public init(body: ByteBuffer) throws(WireError) {
        var body = body
        self.newestMinor = try body.readInt32("NegotiateProtocolVersion minor version")
        let count = try body.readInt32("NegotiateProtocolVersion option count")
        // Each option takes at least its terminator, so a count beyond the bytes left is a lie: refuse it before
        // looping on it.
        guard count >= 0, Int(count) <= body.readableBytes else {
            throw .malformed("NegotiateProtocolVersion option count does not fit the message")
        }
        var options: [String] = []
        options.reserveCapacity(Int(count))
        for _ in 0..<count {
            options.append(try body.readCString("NegotiateProtocolVersion option"))
        }
        try body.expectEnd(of: "NegotiateProtocolVersion options")
        self.unrecognizedOptions = options
    }

    public func encode(into buffer: inout ByteBuffer) {
        buffer.writeMessage(type: BackendMessageType.negotiateProtocolVersion) { buffer in
            buffer.writeInteger(self.newestMinor)
            buffer.writeInteger(Int32(self.unrecognizedOptions.count))
            for option in self.unrecognizedOptions { buffer.writeCString(option) }
        }
    }
}
