import NIOCore
import PGWire

// Fixtures are built by hand here, not with the codec, so a test never checks the encoder against itself.

func buffer(_ bytes: [UInt8]) -> ByteBuffer {
    ByteBuffer(bytes: bytes)
}

func be32(_ value: Int32) -> [UInt8] {
    let bits = UInt32(bitPattern: value)
    return [UInt8(bits >> 24 & 0xFF), UInt8(bits >> 16 & 0xFF), UInt8(bits >> 8 & 0xFF), UInt8(bits & 0xFF)]
}

func be32(_ value: UInt32) -> [UInt8] {
    be32(Int32(bitPattern: value))
}

func cstring(_ string: String) -> [UInt8] {
    Array(string.utf8) + [0]
}

/// A startup-phase packet: Int32 length (counting itself) then `payload`.
func startupPacket(_ payload: [UInt8]) -> [UInt8] {
    be32(Int32(payload.count + 4)) + payload
}

/// A StartupMessage: version then name/value pairs then the list terminator.
func startupMessage(major: UInt16 = 3, minor: UInt16 = 0, _ parameters: [(String, String)]) -> [UInt8] {
    startupPacket(be32(UInt32(major) << 16 | UInt32(minor)) + parameters.flatMap { cstring($0.0) + cstring($0.1) } + [0])
}

/// A regular message: type byte, Int32 length counting itself, body.
func message(_ type: Character, _ body: [UInt8]) -> [UInt8] {
    [type.asciiValue!] + be32(Int32(body.count + 4)) + body
}

func bytes(of buffer: ByteBuffer) -> [UInt8] {
    Array(buffer.readableBytesView)
}

/// Frames exactly one message from `bytes` and returns it, for decoding its body.
func frame(_ bytes: [UInt8]) throws -> RawMessage? {
    var buffer = buffer(bytes)
    let message = try MessageFramer.next(&buffer, maxLength: 1 << 20)
    guard buffer.readableBytes == 0 else { return nil }
    return message
}

let sslRequestBytes: [UInt8] = [0x00, 0x00, 0x00, 0x08, 0x04, 0xD2, 0x16, 0x2F]
let gssEncRequestBytes: [UInt8] = [0x00, 0x00, 0x00, 0x08, 0x04, 0xD2, 0x16, 0x30]
let cancelRequestCode: [UInt8] = [0x04, 0xD2, 0x16, 0x2E]
