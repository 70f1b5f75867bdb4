import NIOCore
import PGWire
import Testing

/// Decodes from `bytes`, returning the packet and how many bytes were consumed.
private func decode(_ bytes: [UInt8]) throws(WireError) -> (packet: StartupPacket?, consumed: Int) {
    var buffer = buffer(bytes)
    let packet = try StartupCodec.decode(&buffer)
    return (packet, bytes.count - buffer.readableBytes)
}

/// Expects decoding to throw `expected` and to consume nothing.
private func expectRefused(
    _ bytes: [UInt8], _ expected: WireError, sourceLocation: SourceLocation = #_sourceLocation
) {
    var buffer = buffer(bytes)
    #expect(throws: expected, sourceLocation: sourceLocation) { try StartupCodec.decode(&buffer) }
    #expect(buffer.readableBytes == bytes.count, "consumed bytes on error", sourceLocation: sourceLocation)
}

/// Expects decoding to throw `.malformed` (with any reason).
private func expectMalformed(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) {
    var buffer = buffer(bytes)
    let error = #expect(throws: WireError.self, sourceLocation: sourceLocation) { try StartupCodec.decode(&buffer) }
    if case .malformed = error {} else {
        Issue.record("expected .malformed, got \(String(describing: error))", sourceLocation: sourceLocation)
    }
}

@Suite struct StartupLengthBounds {
    @Test func sevenIsTooShortWithOnlyTheLengthPresent() {
        expectRefused(be32(Int32(7)), .lengthTooShort(7))
    }

    @Test func zeroAndNegativeAreTooShort() {
        expectRefused(be32(Int32(0)), .lengthTooShort(0))
        expectRefused([0xFF, 0xFF, 0xFF, 0xFF], .lengthTooShort(-1))
    }

    /// 2^31 does not fit a signed Int32: on the wire it is Int32.min, which PostgreSQL too reads as negative.
    @Test func twoToTheThirtyFirstThrowsWithOnlyTheLengthPresent() {
        expectRefused([0x80, 0x00, 0x00, 0x00], .lengthTooShort(-2_147_483_648))
    }

    @Test func int32MaxIsTooLongWithOnlyTheLengthPresent() {
        expectRefused([0x7F, 0xFF, 0xFF, 0xFF], .lengthTooLong(2_147_483_647))
    }

    @Test func tenThousandAndOneIsTooLongWithOnlyTheLengthPresent() {
        expectRefused(be32(Int32(10_001)), .lengthTooLong(10_001))
    }

    @Test func eightIsTheSmallestPacket() throws {
        let result = try decode(sslRequestBytes)
        #expect(result.packet == .sslRequest)
        #expect(result.consumed == 8)
    }

    /// Length 8 is in bounds, so a StartupMessage that short fails on its content, not its length.
    @Test func eightByteStartupMessageIsMalformed() {
        expectMalformed(be32(Int32(8)) + be32(Int32(0x0003_0000)))
    }

    @Test func tenThousandIsTheLargestPacket() throws {
        // user=alice plus one parameter padded so the whole packet is exactly 10000 bytes.
        let fixed = 4 + 4 + cstring("user").count + cstring("alice").count + cstring("options").count + 1 + 1
        let padding = String(repeating: "x", count: 10_000 - fixed)
        let bytes = startupMessage([("user", "alice"), ("options", padding)])
        #expect(bytes.count == 10_000)
        #expect(Array(bytes.prefix(4)) == [0x00, 0x00, 0x27, 0x10])

        // With only the length there, it is in bounds: wait for the rest.
        let head = try decode(Array(bytes.prefix(4)))
        #expect(head.packet == nil)
        #expect(head.consumed == 0)

        let result = try decode(bytes)
        #expect(
            result.packet
                == .startup(
                    version: .v3_0,
                    parameters: [.init(name: "user", value: "alice"), .init(name: "options", value: padding)]
                )
        )
        #expect(result.consumed == 10_000)
    }

    @Test func everyStrictPrefixNeedsMoreAndConsumesNothing() throws {
        let bytes = startupMessage([("user", "alice"), ("database", "app")])
        for count in 0..<bytes.count {
            let result = try decode(Array(bytes.prefix(count)))
            #expect(result.packet == nil, "prefix of \(count) bytes")
            #expect(result.consumed == 0, "prefix of \(count) bytes")
        }
    }
}

@Suite struct SpecialRequests {
    @Test func sslRequest() throws {
        #expect(try decode(sslRequestBytes).packet == .sslRequest)
    }

    @Test func gssEncRequest() throws {
        #expect(try decode(gssEncRequestBytes).packet == .gssEncRequest)
    }

    @Test func sslRequestWithAnyOtherLengthIsNotOne() {
        expectRefused(startupPacket([0x04, 0xD2, 0x16, 0x2F, 0, 0, 0, 0]), .unsupportedProtocol(.init(major: 1234, minor: 5679)))
    }

    @Test func gssEncRequestWithAnyOtherLengthIsNotOne() {
        expectRefused(startupPacket([0x04, 0xD2, 0x16, 0x30, 0]), .unsupportedProtocol(.init(major: 1234, minor: 5680)))
    }

    @Test func unknownSpecialCode() {
        expectRefused(startupPacket([0x04, 0xD2, 0x16, 0x31]), .unsupportedProtocol(.init(major: 1234, minor: 5681)))
    }

    @Test func cancelRequestWithFourByteKey() throws {
        let bytes = startupPacket(cancelRequestCode + be32(Int32(4242)) + [0xDE, 0xAD, 0xBE, 0xEF])
        #expect(bytes.count == 16)
        let result = try decode(bytes)
        #expect(result.packet == .cancelRequest(processID: 4242, secretKey: [0xDE, 0xAD, 0xBE, 0xEF]))
        #expect(result.consumed == 16)
    }

    @Test func cancelRequestWithThirtyTwoByteKey() throws {
        let key = (0..<32).map { UInt8($0) }
        let result = try decode(startupPacket(cancelRequestCode + be32(Int32(-7)) + key))
        #expect(result.packet == .cancelRequest(processID: -7, secretKey: key))
        #expect(result.consumed == 44)
    }

    @Test func cancelRequestWithLargestKey() throws {
        let key = [UInt8](repeating: 0xAB, count: 256)
        let bytes = startupPacket(cancelRequestCode + be32(Int32(1)) + key)
        #expect(bytes.count == 268)
        #expect(try decode(bytes).packet == .cancelRequest(processID: 1, secretKey: key))
    }

    @Test(arguments: [0, 1, 3, 257])
    func cancelRequestWithBadKeyLength(keyLength: Int) {
        let bytes = startupPacket(cancelRequestCode + be32(Int32(1)) + [UInt8](repeating: 1, count: keyLength))
        expectRefused(bytes, .malformed("cancel request key must be 4 to 256 bytes"))
    }

    @Test func cancelRequestWithoutProcessID() {
        expectMalformed(startupPacket(cancelRequestCode + [0, 0]))
    }
}

@Suite struct StartupMessages {
    @Test func protocol30HandWritten() throws {
        let bytes: [UInt8] =
            [0x00, 0x00, 0x00, 0x21, 0x00, 0x03, 0x00, 0x00]
            + Array("user\0alice\0database\0app\0\0".utf8)
        let result = try decode(bytes)
        #expect(
            result.packet
                == .startup(
                    version: .v3_0,
                    parameters: [.init(name: "user", value: "alice"), .init(name: "database", value: "app")]
                )
        )
        #expect(result.consumed == 33)
    }

    @Test func protocol32KeepsProtocolOptionsInOrder() throws {
        let parameters = [
            ("_pq_.test_option", "on"), ("user", "bob"), ("application_name", ""), ("client_encoding", "UTF8"),
        ]
        let result = try decode(startupMessage(minor: 2, parameters))
        #expect(
            result.packet
                == .startup(version: .v3_2, parameters: parameters.map { StartupParameter(name: $0.0, value: $0.1) })
        )
    }

    @Test func anyMinorOfMajorThreeDecodes() throws {
        let result = try decode(startupMessage(minor: 0xFFFF, [("user", "u")]))
        #expect(result.packet == .startup(version: .init(major: 3, minor: 0xFFFF), parameters: [.init(name: "user", value: "u")]))
    }

    @Test func otherMajorVersionsAreUnsupported() {
        expectRefused(startupMessage(major: 2, [("user", "u")]), .unsupportedProtocol(.init(major: 2, minor: 0)))
        expectRefused(startupMessage(major: 4, minor: 1, [("user", "u")]), .unsupportedProtocol(.init(major: 4, minor: 1)))
    }

    @Test func canonicallyEquivalentNamesAreDistinct() throws {
        // "é" precomposed and decomposed are equal as Swift Strings but different bytes, as PostgreSQL sees them.
        let result = try decode(startupMessage([("user", "u"), ("caf\u{E9}", "1"), ("cafe\u{301}", "2")]))
        guard case .startup(_, let parameters) = result.packet else {
            Issue.record("not a startup message")
            return
        }
        #expect(parameters.count == 3)
    }

    @Test func missingListTerminator() {
        expectMalformed(startupPacket(be32(Int32(0x0003_0000)) + cstring("user") + cstring("alice")))
    }

    @Test func missingValueTerminator() {
        expectMalformed(startupPacket(be32(Int32(0x0003_0000)) + cstring("user") + Array("alice".utf8)))
    }

    @Test func nameWithoutValue() {
        expectMalformed(startupPacket(be32(Int32(0x0003_0000)) + cstring("user") + cstring("alice") + cstring("database")))
    }

    @Test func trailingBytesAfterTerminator() {
        let version = be32(Int32(0x0003_0000))
        expectRefused(
            startupPacket(version + cstring("user") + cstring("alice") + [0, 0x58]),
            .malformed("trailing bytes after startup parameters")
        )
        expectMalformed(startupPacket(version + cstring("user") + cstring("alice") + [0, 0]))
    }

    @Test func duplicateNames() {
        expectRefused(
            startupMessage([("user", "alice"), ("user", "mallory")]), .malformed("duplicate startup parameter")
        )
    }

    @Test func missingUser() {
        expectRefused(startupMessage([("database", "app")]), .malformed("startup packet has no user"))
        expectRefused(startupMessage([]), .malformed("startup packet has no user"))
        expectRefused(startupMessage([("user", ""), ("database", "app")]), .malformed("startup packet has no user"))
    }

    @Test(arguments: [[0xFF], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xE2, 0x82]] as [[UInt8]])
    func invalidUTF8(sequence: [UInt8]) {
        let version = be32(Int32(0x0003_0000))
        expectMalformed(startupPacket(version + cstring("user") + sequence + [0, 0]))
        expectMalformed(startupPacket(version + cstring("user") + cstring("u") + sequence + [0] + cstring("v") + [0]))
    }
}

@Suite struct StartupStream {
    @Test func packetsBackToBackAreDecodedOneAtATime() throws {
        var buffer = buffer(sslRequestBytes + startupMessage([("user", "a")]) + [0x00, 0x00])
        #expect(try StartupCodec.decode(&buffer) == .sslRequest)
        #expect(try StartupCodec.decode(&buffer) == .startup(version: .v3_0, parameters: [.init(name: "user", value: "a")]))
        #expect(try StartupCodec.decode(&buffer) == nil)
        #expect(buffer.readableBytes == 2)
    }
}

@Suite struct StartupEncoding {
    private func encoded(_ packet: StartupPacket) -> [UInt8] {
        var buffer = ByteBuffer()
        StartupCodec.encode(packet, into: &buffer)
        return bytes(of: buffer)
    }

    @Test func encodesToTheHandWrittenBytes() {
        #expect(encoded(.sslRequest) == sslRequestBytes)
        #expect(encoded(.gssEncRequest) == gssEncRequestBytes)
        #expect(
            encoded(.cancelRequest(processID: 4242, secretKey: [1, 2, 3, 4]))
                == [0, 0, 0, 16] + cancelRequestCode + be32(Int32(4242)) + [1, 2, 3, 4]
        )
        #expect(
            encoded(.startup(version: .v3_2, parameters: [.init(name: "user", value: "alice"), .init(name: "database", value: "app")]))
                == startupMessage(minor: 2, [("user", "alice"), ("database", "app")])
        )
    }

    @Test(arguments: [
        StartupPacket.sslRequest,
        .gssEncRequest,
        .cancelRequest(processID: .min, secretKey: [0, 0, 0, 0]),
        .cancelRequest(processID: .max, secretKey: Array(repeating: 0xFF, count: 32)),
        .startup(version: .v3_0, parameters: [.init(name: "user", value: "ünïcødé 🐘"), .init(name: "options", value: "")]),
        .startup(version: .v3_2, parameters: [.init(name: "_pq_.x", value: "y"), .init(name: "user", value: "u")]),
    ])
    func roundTrip(packet: StartupPacket) throws {
        let bytes = encoded(packet)
        let result = try decode(bytes)
        #expect(result.packet == packet)
        #expect(result.consumed == bytes.count)
    }

    @Test func embeddedNULsAreDroppedSoTheFramingHolds() throws {
        let bytes = encoded(.startup(version: .v3_0, parameters: [.init(name: "us\0er", value: "a\0b")]))
        #expect(try decode(bytes).packet == .startup(version: .v3_0, parameters: [.init(name: "user", value: "ab")]))
    }
}

@Suite struct TLSDetection {
    @Test func clientHelloLooksLikeTLS() {
        #expect(StartupCodec.looksLikeTLS(buffer([0x16, 0x03, 0x01, 0x02, 0x00])))
        #expect(StartupCodec.looksLikeTLS(buffer([0x16])))
    }

    @Test func startupPacketsDoNot() {
        #expect(!StartupCodec.looksLikeTLS(buffer(sslRequestBytes)))
        #expect(!StartupCodec.looksLikeTLS(buffer(startupMessage([("user", "u")]))))
        #expect(!StartupCodec.looksLikeTLS(ByteBuffer()))
    }

    @Test func looksAtTheReaderIndex() {
        var buffer = buffer([0x00, 0x16])
        #expect(!StartupCodec.looksLikeTLS(buffer))
        buffer.moveReaderIndex(forwardBy: 1)
        #expect(StartupCodec.looksLikeTLS(buffer))
    }
}
