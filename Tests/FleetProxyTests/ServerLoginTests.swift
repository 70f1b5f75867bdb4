import NIOCore
import NIOEmbedded
import PGWire
import Testing

@testable import FleetProxy

/// The auth lookup connection against a scripted server, on an EmbeddedChannel.
@Suite struct AuthLookupHandlerTests {
    /// The server's answer to one lookup: one text column, CommandComplete, ReadyForQuery.
    func answer(_ value: String) -> ByteBuffer {
        var out = ByteBuffer()
        out.writeMessage(type: BackendMessageType.dataRow) { body in
            body.writeInteger(Int16(1))
            body.writeInteger(Int32(value.utf8.count))
            body.writeString(value)
        }
        out.writeMessage(type: BackendMessageType.commandComplete) { $0.writeCString("SELECT 1") }
        ReadyForQuery.encode(status: ReadyForQuery.idle, into: &out)
        return out
    }

    /// The connection lives as long as its tenant runs: its buffer must not keep every login's bytes.
    @Test func theBufferStaysBoundedOverTenThousandLookups() throws {
        let channel = EmbeddedChannel()
        let handler = AuthLookupHandler()
        try channel.pipeline.syncOperations.addHandler(handler)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 5432)).wait()
        let verifier = "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy"
        for index in 0..<10_000 {
            let promise = channel.eventLoop.makePromise(of: String?.self)
            handler.lookup("role\(index)", promise: promise)
            _ = try channel.readOutbound(as: ByteBuffer.self)
            var reply = answer(verifier)
            if index % 2 == 1 {
                // Split the reply so a partial message is carried over between reads.
                let head = reply.readSlice(length: 7)!
                try channel.writeInbound(head)
            }
            try channel.writeInbound(reply)
            #expect(try promise.futureResult.wait() == verifier)
        }
        #expect(handler.bufferedBytes == 0)
        #expect(handler.bufferCapacity < 4096, "capacity \(handler.bufferCapacity)")
        _ = try? channel.finish()
    }
}
