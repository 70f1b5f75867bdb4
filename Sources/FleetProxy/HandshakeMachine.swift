import FleetCore
import PGWire

public enum TLSMode: String, Sendable, CaseIterable {
    /// No TLS: SSLRequest is answered 'N', direct TLS is refused.
    case disable
    /// TLS when the client asks; plaintext otherwise.
    case allow
    /// Plaintext startup packets are refused with a clear message.
    case require
}

/// The client side of a connection from its first byte until the proxy knows which tenant it
/// wants (or why it cannot have one). Pure: the caller decodes bytes and performs the actions.
public struct HandshakeMachine: Sendable {
    public enum Action: Sendable, Equatable {
        /// Answer an SSLRequest/GSSENCRequest with this single byte ('S' or 'N').
        case reply(UInt8)
        /// Put TLS in front. `direct`: the bytes already received are the ClientHello and belong to TLS.
        case startTLS(direct: Bool)
        /// Connect to the tenant; first tell the client the protocol was negotiated down, if needed.
        case route(RouteRequest, negotiate: NegotiateProtocolVersion?)
        /// A cancel request: forward it if the key is known, then close without a word either way.
        case cancel(processID: Int32, secretKey: [UInt8])
        /// Send this error and close.
        case fail(ProxyError)
        /// Close without a word: the peer does not speak our protocol (e.g. TLS when TLS is off).
        case close
    }

    enum State: Sendable, Equatable {
        case awaitingPacket(inTLS: Bool, answeredSSL: Bool)
        case tlsHandshake(direct: Bool)
        case routed
        case finished
    }

    public let tlsMode: TLSMode
    public let router: Router
    /// Set when the client cannot be served (the proxy is out of connections or descriptors):
    /// its startup packet is answered with this error. Not at once on connect: libpq sends an
    /// SSLRequest first and, since the fix for CVE-2024-10977, shows only "server sent an error
    /// response during SSL exchange" for an error in its place; answered normally (TLS or 'N'),
    /// it reads the error after its startup packet and prints it.
    public let refusal: ProxyError?
    private(set) var state: State = .awaitingPacket(inTLS: false, answeredSSL: false)
    /// The TLS server name the client sent, once TLS is up.
    public private(set) var serverName: String?

    public init(tlsMode: TLSMode, router: Router, refusal: ProxyError? = nil) {
        self.tlsMode = tlsMode
        self.router = router
        self.refusal = refusal
    }

    public var isInTLS: Bool {
        switch state {
        case .awaitingPacket(let inTLS, _): inTLS
        case .tlsHandshake, .routed, .finished: true
        }
    }

    /// The first byte of the connection is 0x16: a TLS ClientHello without an SSLRequest (PostgreSQL 17's direct TLS).
    public mutating func clientHelloReceived() -> [Action] {
        guard case .awaitingPacket(false, false) = state, tlsMode != .disable else {
            state = .finished
            return [.close]
        }
        state = .tlsHandshake(direct: true)
        return [.startTLS(direct: true)]
    }

    /// TLS is up. A direct TLS client must have negotiated ALPN "postgresql", as PostgreSQL itself demands.
    public mutating func tlsEstablished(serverName: String?, alpn: String?) -> [Action] {
        guard case .tlsHandshake(let direct) = state else { return fail(.protocolViolation("unexpected TLS handshake")) }
        if direct && alpn != "postgresql" {
            return fail(.protocolViolation("direct TLS connection without the ALPN protocol \"postgresql\""))
        }
        self.serverName = serverName
        state = .awaitingPacket(inTLS: true, answeredSSL: true)
        return []
    }

    /// One startup-phase packet. `moreBuffered`: bytes after it were already received.
    public mutating func packetReceived(_ packet: StartupPacket, moreBuffered: Bool) -> [Action] {
        guard case .awaitingPacket(let inTLS, let answeredSSL) = state else {
            return fail(.protocolViolation("unexpected startup packet"))
        }
        switch packet {
        case .sslRequest:
            if inTLS || answeredSSL { return fail(.protocolViolation("repeated SSL request")) }
            if tlsMode == .disable {
                state = .awaitingPacket(inTLS: false, answeredSSL: true)
                return [.reply(UInt8(ascii: "N"))]
            }
            // Bytes sent before our answer were written without knowing whether TLS would be
            // used: a man in the middle could have injected them (CVE-2021-23214).
            if moreBuffered { return fail(.bufferedBeforeTLS) }
            state = .tlsHandshake(direct: false)
            return [.reply(UInt8(ascii: "S")), .startTLS(direct: false)]
        case .gssEncRequest:
            if inTLS { return fail(.protocolViolation("GSSAPI encryption request inside TLS")) }
            return [.reply(UInt8(ascii: "N"))]
        case .cancelRequest(let processID, let secretKey):
            state = .finished
            return [.cancel(processID: processID, secretKey: secretKey)]
        case .startup(let version, let parameters):
            if !inTLS && tlsMode == .require { return fail(.tlsRequired) }
            if let refusal { return fail(refusal) }
            switch router.route(parameters: parameters, sni: serverName) {
            case .failure(let error):
                return fail(error)
            case .success(let request):
                state = .routed
                let negotiate = version.minor > 0 || !request.unrecognizedOptions.isEmpty
                    ? NegotiateProtocolVersion(newestMinor: 0, unrecognizedOptions: request.unrecognizedOptions)
                    : nil
                return [.route(request, negotiate: negotiate)]
            }
        }
    }

    public mutating func decodeFailed(_ error: WireError) -> [Action] {
        fail(ProxyError(error))
    }

    public mutating func timedOut() -> [Action] {
        switch state {
        case .routed, .finished: return []
        case .awaitingPacket, .tlsHandshake: return fail(.startupTimeout)
        }
    }

    private mutating func fail(_ error: ProxyError) -> [Action] {
        state = .finished
        return [.fail(error)]
    }
}
