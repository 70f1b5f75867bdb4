import NIOCore
import PGWire
import Testing

private func expectMalformed(sourceLocation: SourceLocation = #_sourceLocation, _ decode: () throws -> Void) {
    let error = #expect(throws: WireError.self, sourceLocation: sourceLocation) { try decode() }
    if case .malformed = error {} else {
        Issue.record("expected .malformed, got \(String(describing: error))", sourceLocation: sourceLocation)
    }
}

@Suite struct AuthenticationRequestTests {
    static let fixtures: [(AuthenticationRequest, [UInt8])] = [
        (.ok, [0x52, 0, 0, 0, 8, 0, 0, 0, 0]),
        (.cleartextPassword, [0x52, 0, 0, 0, 8, 0, 0, 0, 3]),
        (.md5Password(salt: [0x01, 0x02, 0x03, 0x04]), [0x52, 0, 0, 0, 12, 0, 0, 0, 5, 0x01, 0x02, 0x03, 0x04]),
        (
            .sasl(mechanisms: ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]),
            [0x52, 0, 0, 0, 42, 0, 0, 0, 10] + Array("SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0".utf8)
        ),
        (
            .saslContinue(Array("r=abc,s=c2FsdA==,i=4096".utf8)),
            [0x52, 0, 0, 0, 31, 0, 0, 0, 11] + Array("r=abc,s=c2FsdA==,i=4096".utf8)
        ),
        (.saslFinal(Array("v=c2ln".utf8)), [0x52, 0, 0, 0, 14, 0, 0, 0, 12] + Array("v=c2ln".utf8)),
        (.saslContinue([]), [0x52, 0, 0, 0, 8, 0, 0, 0, 11]),
        (.other(code: 7, body: []), [0x52, 0, 0, 0, 8, 0, 0, 0, 7]),  // GSS
        (.other(code: 8, body: [0xAA, 0xBB]), [0x52, 0, 0, 0, 10, 0, 0, 0, 8, 0xAA, 0xBB]),  // GSSContinue
        (.other(code: -1, body: [1]), [0x52, 0, 0, 0, 9, 0xFF, 0xFF, 0xFF, 0xFF, 1]),
    ]

    @Test(arguments: fixtures)
    func encodesToFixtureAndDecodesBack(request: AuthenticationRequest, fixture: [UInt8]) throws {
        var out = ByteBuffer()
        request.encode(into: &out)
        #expect(bytes(of: out) == fixture)

        let framed = try #require(try frame(fixture))
        #expect(framed.type == BackendMessageType.authentication)
        #expect(try AuthenticationRequest(body: framed.body) == request)
    }

    @Test func bodyShorterThanACode() {
        expectMalformed { _ = try AuthenticationRequest(body: buffer([0, 0, 0])) }
        expectMalformed { _ = try AuthenticationRequest(body: buffer([])) }
    }

    @Test func trailingBytes() {
        expectMalformed { _ = try AuthenticationRequest(body: buffer([0, 0, 0, 0, 0])) }
        expectMalformed { _ = try AuthenticationRequest(body: buffer([0, 0, 0, 3, 1])) }
        expectMalformed { _ = try AuthenticationRequest(body: buffer([0, 0, 0, 5, 1, 2, 3, 4, 5])) }
        expectMalformed { _ = try AuthenticationRequest(body: buffer([0, 0, 0, 10] + cstring("SCRAM-SHA-256") + [0, 0])) }
    }

    @Test func shortMD5Salt() {
        expectMalformed { _ = try AuthenticationRequest(body: buffer([0, 0, 0, 5, 1, 2, 3])) }
    }

    @Test func badSASLLists() {
        // No list terminator; a name without its NUL; an empty list; a name that is not UTF-8.
        expectMalformed { _ = try AuthenticationRequest(body: buffer([0, 0, 0, 10] + cstring("SCRAM-SHA-256"))) }
        expectMalformed { _ = try AuthenticationRequest(body: buffer([0, 0, 0, 10] + Array("SCRAM".utf8))) }
        expectMalformed { _ = try AuthenticationRequest(body: buffer([0, 0, 0, 10, 0])) }
        expectMalformed { _ = try AuthenticationRequest(body: buffer([0, 0, 0, 10, 0xFF, 0, 0])) }
    }
}

@Suite struct BackendKeyDataTests {
    @Test func fourByteKey() throws {
        let fixture: [UInt8] = [0x4B, 0, 0, 0, 12, 0, 0, 0x30, 0x39, 0xCA, 0xFE, 0xBA, 0xBE]
        let key = BackendKeyData(processID: 12345, secretKey: [0xCA, 0xFE, 0xBA, 0xBE])
        var out = ByteBuffer()
        key.encode(into: &out)
        #expect(bytes(of: out) == fixture)
        #expect(try BackendKeyData(body: #require(try frame(fixture)).body) == key)
    }

    @Test func thirtyTwoByteKey() throws {
        let secret = (0..<32).map { UInt8(255 - $0) }
        let fixture = message("K", be32(Int32(-2)) + secret)
        let key = BackendKeyData(processID: -2, secretKey: secret)
        var out = ByteBuffer()
        key.encode(into: &out)
        #expect(bytes(of: out) == fixture)
        #expect(try BackendKeyData(body: #require(try frame(fixture)).body) == key)
    }

    @Test(arguments: [0, 1, 3, 257, 1000])
    func badKeyLengths(keyLength: Int) {
        #expect(throws: WireError.malformed("BackendKeyData key must be 4 to 256 bytes")) {
            try BackendKeyData(body: buffer(be32(Int32(1)) + [UInt8](repeating: 9, count: keyLength)))
        }
    }

    @Test func bodyShorterThanAProcessID() {
        expectMalformed { _ = try BackendKeyData(body: buffer([0, 1])) }
    }

    @Test func largestKey() throws {
        let secret = [UInt8](repeating: 1, count: 256)
        #expect(try BackendKeyData(body: buffer(be32(Int32(9)) + secret)) == BackendKeyData(processID: 9, secretKey: secret))
    }
}

@Suite struct ErrorResponseTests {
    @Test func encodesInPostgresOrder() {
        let error = ErrorResponse(
            severity: "FATAL", sqlstate: "28P01", message: "password authentication failed",
            detail: "d", hint: "h"
        )
        var out = ByteBuffer()
        error.encode(into: &out)
        let body =
            [0x53] + cstring("FATAL") + [0x56] + cstring("FATAL") + [0x43] + cstring("28P01")
            + [0x4D] + cstring("password authentication failed") + [0x44] + cstring("d") + [0x48] + cstring("h") + [0]
        #expect(bytes(of: out) == message("E", body))
    }

    @Test func decodesWhatPostgresSends() throws {
        let body =
            [0x53] + cstring("FATAL") + [0x56] + cstring("FATAL") + [0x43] + cstring("3D000")
            + [0x4D] + cstring("database \"nope\" does not exist") + [0x46] + cstring("postinit.c")
            + [0x4C] + cstring("1029") + [0x52] + cstring("InitPostgres") + [0]
        let error = try ErrorResponse(body: buffer(body))
        #expect(error.sqlstate == "3D000")
        #expect(error.message == "database \"nope\" does not exist")
        #expect(error.severity == "FATAL")
        #expect(error.fields[0x52] == "InitPostgres")
        #expect(error.fields.count == 7)
    }

    @Test func roundTripsAsNotice() throws {
        let notice = ErrorResponse(fields: [0x53: "NOTICE", 0x4D: "héllo", 0x57: "context", 0x70: "42"])
        var out = ByteBuffer()
        notice.encode(into: &out, type: BackendMessageType.noticeResponse)
        let framed = try #require(try MessageFramer.next(&out, maxLength: 1024))
        #expect(framed.type == BackendMessageType.noticeResponse)
        #expect(try ErrorResponse(body: framed.body) == notice)
        #expect(notice.sqlstate == nil)
    }

    @Test func emptyFieldListIsValid() throws {
        #expect(try ErrorResponse(body: buffer([0])) == ErrorResponse(fields: [:]))
    }

    @Test func malformedBodies() {
        expectMalformed { _ = try ErrorResponse(body: buffer([])) }  // no terminator
        expectMalformed { _ = try ErrorResponse(body: buffer([0x4D] + cstring("x"))) }  // no terminator
        expectMalformed { _ = try ErrorResponse(body: buffer([0x4D] + Array("x".utf8))) }  // unterminated value
        expectMalformed { _ = try ErrorResponse(body: buffer([0x4D] + cstring("x") + [0x4D] + cstring("y") + [0])) }
        expectMalformed { _ = try ErrorResponse(body: buffer([0x4D] + cstring("x") + [0, 0])) }  // trailing
        expectMalformed { _ = try ErrorResponse(body: buffer([0x4D, 0xC3, 0x28, 0, 0])) }  // not UTF-8
    }
}

@Suite struct ParameterStatusTests {
    @Test func decodes() throws {
        let framed = try #require(try frame(message("S", cstring("server_version") + cstring("17.2"))))
        #expect(try ParameterStatus(body: framed.body) == ParameterStatus(name: "server_version", value: "17.2"))
    }

    @Test func roundTrip() throws {
        let status = ParameterStatus(name: "application_name", value: "")
        var out = ByteBuffer()
        status.encode(into: &out)
        #expect(bytes(of: out) == message("S", cstring("application_name") + [0]))
        #expect(try ParameterStatus(body: #require(try frame(bytes(of: out))).body) == status)
    }

    @Test func malformed() {
        expectMalformed { _ = try ParameterStatus(body: buffer(cstring("") + cstring("x"))) }
        expectMalformed { _ = try ParameterStatus(body: buffer(cstring("a"))) }
        expectMalformed { _ = try ParameterStatus(body: buffer(cstring("a") + Array("b".utf8))) }
        expectMalformed { _ = try ParameterStatus(body: buffer(cstring("a") + cstring("b") + [0])) }
    }
}

@Suite struct ReadyForQueryTests {
    @Test(arguments: [UInt8(ascii: "I"), UInt8(ascii: "T"), UInt8(ascii: "E")])
    func validStatus(status: UInt8) throws {
        #expect(try ReadyForQuery.status(body: buffer([status])) == status)
        var out = ByteBuffer()
        ReadyForQuery.encode(status: status, into: &out)
        #expect(bytes(of: out) == [0x5A, 0, 0, 0, 5, status])
    }

    @Test func invalidBodies() {
        expectMalformed { _ = try ReadyForQuery.status(body: buffer([])) }
        expectMalformed { _ = try ReadyForQuery.status(body: buffer([UInt8(ascii: "X")])) }
        expectMalformed { _ = try ReadyForQuery.status(body: buffer([UInt8(ascii: "I"), UInt8(ascii: "I")])) }
    }
}

@Suite struct NegotiateProtocolVersionTests {
    @Test func encodesToHandWrittenBytes() {
        var out = ByteBuffer()
        NegotiateProtocolVersion(newestMinor: 0, unrecognizedOptions: ["_pq_.foo"]).encode(into: &out)
        #expect(
            bytes(of: out) == [
                0x76, 0x00, 0x00, 0x00, 0x15,  // 'v', length 21
                0x00, 0x00, 0x00, 0x00,  // newest minor 0
                0x00, 0x00, 0x00, 0x01,  // one option
                0x5F, 0x70, 0x71, 0x5F, 0x2E, 0x66, 0x6F, 0x6F, 0x00,  // "_pq_.foo\0"
            ]
        )
    }

    @Test func noOptions() {
        var out = ByteBuffer()
        NegotiateProtocolVersion(newestMinor: 2, unrecognizedOptions: []).encode(into: &out)
        #expect(bytes(of: out) == [0x76, 0, 0, 0, 12, 0, 0, 0, 2, 0, 0, 0, 0])
    }

    @Test func roundTrip() throws {
        let negotiate = NegotiateProtocolVersion(newestMinor: 2, unrecognizedOptions: ["_pq_.a", "_pq_.b"])
        var out = ByteBuffer()
        negotiate.encode(into: &out)
        let framed = try #require(try MessageFramer.next(&out, maxLength: 1024))
        #expect(framed.type == BackendMessageType.negotiateProtocolVersion)
        #expect(try NegotiateProtocolVersion(body: framed.body) == negotiate)
    }

    @Test func lyingCounts() {
        expectMalformed { _ = try NegotiateProtocolVersion(body: buffer(be32(Int32(0)) + be32(Int32(-1)))) }
        expectMalformed { _ = try NegotiateProtocolVersion(body: buffer(be32(Int32(0)) + be32(Int32.max) + [0])) }
        expectMalformed { _ = try NegotiateProtocolVersion(body: buffer(be32(Int32(0)) + be32(Int32(2)) + cstring("a"))) }
        expectMalformed { _ = try NegotiateProtocolVersion(body: buffer(be32(Int32(0)) + be32(Int32(0)) + [0])) }
    }
}

@Suite struct MessageTypeBytes {
    @Test func matchTheProtocolLetters() {
        #expect(BackendMessageType.authentication == UInt8(ascii: "R"))
        #expect(BackendMessageType.backendKeyData == UInt8(ascii: "K"))
        #expect(BackendMessageType.errorResponse == UInt8(ascii: "E"))
        #expect(BackendMessageType.noticeResponse == UInt8(ascii: "N"))
        #expect(BackendMessageType.parameterStatus == UInt8(ascii: "S"))
        #expect(BackendMessageType.readyForQuery == UInt8(ascii: "Z"))
        #expect(BackendMessageType.negotiateProtocolVersion == UInt8(ascii: "v"))
        #expect(FrontendMessageType.password == UInt8(ascii: "p"))
        #expect(FrontendMessageType.terminate == UInt8(ascii: "X"))
        #expect(FrontendMessageType.query == UInt8(ascii: "Q"))
    }
}
