import NIOCore
import PGWire
import Testing

@testable import FleetProxy

@Suite struct SessionTrackerTests {
    func message(_ type: Character, _ body: [UInt8] = []) -> [UInt8] {
        var buffer = ByteBuffer()
        buffer.writeMessage(type: type.asciiValue!) { $0.writeBytes(body) }
        return Array(buffer.readableBytesView)
    }

    func query(_ sql: String) -> [UInt8] { message("Q", Array(sql.utf8) + [0]) }
    func ready(_ status: Character) -> [UInt8] { message("Z", [status.asciiValue!]) }
    var terminate: [UInt8] { message("X") }

    /// Feeds `bytes` in pieces of `chunk` bytes, as the network might split them.
    func clientSends(_ tracker: inout SessionTracker, _ bytes: [UInt8], chunk: Int) -> Int {
        stride(from: 0, to: bytes.count, by: chunk).reduce(0) { forwarded, start in
            forwarded + tracker.clientSent(ByteBuffer(bytes: bytes[start..<min(start + chunk, bytes.count)]))
        }
    }

    func serverSends(_ tracker: inout SessionTracker, _ bytes: [UInt8], chunk: Int) {
        for start in stride(from: 0, to: bytes.count, by: chunk) {
            tracker.serverSent(ByteBuffer(bytes: bytes[start..<min(start + chunk, bytes.count)]))
        }
    }

    @Test(arguments: [1, 2, 3, 7, 1000])
    func anAnsweredQueryLeavesTheSessionIdleAndTerminateStaysWithTheProxy(chunk: Int) {
        var tracker = SessionTracker(parameters: [ParameterStatus(name: "TimeZone", value: "UTC")])
        let sent = query("select 1")
        #expect(clientSends(&tracker, sent, chunk: chunk) == sent.count)
        #expect(!tracker.isIdle)
        serverSends(&tracker, message("T", [0, 0]) + message("D", [0, 0]) + message("C", Array("SELECT 1\0".utf8))
            + message("S", Array("TimeZone\0Europe/Paris\0".utf8)) + ready("I"), chunk: chunk)
        #expect(tracker.isIdle)
        #expect(tracker.parameters == [ParameterStatus(name: "TimeZone", value: "Europe/Paris")])
        // Terminate: not passed on (the server connection goes back to the pool); nothing after it either.
        #expect(clientSends(&tracker, terminate + query("select 2"), chunk: chunk) == 0)
        #expect(tracker.terminated && tracker.isIdle)
    }

    @Test func openTransactionsPendingQueriesAndUnsyncedBatchesAreNotIdle() {
        var inTransaction = SessionTracker(parameters: [])
        _ = inTransaction.clientSent(ByteBuffer(bytes: query("begin")))
        inTransaction.serverSent(ByteBuffer(bytes: message("C", Array("BEGIN\0".utf8)) + ready("T")))
        #expect(!inTransaction.isIdle)

        // Terminate while a query runs: it goes to the server, which ends the session.
        var busy = SessionTracker(parameters: [])
        let bytes = query("select pg_sleep(1)") + terminate
        #expect(busy.clientSent(ByteBuffer(bytes: bytes)) == bytes.count)
        busy.serverSent(ByteBuffer(bytes: ready("I")))
        #expect(!busy.isIdle && busy.terminateForwarded)

        // Parse/Bind/Execute without Sync: an unfinished batch.
        var batch = SessionTracker(parameters: [])
        _ = batch.clientSent(ByteBuffer(bytes: message("P", [0, 0x73, 0, 0, 0]) + message("B", [0, 0, 0, 0, 0, 0, 0, 0]) + message("E", [0, 0, 0, 0, 0])))
        #expect(!batch.isIdle)
        _ = batch.clientSent(ByteBuffer(bytes: message("S")))
        #expect(!batch.isIdle)
        batch.serverSent(ByteBuffer(bytes: message("1") + message("2") + message("C", Array("SELECT 1\0".utf8)) + ready("I")))
        #expect(batch.isIdle)

        // COPY FROM STDIN: the copy data does not count as an unfinished batch.
        var copy = SessionTracker(parameters: [])
        _ = copy.clientSent(ByteBuffer(bytes: query("copy t from stdin") + message("d", Array("1\n".utf8)) + message("c")))
        copy.serverSent(ByteBuffer(bytes: message("G", [0, 0, 0]) + message("C", Array("COPY 1\0".utf8)) + ready("I")))
        #expect(copy.isIdle)
    }

    @Test func aBrokenStreamIsNeverIdle() {
        var tracker = SessionTracker(parameters: [])
        // A length word below 4 cannot be the protocol.
        _ = tracker.clientSent(ByteBuffer(bytes: [UInt8(ascii: "Q"), 0, 0, 0, 2]))
        #expect(!tracker.isIdle)
        var server = SessionTracker(parameters: [])
        server.serverSent(ByteBuffer(bytes: [UInt8(ascii: "Z"), 0xFF, 0xFF, 0xFF, 0xFF]))
        #expect(!server.isIdle)
    }
}
