import NIOCore
import PGWire
import Testing

@Suite struct MessageFramerTests {
    @Test func framesOneMessage() throws {
        var buffer = buffer(message("Q", cstring("SELECT 1")))
        let framed = try MessageFramer.next(&buffer, maxLength: 1024)
        #expect(framed == RawMessage(type: FrontendMessageType.query, body: ByteBuffer(bytes: cstring("SELECT 1"))))
        #expect(buffer.readableBytes == 0)
    }

    @Test func emptyBody() throws {
        var buffer = buffer([0x58, 0, 0, 0, 4])
        #expect(try MessageFramer.next(&buffer, maxLength: 4) == RawMessage(type: FrontendMessageType.terminate, body: ByteBuffer()))
        #expect(buffer.readableBytes == 0)
    }

    @Test func everyStrictPrefixNeedsMoreAndConsumesNothing() throws {
        let bytes = message("p", cstring("secret"))
        for count in 0..<bytes.count {
            var buffer = buffer(Array(bytes.prefix(count)))
            #expect(try MessageFramer.next(&buffer, maxLength: 1024) == nil, "prefix of \(count) bytes")
            #expect(buffer.readableBytes == count, "prefix of \(count) bytes")
        }
    }

    @Test func messagesBackToBack() throws {
        var buffer = buffer(message("S", cstring("a") + cstring("b")) + message("Z", [0x49]) + [0x45, 0, 0])
        #expect(try MessageFramer.next(&buffer, maxLength: 64)?.type == BackendMessageType.parameterStatus)
        #expect(try MessageFramer.next(&buffer, maxLength: 64) == RawMessage(type: 0x5A, body: ByteBuffer(bytes: [0x49])))
        #expect(try MessageFramer.next(&buffer, maxLength: 64) == nil)
        #expect(buffer.readableBytes == 3)
    }

    @Test func lengthEqualToTheBoundIsFramed() throws {
        var buffer = buffer(message("d", [UInt8](repeating: 7, count: 96)))
        #expect(try MessageFramer.next(&buffer, maxLength: 100)?.body.readableBytes == 96)
    }

    /// Each of these is refused with only the 5-byte header present: no waiting for the body.
    @Test(arguments: [
        ([0, 0, 0, 0] as [UInt8], 0),
        ([0, 0, 0, 3], 3),
        ([0, 0, 0, 101], 101),
        ([0x7F, 0xFF, 0xFF, 0xFF], 2_147_483_647),
        ([0x80, 0x00, 0x00, 0x00], -2_147_483_648),
        ([0xFF, 0xFF, 0xFF, 0xFF], -1),
    ])
    func outOfBoundsLengthThrowsOnTheHeader(length: [UInt8], expected: Int) {
        var buffer = buffer([0x44] + length)
        #expect(throws: WireError.badMessageLength(type: 0x44, length: expected)) {
            try MessageFramer.next(&buffer, maxLength: 100)
        }
        #expect(buffer.readableBytes == 5)
    }

    @Test func reEncodesToTheSameBytes() throws {
        let bytes = message("E", [0x53] + cstring("ERROR") + [0])
        var buffer = buffer(bytes)
        let framed = try #require(try MessageFramer.next(&buffer, maxLength: 1024))
        var out = ByteBuffer()
        framed.encode(into: &out)
        #expect(Array(out.readableBytesView) == bytes)
    }

    @Test func errorDescriptionNamesTheType() {
        #expect(WireError.badMessageLength(type: 0x51, length: 2).description == "message of type 'Q' has invalid length 2")
        #expect(WireError.badMessageLength(type: 0, length: 2).description == "message of type 0x0 has invalid length 2")
    }
}
