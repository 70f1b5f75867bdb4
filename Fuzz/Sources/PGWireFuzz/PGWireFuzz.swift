import NIOCore
import PGWire

// libFuzzer's entry point. Every input goes through the startup decoder and the message framer, and every framed
// body through every body decoder. Besides "does not trap", it checks the codec's promises: nothing is consumed
// unless a whole packet is returned, a strict prefix of a packet is incomplete rather than wrong, and what
// decodes re-encodes to bytes that decode to the same value (byte for byte, except ErrorResponse's field order).

/// The framer's bound here: small enough that the fuzzer reaches it with short inputs.
let maxMessageLength = 8192

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = ByteBuffer(bytes: UnsafeBufferPointer(start: data, count: size))
    _ = StartupCodec.looksLikeTLS(input)
    fuzzStartup(input)
    fuzzMessages(input)
    return 0
}

/// Traps (which libFuzzer reports as a crash) when an invariant does not hold.
func require(_ condition: Bool, _ what: @autoclosure () -> String) {
    if !condition { fatalError("invariant broken: \(what())") }
}

func fuzzStartup(_ input: ByteBuffer) {
    var buffer = input
    while true {
        let before = buffer.readerIndex
        let packet: StartupPacket?
        do {
            packet = try StartupCodec.decode(&buffer)
        } catch {
            require(buffer.readerIndex == before, "StartupCodec.decode consumed bytes and threw \(error)")
            return
        }
        guard let packet else {
            require(buffer.readerIndex == before, "StartupCodec.decode consumed bytes and returned nil")
            return
        }
        let length = buffer.readerIndex - before
        require(
            (StartupLimits.minLength...StartupLimits.maxLength).contains(length), "startup packet of \(length) bytes")
        guard let consumed = input.getSlice(at: before, length: length) else {
            fatalError("consumed bytes beyond the input")
        }

        var encoded = ByteBuffer()
        StartupCodec.encode(packet, into: &encoded)
        require(encoded == consumed, "\(packet) re-encodes to different bytes")

        var again = encoded
        do {
            let decodedAgain = try StartupCodec.decode(&again)
            require(decodedAgain == packet && again.readableBytes == 0, "\(packet) re-decodes differently")
        } catch {
            fatalError("\(packet) re-encoded does not decode: \(error)")
        }

        // One byte short, it must wait for more, not fail or succeed.
        var prefix = consumed.getSlice(at: consumed.readerIndex, length: length - 1) ?? ByteBuffer()
        do {
            let partial = try StartupCodec.decode(&prefix)
            require(partial == nil && prefix.readableBytes == length - 1, "a strict prefix of \(packet) decoded")
        } catch {
            fatalError("a strict prefix of \(packet) threw \(error)")
        }
    }
}

func fuzzMessages(_ input: ByteBuffer) {
    var buffer = input
    while true {
        let before = buffer.readerIndex
        let message: RawMessage?
        do {
            message = try MessageFramer.next(&buffer, maxLength: maxMessageLength)
        } catch {
            require(buffer.readerIndex == before, "MessageFramer.next consumed bytes and threw \(error)")
            return
        }
        guard let message else {
            require(buffer.readerIndex == before, "MessageFramer.next consumed bytes and returned nil")
            return
        }
        require(message.body.readableBytes <= maxMessageLength - 4, "body of \(message.body.readableBytes) bytes")
        var encoded = ByteBuffer()
        message.encode(into: &encoded)
        require(encoded == input.getSlice(at: before, length: buffer.readerIndex - before), "frame re-encodes differently")

        // Every decoder on every body, whatever the type byte says: the fuzzer then need not guess type bytes.
        let body = message.body
        checkRoundTrip(body, exact: true, decode: AuthenticationRequest.init(body:)) { $0.encode(into: &$1) }
        checkRoundTrip(body, exact: true, decode: BackendKeyData.init(body:)) { $0.encode(into: &$1) }
        checkRoundTrip(body, exact: false, decode: ErrorResponse.init(body:)) { $0.encode(into: &$1) }
        checkRoundTrip(body, exact: true, decode: ParameterStatus.init(body:)) { $0.encode(into: &$1) }
        checkRoundTrip(body, exact: true, decode: NegotiateProtocolVersion.init(body:)) { $0.encode(into: &$1) }
        checkRoundTrip(body, exact: true, decode: ReadyForQuery.status(body:)) {
            ReadyForQuery.encode(status: $0, into: &$1)
        }
    }
}

/// If `body` decodes, its encoding must frame as one message whose body decodes to the same value, and with
/// `exact`, whose body is the same bytes.
func checkRoundTrip<Value: Equatable>(
    _ body: ByteBuffer,
    exact: Bool,
    decode: (ByteBuffer) throws(WireError) -> Value,
    encode: (Value, inout ByteBuffer) -> Void
) {
    let value: Value
    do {
        value = try decode(body)
    } catch {
        return
    }
    var encoded = ByteBuffer()
    encode(value, &encoded)
    let framed: RawMessage?
    do {
        framed = try MessageFramer.next(&encoded, maxLength: Int(Int32.max))
    } catch {
        fatalError("\(value) encodes to an unframeable message: \(error)")
    }
    guard let framed, encoded.readableBytes == 0 else { fatalError("\(value) does not encode to one message") }
    require(!exact || framed.body == body, "\(value) re-encodes to different bytes")
    do {
        require(try decode(framed.body) == value, "\(value) re-decodes differently")
    } catch {
        fatalError("\(value) re-encoded does not decode: \(error)")
    }
}
