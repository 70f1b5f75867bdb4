/// Why bytes from a peer were refused. Messages never quote the peer's bytes: the caller decides what, if
/// anything, a client is told, and peer text has no place in a log line or metric label.
public enum WireError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A startup-phase packet whose length (read as a signed Int32, including itself) is below `StartupLimits.minLength`.
    case lengthTooShort(Int)
    /// A startup-phase packet whose length is above `StartupLimits.maxLength`.
    case lengthTooLong(Int)
    /// A regular message whose length field is below 4 or above the caller's bound.
    case badMessageLength(type: UInt8, length: Int)
    /// A startup packet with a protocol major version other than 3, or a special request code with the wrong length.
    case unsupportedProtocol(ProtocolVersion)
    /// Anything else that does not follow the protocol.
    case malformed(String)

    public var description: String {
        switch self {
        case .lengthTooShort(let length):
            "startup packet length \(length) is below \(StartupLimits.minLength)"
        case .lengthTooLong(let length):
            "startup packet length \(length) is above \(StartupLimits.maxLength)"
        case .badMessageLength(let type, let length):
            "message of type \(Self.describe(type: type)) has invalid length \(length)"
        case .unsupportedProtocol(let version):
            "unsupported frontend protocol \(version)"
        case .malformed(let reason):
            reason
        }
    }

    private static func describe(type: UInt8) -> String {
        // Printable ASCII as the letter the protocol documentation uses, anything else as a number.
        (0x21...0x7E).contains(type) ? "'\(Character(Unicode.Scalar(type)))'" : "0x\(String(type, radix: 16))"
    }
}
