import NIOCore

/// A protocol version as sent in a StartupMessage: the major version in the high 16 bits, the minor in the low.
/// The special request codes (SSLRequest and friends) are "versions" 1234.5678 and up.
public struct ProtocolVersion: Hashable, Sendable, CustomStringConvertible {
    public var major: UInt16
    public var minor: UInt16

    public static let v3_0 = ProtocolVersion(major: 3, minor: 0)
    public static let v3_2 = ProtocolVersion(major: 3, minor: 2)

    public init(major: UInt16, minor: UInt16) {
        self.major = major
        self.minor = minor
    }

    /// The version from its 32-bit wire form.
    public init(code: UInt32) {
        self.init(major: UInt16(truncatingIfNeeded: code >> 16), minor: UInt16(truncatingIfNeeded: code))
    }

    /// The 32-bit wire form.
    public var code: UInt32 { UInt32(self.major) << 16 | UInt32(self.minor) }

    public var description: String { "\(self.major).\(self.minor)" }
}

/// One `name=value` pair of a StartupMessage. Names beginning `_pq_.` are protocol options.
public struct StartupParameter: Hashable, Sendable {
    public var name: String
    public var value: String

    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// The first packet a client sends, which has a length but no type byte.
public enum StartupPacket: Hashable, Sendable {
    /// Code 80877103, length exactly 8.
    case sslRequest
    /// Code 80877104, length exactly 8.
    case gssEncRequest
    /// Code 80877102; the key is 4 bytes in protocol 3.0 and up to 256 bytes in 3.2.
    case cancelRequest(processID: Int32, secretKey: [UInt8])
    /// Major version 3, any minor; parameters in the order sent.
    case startup(version: ProtocolVersion, parameters: [StartupParameter])
}

public enum StartupLimits {
    /// Length word plus request code.
    public static let minLength = 8
    /// PostgreSQL's own MAX_STARTUP_PACKET_LENGTH, so the proxy refuses nothing PostgreSQL would take.
    public static let maxLength = 10_000
}

public enum StartupCodec {
    static let cancelRequestCode: UInt32 = 80_877_102
    static let sslRequestCode: UInt32 = 80_877_103
    static let gssEncRequestCode: UInt32 = 80_877_104

    /// A cancel key (and a BackendKeyData key) is 4 bytes in protocol 3.0; 3.2 allows up to 256.
    static let secretKeyLengths = 4...256

    /// Decodes one startup-phase packet from the front of `buffer`, consuming it. Returns nil when more bytes are
    /// needed. Throws as soon as the 4-byte length is known to be out of bounds (do not wait for 2^31 bytes).
    /// Consumes nothing when it returns nil or throws.
    public static func decode(_ buffer: inout ByteBuffer) throws(WireError) -> StartupPacket? {
        // Signed, as PostgreSQL reads it: 0x80000000 and up are negative and so too short.
        guard let rawLength = buffer.getInteger(at: buffer.readerIndex, as: Int32.self) else { return nil }
        let length = Int(rawLength)
        guard length >= StartupLimits.minLength else { throw .lengthTooShort(length) }
        guard length <= StartupLimits.maxLength else { throw .lengthTooLong(length) }
        guard var packet = buffer.getSlice(at: buffer.readerIndex + 4, length: length - 4) else { return nil }
        let decoded = try self.decodePacket(&packet, length: length)
        buffer.moveReaderIndex(forwardBy: length)
        return decoded
    }

    /// `packet` is everything after the length word; `length` counts the length word too.
    private static func decodePacket(_ packet: inout ByteBuffer, length: Int) throws(WireError) -> StartupPacket {
        guard let code = packet.readInteger(as: UInt32.self) else {
            throw .malformed("startup packet has no protocol version")
        }
        switch code {
        case self.sslRequestCode, self.gssEncRequestCode:
            // With any other length it is not the request it claims to be.
            guard length == 8 else { throw .unsupportedProtocol(ProtocolVersion(code: code)) }
            return code == self.sslRequestCode ? .sslRequest : .gssEncRequest
        case self.cancelRequestCode:
            let processID = try packet.readInt32("cancel request process ID")
            guard self.secretKeyLengths.contains(packet.readableBytes),
                let secretKey = packet.readBytes(length: packet.readableBytes)
            else {
                throw .malformed("cancel request key must be 4 to 256 bytes")
            }
            return .cancelRequest(processID: processID, secretKey: secretKey)
        default:
            let version = ProtocolVersion(code: code)
            guard version.major == 3 else { throw .unsupportedProtocol(version) }
            return .startup(version: version, parameters: try self.decodeParameters(&packet))
        }
    }

    private static func decodeParameters(_ packet: inout ByteBuffer) throws(WireError) -> [StartupParameter] {
        var parameters: [StartupParameter] = []
        // Compared as bytes: Swift's String equality is canonical equivalence, PostgreSQL's is bytewise.
        var names = Set<[UInt8]>()
        while true {
            let name = try packet.readCString("startup parameter name")
            if name.isEmpty { break }  // the list's terminator
            let value = try packet.readCString("startup parameter value")
            guard names.insert(Array(name.utf8)).inserted else {
                throw .malformed("duplicate startup parameter")
            }
            parameters.append(StartupParameter(name: name, value: value))
        }
        try packet.expectEnd(of: "startup parameters")
        // PostgreSQL treats an empty user as none at all.
        guard parameters.contains(where: { $0.name.utf8.elementsEqual("user".utf8) && !$0.value.isEmpty }) else {
            throw .malformed("startup packet has no user")
        }
        return parameters
    }

    public static func encode(_ packet: StartupPacket, into buffer: inout ByteBuffer) {
        buffer.writeLengthPrefixed { buffer in
            switch packet {
            case .sslRequest:
                buffer.writeInteger(self.sslRequestCode)
            case .gssEncRequest:
                buffer.writeInteger(self.gssEncRequestCode)
            case .cancelRequest(let processID, let secretKey):
                buffer.writeInteger(self.cancelRequestCode)
                buffer.writeInteger(processID)
                buffer.writeBytes(secretKey)
            case .startup(let version, let parameters):
                buffer.writeInteger(version.code)
                for parameter in parameters {
                    buffer.writeCString(parameter.name)
                    buffer.writeCString(parameter.value)
                }
                buffer.writeInteger(UInt8(0))
            }
        }
    }

    /// True when the first byte is 0x16 (a TLS ClientHello: PostgreSQL 17's sslnegotiation=direct).
    /// No startup packet can begin so: its length would be at least 0x16000000, far above the bound.
    public static func looksLikeTLS(_ buffer: ByteBuffer) -> Bool {
        buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) == 0x16
    }
}
