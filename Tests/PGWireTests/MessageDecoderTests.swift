import NIOCore
import NIOTestUtils
import PGWire
import Testing

@Suite struct MessageDecoderTests {
    private func raw(_ type: Character, _ body: [UInt8]) -> RawMessage {
        RawMessage(type: type.asciiValue!, body: ByteBuffer(bytes: body))
    }

    @Test func verifierFramesEveryWayTheBytesCanBeSplit() throws {
        let query = message("Q", cstring("SELECT 1"))
        let terminate = message("X", [])
        let ready = message("Z", [0x49])
        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: [
                (buffer(query), [raw("Q", cstring("SELECT 1"))]),
                (buffer(terminate), [raw("X", [])]),
                (buffer(query + ready + terminate), [raw("Q", cstring("SELECT 1")), raw("Z", [0x49]), raw("X", [])]),
                (buffer(message("d", [UInt8](repeating: 9, count: 60))), [raw("d", [UInt8](repeating: 9, count: 60))]),
            ],
            decoderFactory: { PGMessageDecoder(maxLength: 64) }
        )
    }

    @Test func processorSplitAtEveryByteYieldsTheSameMessages() throws {
        let bytes = message("S", cstring("a") + cstring("b")) + message("X", []) + message("Z", [0x54])
        let expected = [raw("S", cstring("a") + cstring("b")), raw("X", []), raw("Z", [0x54])]
        for cut in 0...bytes.count {
            let processor = NIOSingleStepByteToMessageProcessor(maxLength: 64)
            var seen: [RawMessage] = []
            try processor.process(buffer: buffer(Array(bytes[..<cut]))) { seen.append($0) }
            try processor.process(buffer: buffer(Array(bytes[cut...]))) { seen.append($0) }
            #expect(seen == expected, "cut at \(cut)")
            #expect(processor.unprocessedBytes == 0, "cut at \(cut)")
        }
    }

    @Test func bufferOneByteAtATime() throws {
        let bytes = message("p", cstring("secret")) + message("X", [])
        var messages = PGMessageBuffer(maxLength: 64)
        var seen: [RawMessage] = []
        for byte in bytes {
            messages.append(buffer([byte]))
            while let message = try messages.next() { seen.append(message) }
        }
        #expect(seen == [raw("p", cstring("secret")), raw("X", [])])
        #expect(messages.unprocessedBytes == 0)
    }

    @Test func bufferStopsBetweenMessagesAndHandsOnTheRest() throws {
        let ready = message("Z", [0x49])
        let rest = message("Q", cstring("SELECT 1")) + [0x51, 0, 0]  // a whole message, then part of one
        var messages = PGMessageBuffer(maxLength: 64)
        messages.append(buffer(ready + rest))
        #expect(try messages.next() == raw("Z", [0x49]))
        #expect(messages.takeRemaining().map(bytes(of:)) == rest)
        #expect(messages.unprocessedBytes == 0)
        #expect(messages.takeRemaining() == nil)
    }

    @Test(arguments: [
        ([0, 0, 0, 65] as [UInt8], 65),
        ([0, 0, 0, 3], 3),
        ([0xFF, 0xFF, 0xFF, 0xFF], -1),
        ([0x80, 0x00, 0x00, 0x00], -2_147_483_648),
    ])
    func outOfBoundsLengthIsRefusedOnTheHeader(length: [UInt8], expected: Int) {
        let processor = NIOSingleStepByteToMessageProcessor(maxLength: 64)
        #expect(throws: WireError.badMessageLength(type: 0x44, length: expected)) {
            try processor.process(buffer: buffer([0x44] + length)) { _ in Issue.record("no message expected") }
        }
        var messages = PGMessageBuffer(maxLength: 64)
        messages.append(buffer([0x44] + length))
        #expect(throws: WireError.badMessageLength(type: 0x44, length: expected)) { try messages.next() }
    }

    @Test func lengthAtTheBoundIsFramed() throws {
        var messages = PGMessageBuffer(maxLength: 64)
        messages.append(buffer(message("d", [UInt8](repeating: 1, count: 60))))
        #expect(try messages.next()?.body.readableBytes == 60)
    }

    /// A long-lived reader (the auth lookup connection) must not keep every byte it ever framed.
    @Test func storageStaysBoundedOverManyMessages() throws {
        let row = message("D", [UInt8](repeating: 7, count: 200))
        var messages = PGMessageBuffer(maxLength: 1024)
        for _ in 0..<10_000 {
            // A message and a half per read, so a tail is always carried over.
            messages.append(buffer(row + Array(row.prefix(100))))
            while try messages.next() != nil {}
            messages.append(buffer(Array(row.suffix(from: 100))))
            while try messages.next() != nil {}
        }
        #expect(messages.unprocessedBytes == 0)
        #expect(messages.storageCapacity < 4096)
    }
}
