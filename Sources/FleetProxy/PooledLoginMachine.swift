import NIOCore
import PGWire

/// The pooled login as a value, with time passed in: the proxy's SCRAM check of the client,
/// then a pooled session for it (an idle one, a place in line, or a new one, with the wait for
/// a connection slot after the tenant answered 53300). The handler feeds it what happened and
/// runs the actions it returns; it holds no channels, promises or closures.
struct PooledLoginMachine {
    enum Event: Equatable {
        /// The role's verifier was looked up (nil: none usable). `serverNonce` is passed in
        /// so that tests can fix it.
        case verifierLookedUp(ScramVerifier?, serverNonce: String = Scram.nonce())
        /// A message of the client's while it authenticates.
        case message(RawMessage)
        /// The client's bytes do not frame as a message.
        case invalidMessage
        /// After `.checkOut`: what this event loop's pool has for the client.
        case pool(PoolAnswer)
        /// After `.open`: the new session logged in.
        case opened(PoolState.ServerID)
        /// After `.open`: the tenant refused the login with this ErrorResponse.
        case refused(ErrorResponse, now: NIODeadline)
        /// After `.open`: the login failed otherwise (connect, protocol, timeout).
        case openFailed
        /// After `.trim`: whether sessions of the client's kind are lent here.
        case trimmed(hasLent: Bool)
        /// After `.wait`: a session came back for the client, or (nil) it is its turn to log in.
        case resumed(PoolState.ServerID?)
        /// After `.retry`: the delay is over.
        case retryTimerFired
    }

    enum PoolAnswer: Equatable {
        case idle(PoolState.ServerID)
        /// None idle and the client should queue (`saturated`: its tenant has no slot free).
        case shouldWait(saturated: Bool, now: NIODeadline)
        case mustOpen
    }

    enum Action: Equatable {
        /// Start reading the client's SASL messages (and those it sent already).
        case readAuthentication
        /// Authenticate with the tenant directly: the proxy has no verifier for the role.
        case goDirect
        /// AuthenticationSASLContinue with the server-first-message.
        case sendServerFirst([UInt8])
        /// AuthenticationSASLFinal with the server-final-message, then AuthenticationOk.
        case sendServerFinal([UInt8])
        /// Ask the pool for an idle session or whether to queue (answer: `.pool`).
        case checkOut
        /// Queue for the next session of the client's kind, or the turn to log in a new one
        /// (answer: `.resumed`).
        case wait(until: NIODeadline)
        /// Log in a new session (answer: `.opened`, `.refused` or `.openFailed`).
        case open(verifier: ScramVerifier, clientKey: [UInt8])
        /// Give back the slots of idle pooled sessions this client cannot use (answer: `.trimmed`).
        case trim
        /// Ask again after the delay (answer: `.retryTimerFired`).
        case retry(after: TimeAmount)
        /// The slot-wait metric: the client waited for a slot and got one or not.
        case slotWaitEnded(served: Bool)
        /// Lend this session to the client.
        case begin(PoolState.ServerID)
        /// Send this error and close.
        case fail(ProxyError)
        case refuse(ErrorResponse, label: String)
        /// Close without a word: the client gave up.
        case close
    }

    enum State {
        case lookingUp
        case authenticating(ScramServerExchange, receivedFirst: Bool)
        /// Authenticated; `attempt` counts the tries for a session, `queue`: whether the pool's
        /// advice to queue is taken (not after the client's turn came).
        case checkingOut(attempt: Int, queue: Bool)
        case waiting(attempt: Int)
        case opening(attempt: Int)
        case trimming(attempt: Int, ErrorResponse)
        case retrying(attempt: Int)
        case done
    }

    let user: String
    let tenant: String
    private(set) var state = State.lookingUp
    private var verifier: ScramVerifier?
    private var clientKey: [UInt8] = []

    init(user: String, tenant: String) {
        self.user = user
        self.tenant = tenant
    }

    mutating func event(_ event: Event) -> [Action] {
        switch (state, event) {
        case (.lookingUp, .verifierLookedUp(let verifier, let serverNonce)):
            guard let verifier else {
                state = .done
                return [.goDirect]
            }
            self.verifier = verifier
            state = .authenticating(ScramServerExchange(verifier: verifier, serverNonce: serverNonce), receivedFirst: false)
            return [.readAuthentication]
        case (.authenticating, .invalidMessage):
            return finish(.fail(.protocolViolation("invalid authentication message")))
        case (.authenticating(let exchange, let receivedFirst), .message(let message)):
            // A Terminate, or anything else, instead of the password: the client gave up.
            guard message.type == FrontendMessageType.password else { return finish(.close) }
            return authenticate(exchange, receivedFirst: receivedFirst, body: message.body)
        case (.checkingOut(let attempt, let queue), .pool(let answer)):
            switch answer {
            case .idle(let id): return begin(id)
            case .shouldWait(let saturated, let now) where queue:
                state = .waiting(attempt: attempt)
                return [.wait(until: queued(now: now, saturated: saturated))]
            case .shouldWait, .mustOpen:
                state = .opening(attempt: attempt)
                return [.open(verifier: verifier!, clientKey: clientKey)]
            }
        case (.opening, .opened(let id)), (.waiting, .resumed(let id?)):
            return begin(id)
        case (.waiting(let attempt), .resumed(nil)):
            state = .checkingOut(attempt: attempt + 1, queue: false)
            return [.checkOut]
        case (.opening(let attempt), .refused(let response, let now)) where response.sqlstate == "53300":
            guard slotRefused(now: now) == .trim else {
                return [.slotWaitEnded(served: false)] + finish(.refuse(response, label: "server_refused"))
            }
            state = .trimming(attempt: attempt, response)
            return [.trim]
        case (.opening, .refused(let response, _)):
            // The server's own refusal (no such database, …), as it is.
            return finish(.refuse(response, label: "server_refused"))
        case (.opening, .openFailed):
            return finish(.fail(.backendUnavailable(tenant)))
        case (.trimming(let attempt, let response), .trimmed(let hasLent)):
            switch trimmed(hasLent: hasLent, attempt: attempt) {
            case .waitForSession(let deadline):
                state = .waiting(attempt: attempt)
                return [.wait(until: deadline)]
            case .retry(let delay):
                state = .retrying(attempt: attempt)
                return [.retry(after: delay)]
            case .refuse, .trim:
                return finish(.refuse(response, label: "server_refused"))
            }
        case (.retrying(let attempt), .retryTimerFired):
            state = .checkingOut(attempt: attempt + 1, queue: true)
            return [.checkOut]
        default:
            // Late or out of place (after the end, or an answer to nothing asked): nothing to do.
            return []
        }
    }


    private mutating func authenticate(_ exchange: ScramServerExchange, receivedFirst: Bool, body: ByteBuffer) -> [Action] {
        var exchange = exchange
        do throws(ScramError) {
            if !receivedFirst {
                var body = body
                // Not UTF-8 or no NUL: malformed (the catch-all below).
                guard let mechanism = try? body.readCString("SASL mechanism") else {
                    return finish(.fail(.protocolViolation("malformed SCRAM message")))
                }
                guard mechanism == Scram.mechanism else {
                    return finish(.fail(.unsupportedAuthentication("SASL mechanism not supported")))
                }
                guard let length = body.readInteger(as: Int32.self), length >= 0, let data = body.readBytes(length: Int(length)) else {
                    return finish(.fail(.protocolViolation("malformed SCRAM message")))
                }
                let serverFirst = try exchange.receiveClientFirst(data)
                state = .authenticating(exchange, receivedFirst: true)
                return [.sendServerFirst(serverFirst)]
            }
            let (serverFinal, clientKey) = try exchange.receiveClientFinal(Array(body.readableBytesView))
            self.clientKey = clientKey
            state = .checkingOut(attempt: 1, queue: true)
            return [.sendServerFinal(serverFinal), .checkOut]
        } catch .wrongProof {
            return finish(.fail(.authenticationFailed(user: user)))
        } catch .unsupported(let what) {
            return finish(.fail(.unsupportedAuthentication(what)))
        } catch {
            return finish(.fail(.protocolViolation("malformed SCRAM message")))
        }
    }

    private mutating func begin(_ id: PoolState.ServerID) -> [Action] {
        state = .done
        return waitedForSlot ? [.slotWaitEnded(served: true), .begin(id)] : [.begin(id)]
    }

    private mutating func finish(_ action: Action) -> [Action] {
        state = .done
        return [action]
    }

    // The wait for a connection slot after the tenant answered 53300 ("too many clients").

    enum SlotAction: Equatable {
        /// The wait is over: the tenant's refusal goes to the client (and the slot-wait metric
        /// counts a refusal).
        case refuse
        /// Give back the slots of idle pooled sessions this client cannot use, then say
        /// whether sessions of its kind are lent here (`trimmed(hasLent:attempt:)`).
        case trim
        /// Queue for the next session of the client's kind, until the deadline.
        case waitForSession(until: NIODeadline)
        /// None of its kind is lent here, so only a slot freed elsewhere helps: ask again soon.
        case retry(after: TimeAmount)
    }

    /// How long a client waits in line (for a connection slot of its tenant, or its turn to log
    /// in a new session): a burst of clients larger than max_connections waits for sessions to
    /// come back instead of failing at once. Then it tries once more, and a refusal of the
    /// tenant's (53300) is passed on.
    static let slotWait = TimeAmount.seconds(3)

    /// Set by the first wait or refusal; every later wait ends by the same time.
    private(set) var slotDeadline: NIODeadline?
    /// The client waited for a slot (for the metric).
    private(set) var waitedForSlot = false

    /// The client queues for a session (`saturated`: because its tenant has no slot free).
    mutating func queued(now: NIODeadline, saturated: Bool) -> NIODeadline {
        if saturated { waitedForSlot = true }
        return deadline(from: now)
    }

    /// The tenant refused a new session for want of a slot.
    mutating func slotRefused(now: NIODeadline) -> SlotAction {
        let deadline = deadline(from: now)
        waitedForSlot = true
        return now < deadline ? .trim : .refuse
    }

    /// After `.trim`: wait where a session of the client's kind will come back, else retry after
    /// 25 ms × attempt (at most 200 ms).
    func trimmed(hasLent: Bool, attempt: Int) -> SlotAction {
        guard let slotDeadline else { return .refuse }
        return hasLent ? .waitForSession(until: slotDeadline) : .retry(after: .milliseconds(25 * Int64(min(max(attempt, 1), 8))))
    }

    private mutating func deadline(from now: NIODeadline) -> NIODeadline {
        let deadline = slotDeadline ?? now + Self.slotWait
        slotDeadline = deadline
        return deadline
    }
}
