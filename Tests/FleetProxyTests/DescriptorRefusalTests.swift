import FleetCore
import Logging
import NIOCore
import NIOEmbedded
import PGWire
import Synchronization
import Testing

@testable import FleetProxy

@Suite struct DescriptorHeadroomTests {
    @Test func underALimitOf256ASessionNeedsTheReserveAndThreeMore() {
        let headroom = DescriptorHeadroom(limit: 256)
        #expect(headroom.reserve == 32)
        #expect(headroom.admits(inUse: 221))  // 35 free: 32 + 3
        #expect(!headroom.admits(inUse: 222))
        // Refusals are still accepted (and answered) down to half the reserve and one accept batch.
        #expect(headroom.accepts(inUse: 231))  // 25 free
        #expect(!headroom.accepts(inUse: 232))
    }

    @Test func theReserveIsASixteenthOfTheLimitWithinBounds() {
        #expect(DescriptorHeadroom(limit: 64).reserve == 32)
        #expect(DescriptorHeadroom(limit: 4096).reserve == 256)
        #expect(DescriptorHeadroom(limit: 1_048_576).reserve == 1024)
    }

    @Test func aProxyNobodyMeasuresNeverRefuses() {
        let gauge = DescriptorGauge.unlimited()
        #expect(gauge.admit(logger: Logger(label: "test")) == nil)
        #expect(gauge.acceptsMore)
    }
}

@Suite struct DescriptorGaugeTests {
    @Test func theRestOfTheDaemonIsMeasuredAtMostOncePerInterval() {
        let calls = Atomic(0)
        let gauge = DescriptorGauge(limit: 256, refreshInterval: .seconds(3600)) {
            calls.add(1, ordering: .relaxed)
            return 100
        }
        #expect(gauge.inUse == 100)
        #expect(gauge.inUse == 100)
        #expect(calls.load(ordering: .relaxed) == 1)
    }

    @Test func theProxysOwnSocketsAreCountedAsTheyOpenAndClose() throws {
        let open = Atomic(40)
        let gauge = DescriptorGauge(limit: 256, refreshInterval: .zero) { open.load(ordering: .relaxed) }
        let channel = EmbeddedChannel()
        gauge.track(channel)
        open.add(1, ordering: .relaxed)  // the socket is one of the process's descriptors too
        #expect(gauge.proxySockets == 1)
        #expect(gauge.inUse == 41)
        _ = try channel.finish()
        open.subtract(1, ordering: .relaxed)
        #expect(gauge.proxySockets == 0)
        #expect(gauge.inUse == 40)
    }

    @Test func anAdmittedClientHoldsADescriptorForItsServerUntilItHasOne() {
        let gauge = DescriptorGauge(limit: 256, refreshInterval: .zero) { 100 }
        let logger = Logger(label: "test")
        #expect(gauge.admit(logger: logger) == nil)
        #expect(gauge.admit(logger: logger) == nil)
        #expect(gauge.inUse == 102, "two servers to come")
        gauge.releaseReservation()
        #expect(gauge.inUse == 101)
        // A burst: clients are admitted until their servers-to-be use up the headroom.
        var admitted = 2
        while gauge.admit(logger: logger) == nil { admitted += 1 }
        #expect(admitted == 2 + (256 - 35 - 101) + 1)
    }

    @Test func aRefusalNamesTheCountsAndNoTenant() throws {
        let gauge = DescriptorGauge(limit: 256, refreshInterval: .zero) { 230 }
        let refusal = try #require(gauge.admit(logger: Logger(label: "test")))
        #expect(refusal == .outOfDescriptors(inUse: 230, limit: 256))
        #expect(refusal.sqlstate == "53300")
        #expect(refusal.metricLabel == "out_of_descriptors")
        #expect(refusal.message.contains("the pgfleet proxy is out of file descriptors (230 in use, limit 256)"))
        #expect(gauge.acceptsMore, "refused, yet still accepted, to be told so")
    }
}

@Suite struct RefusedHandshakeTests {
    let startup = StartupPacket.startup(version: .v3_0, parameters: [StartupParameter(name: "user", value: "bob@acme")])
    let refusal = ProxyError.outOfDescriptors(inUse: 240, limit: 256)

    @Test func aPlainStartupGetsTheRefusal() {
        var m = HandshakeMachine(tlsMode: .allow, router: Router(sniDomain: nil), refusal: refusal)
        #expect(m.packetReceived(startup, moreBuffered: false) == [.fail(refusal)])
    }

    @Test func anSSLRequestIsAnsweredAsUsualAndTheStartupThenRefused() {
        var plain = HandshakeMachine(tlsMode: .disable, router: Router(sniDomain: nil), refusal: refusal)
        #expect(plain.packetReceived(.sslRequest, moreBuffered: false) == [.reply(UInt8(ascii: "N"))])
        #expect(plain.packetReceived(startup, moreBuffered: false) == [.fail(refusal)])

        var tls = HandshakeMachine(tlsMode: .allow, router: Router(sniDomain: nil), refusal: refusal)
        #expect(tls.packetReceived(.sslRequest, moreBuffered: false) == [.reply(UInt8(ascii: "S")), .startTLS(direct: false)])
        #expect(tls.tlsEstablished(serverName: nil, alpn: nil) == [])
        #expect(tls.packetReceived(startup, moreBuffered: false) == [.fail(refusal)])
    }

    @Test func aCancelRequestStillGoesThrough() {
        var m = HandshakeMachine(tlsMode: .allow, router: Router(sniDomain: nil), refusal: refusal)
        #expect(m.packetReceived(.cancelRequest(processID: 7, secretKey: [1, 2, 3, 4]), moreBuffered: false)
            == [.cancel(processID: 7, secretKey: [1, 2, 3, 4])])
    }

    /// The bytes on the wire: 'N' to the SSLRequest, then the ErrorResponse, then the close.
    @Test func theHandlerAnswersTheSSLRequestThenSendsTheErrorAndCloses() throws {
        let shared = ProxyContext(
            configuration: ProxyConfiguration(tlsMode: .disable), routes: NoRoutes(), tls: nil, cancels: CancelRegistry(),
            limits: ConnectionLimits(maxTotal: 10, maxPerTenant: 10), logger: Logger(label: "test")
        )
        let channel = EmbeddedChannel(handler: ClientConnectionHandler(shared: shared, refusal: refusal))
        try channel.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 5432)).wait()
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil, "nothing is sent before the client speaks")

        var request = channel.allocator.buffer(capacity: 8)
        StartupCodec.encode(.sslRequest, into: &request)
        try channel.writeInbound(request)
        var answer = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(answer.readInteger(as: UInt8.self) == UInt8(ascii: "N"))
        #expect(channel.isActive)

        var packet = channel.allocator.buffer(capacity: 64)
        StartupCodec.encode(startup, into: &packet)
        try channel.writeInbound(packet)
        let error = try #require(try channel.readOutbound(as: ByteBuffer.self))
        let text = String(decoding: error.readableBytesView, as: UTF8.self)
        #expect(error.readableBytesView.first == UInt8(ascii: "E"))
        #expect(text.contains("C53300\0"))
        #expect(text.contains("out of file descriptors (240 in use, limit 256)"))
        #expect(!channel.isActive)
        _ = try? channel.finish()
    }
}

@Suite struct AcceptGateTests {
    /// Counts the reads that get past the gate (it sits between the gate and the head).
    final class ReadCounter: ChannelOutboundHandler, Sendable {
        typealias OutboundIn = Never
        let reads = Atomic(0)
        func read(context: ChannelHandlerContext) {
            reads.add(1, ordering: .relaxed)
            context.read()
        }
    }

    @Test func readsWaitWhileDescriptorsAreShortAndResumeOnTheirOwn() throws {
        let open = Atomic(240)
        let gauge = DescriptorGauge(limit: 256, refreshInterval: .zero) { open.load(ordering: .relaxed) }
        let counter = ReadCounter()
        let holds = Mutex<[Bool]>([])
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(counter)
        try channel.pipeline.syncOperations.addHandler(AcceptGate(descriptors: gauge) { holding in holds.withLock { $0.append(holding) } })

        channel.read()
        #expect(counter.reads.load(ordering: .relaxed) == 0)
        channel.embeddedEventLoop.advanceTime(by: AcceptGate.recheck)
        #expect(counter.reads.load(ordering: .relaxed) == 0, "still short: it looks again later, without spinning")

        open.store(100, ordering: .relaxed)
        channel.embeddedEventLoop.advanceTime(by: AcceptGate.recheck)
        #expect(counter.reads.load(ordering: .relaxed) == 1)
        #expect(holds.withLock { $0 } == [true, false])
        channel.read()
        #expect(counter.reads.load(ordering: .relaxed) == 2)
        _ = try? channel.finish()
    }
}

private struct NoRoutes: RouteProvider {
    func route(for tenant: TenantName) async -> TenantRoute { .unknown }
    func wake(_ tenant: TenantName) async -> TenantRoute { .unknown }
    func cachedRoute(for tenant: TenantName) -> TenantRoute? { .unknown }
}
