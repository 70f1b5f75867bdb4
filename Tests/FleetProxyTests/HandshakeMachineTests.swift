import FleetCore
import PGWire
import Testing

@testable import FleetProxy

@Suite struct HandshakeMachineTests {
    let startup = StartupPacket.startup(version: .v3_0, parameters: [StartupParameter(name: "user", value: "bob@acme")])
    let routed = RouteRequest(tenant: try! TenantName(validating: "acme"), parameters: [StartupParameter(name: "user", value: "bob")], unrecognizedOptions: [])

    func machine(_ mode: TLSMode) -> HandshakeMachine {
        HandshakeMachine(tlsMode: mode, router: Router(sniDomain: "db.example.com"))
    }

    @Test func plaintextStartupRoutes() {
        var m = machine(.allow)
        #expect(m.packetReceived(startup, moreBuffered: false) == [.route(routed, negotiate: nil)])
    }

    @Test func sslRequestIsAcceptedThenStartupInsideTLS() {
        var m = machine(.allow)
        #expect(m.packetReceived(.sslRequest, moreBuffered: false) == [.reply(UInt8(ascii: "S")), .startTLS(direct: false)])
        #expect(m.tlsEstablished(serverName: nil, alpn: nil) == [])
        #expect(m.isInTLS)
        #expect(m.packetReceived(startup, moreBuffered: false) == [.route(routed, negotiate: nil)])
    }

    @Test func bytesBufferedAfterTheSSLRequestAreRejected() {
        var m = machine(.require)
        #expect(m.packetReceived(.sslRequest, moreBuffered: true) == [.fail(.bufferedBeforeTLS)])
    }

    @Test func sslRequestWithTLSDisabledIsAnsweredNAndPlaintextContinues() {
        var m = machine(.disable)
        #expect(m.packetReceived(.sslRequest, moreBuffered: false) == [.reply(UInt8(ascii: "N"))])
        #expect(m.packetReceived(startup, moreBuffered: false) == [.route(routed, negotiate: nil)])
    }

    @Test func gssEncryptionIsDeclined() {
        var m = machine(.allow)
        #expect(m.packetReceived(.gssEncRequest, moreBuffered: false) == [.reply(UInt8(ascii: "N"))])
        #expect(m.packetReceived(.sslRequest, moreBuffered: false) == [.reply(UInt8(ascii: "S")), .startTLS(direct: false)])
    }

    @Test func requireRefusesPlaintextStartup() {
        var m = machine(.require)
        #expect(m.packetReceived(startup, moreBuffered: false) == [.fail(.tlsRequired)])
        #expect(ProxyError.tlsRequired.sqlstate == "28000")
    }

    @Test func directTLSNeedsALPN() {
        var m = machine(.require)
        #expect(m.clientHelloReceived() == [.startTLS(direct: true)])
        guard case .fail(.protocolViolation) = m.tlsEstablished(serverName: nil, alpn: nil).first else {
            Issue.record("direct TLS without ALPN accepted")
            return
        }
        var ok = machine(.require)
        _ = ok.clientHelloReceived()
        #expect(ok.tlsEstablished(serverName: "acme.db.example.com", alpn: "postgresql") == [])
        let bare = StartupPacket.startup(version: .v3_0, parameters: [StartupParameter(name: "user", value: "bob")])
        #expect(ok.packetReceived(bare, moreBuffered: false) == [.route(routed, negotiate: nil)])
    }

    @Test func directTLSWhenDisabledIsClosedSilently() {
        var m = machine(.disable)
        #expect(m.clientHelloReceived() == [.close])
    }

    @Test func cancelRequestsWorkInPlaintextAndInsideTLS() {
        var plain = machine(.allow)
        #expect(plain.packetReceived(.cancelRequest(processID: 7, secretKey: [1, 2, 3, 4]), moreBuffered: false)
            == [.cancel(processID: 7, secretKey: [1, 2, 3, 4])])
        var tls = machine(.require)
        _ = tls.packetReceived(.sslRequest, moreBuffered: false)
        _ = tls.tlsEstablished(serverName: nil, alpn: nil)
        #expect(tls.packetReceived(.cancelRequest(processID: 9, secretKey: [9, 9, 9, 9]), moreBuffered: false)
            == [.cancel(processID: 9, secretKey: [9, 9, 9, 9])])
    }

    @Test func newerMinorVersionsAreNegotiatedDownTo3_0() {
        var m = machine(.allow)
        let newer = StartupPacket.startup(version: .v3_2, parameters: [
            StartupParameter(name: "user", value: "bob@acme"), StartupParameter(name: "_pq_.test", value: "1"),
        ])
        #expect(m.packetReceived(newer, moreBuffered: false) == [
            .route(
                RouteRequest(tenant: routed.tenant, parameters: routed.parameters, unrecognizedOptions: ["_pq_.test"]),
                negotiate: NegotiateProtocolVersion(newestMinor: 0, unrecognizedOptions: ["_pq_.test"])
            ),
        ])
    }

    @Test func repeatedSSLRequestsAndLateHandshakesAreViolations() {
        var m = machine(.allow)
        _ = m.packetReceived(.sslRequest, moreBuffered: false)
        _ = m.tlsEstablished(serverName: nil, alpn: nil)
        guard case .fail(.protocolViolation) = m.packetReceived(.sslRequest, moreBuffered: false).first else {
            Issue.record("SSL request inside TLS accepted")
            return
        }
    }

    @Test func decodeErrorsAndTimeoutsFail() {
        var m = machine(.allow)
        #expect(m.decodeFailed(.lengthTooLong(10001)) == [.fail(.badStartupPacket(WireError.lengthTooLong(10001).description))])
        var slow = machine(.allow)
        #expect(slow.timedOut() == [.fail(.startupTimeout)])
        var done = machine(.allow)
        _ = done.packetReceived(startup, moreBuffered: false)
        #expect(done.timedOut() == [])
    }
}
