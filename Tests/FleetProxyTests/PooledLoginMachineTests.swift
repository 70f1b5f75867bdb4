import NIOCore
import PGWire
import Testing

@testable import FleetProxy

@Suite struct PooledLoginMachineTests {
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    @Test func aRefusalWithinTheWaitTrimsThenWaitsWhereSessionsOfItsKindAreLent() {
        var machine = PooledLoginMachine(user: "alice", tenant: "acme")
        #expect(machine.slotRefused(now: start) == .trim)
        #expect(machine.waitedForSlot)
        #expect(machine.trimmed(hasLent: true, attempt: 1) == .waitForSession(until: start + .seconds(3)))
    }

    @Test func withNoneLentHereItAsksAgainLaterEachTime() {
        var machine = PooledLoginMachine(user: "alice", tenant: "acme")
        #expect(machine.slotRefused(now: start) == .trim)
        #expect(machine.trimmed(hasLent: false, attempt: 1) == .retry(after: .milliseconds(25)))
        #expect(machine.trimmed(hasLent: false, attempt: 3) == .retry(after: .milliseconds(75)))
        #expect(machine.trimmed(hasLent: false, attempt: 50) == .retry(after: .milliseconds(200)))
    }

    @Test func theDeadlineIsSetOnceAndARefusalAfterItIsPassedOn() {
        var machine = PooledLoginMachine(user: "alice", tenant: "acme")
        #expect(machine.slotRefused(now: start) == .trim)
        // Later refusals and waits keep the first deadline.
        #expect(machine.slotRefused(now: start + .seconds(2)) == .trim)
        #expect(machine.queued(now: start + .seconds(2), saturated: false) == start + .seconds(3))
        #expect(machine.slotRefused(now: start + .seconds(3)) == .refuse)
    }

    @Test func queueingStartsTheWaitAndCountsOnlyASaturatedTenant() {
        var machine = PooledLoginMachine(user: "alice", tenant: "acme")
        #expect(machine.queued(now: start, saturated: false) == start + .seconds(3))
        #expect(!machine.waitedForSlot)
        #expect(machine.queued(now: start + .seconds(1), saturated: true) == start + .seconds(3))
        #expect(machine.waitedForSlot)
    }
}

/// The whole pooled login, event by event (RFC 7677's example exchange for the SCRAM part).
@Suite struct PooledLoginFlowTests {
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
    let salt = Scram.decode("W22ZaJ0SNY7soEsUEjb6gQ==")!
    let serverNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    let clientFirst = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    let serverFirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    let clientFinal = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    let serverFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    let session = PoolState.ServerID(raw: 7)
    let tooMany = ErrorResponse(severity: "FATAL", sqlstate: "53300", message: "sorry, too many clients already")

    var verifier: ScramVerifier { ScramVerifier.make(password: "pencil", salt: salt, iterations: 4096) }
    var clientKey: [UInt8] {
        Scram.hmac(key: Scram.pbkdf2(password: Array("pencil".utf8), salt: salt, iterations: 4096), "Client Key")
    }

    func password(_ bytes: [UInt8]) -> PooledLoginMachine.Event {
        .message(RawMessage(type: FrontendMessageType.password, body: ByteBuffer(bytes: bytes)))
    }

    func initialResponse(mechanism: String = "SCRAM-SHA-256", _ data: String) -> PooledLoginMachine.Event {
        var body = ByteBuffer()
        body.writeString(mechanism)
        body.writeInteger(UInt8(0))
        body.writeInteger(Int32(data.utf8.count))
        body.writeString(data)
        return .message(RawMessage(type: FrontendMessageType.password, body: body))
    }

    /// A machine past the SCRAM check, asking the pool for a session.
    func authenticated() -> PooledLoginMachine {
        var machine = PooledLoginMachine(user: "user", tenant: "acme")
        _ = machine.event(.verifierLookedUp(verifier, serverNonce: serverNonce))
        _ = machine.event(initialResponse(clientFirst))
        _ = machine.event(password(Array(clientFinal.utf8)))
        return machine
    }

    func opening() -> PooledLoginMachine {
        var machine = authenticated()
        _ = machine.event(.pool(.mustOpen))
        return machine
    }

    @Test func noVerifierGoesDirect() {
        var machine = PooledLoginMachine(user: "user", tenant: "acme")
        #expect(machine.event(.verifierLookedUp(nil)) == [.goDirect])
        #expect(machine.event(initialResponse(clientFirst)) == [])
    }

    @Test func theRightProofIsAnsweredAndTheSessionCheckedOut() {
        var machine = PooledLoginMachine(user: "user", tenant: "acme")
        #expect(machine.event(.verifierLookedUp(verifier, serverNonce: serverNonce)) == [.readAuthentication])
        #expect(machine.event(initialResponse(clientFirst)) == [.sendServerFirst(Array(serverFirst.utf8))])
        #expect(machine.event(password(Array(clientFinal.utf8))) == [.sendServerFinal(Array(serverFinal.utf8)), .checkOut])
    }

    @Test func aWrongProofFailsAsTheUser() {
        var machine = PooledLoginMachine(user: "user", tenant: "acme")
        let wrong = ScramVerifier.make(password: "pencils", salt: salt, iterations: 4096)
        _ = machine.event(.verifierLookedUp(wrong, serverNonce: serverNonce))
        _ = machine.event(initialResponse(clientFirst))
        #expect(machine.event(password(Array(clientFinal.utf8))) == [.fail(.authenticationFailed(user: "user"))])
        #expect(machine.event(.pool(.mustOpen)) == [])
    }

    @Test func anotherMechanismOrChannelBindingIsUnsupported() {
        var machine = PooledLoginMachine(user: "user", tenant: "acme")
        _ = machine.event(.verifierLookedUp(verifier, serverNonce: serverNonce))
        #expect(machine.event(initialResponse(mechanism: "SCRAM-SHA-1", clientFirst)) == [.fail(.unsupportedAuthentication("SASL mechanism not supported"))])

        var binding = PooledLoginMachine(user: "user", tenant: "acme")
        _ = binding.event(.verifierLookedUp(verifier, serverNonce: serverNonce))
        #expect(
            binding.event(initialResponse("p=tls-server-end-point,,n=,r=abc"))
                == [.fail(.unsupportedAuthentication("channel binding (SCRAM-SHA-256-PLUS was not offered)"))]
        )
    }

    @Test func malformedMessagesAreProtocolViolations() {
        let malformed = PooledLoginMachine.Action.fail(.protocolViolation("malformed SCRAM message"))
        for event in [
            password(Array("SCRAM-SHA-256".utf8)),  // no NUL
            password(Array("SCRAM-SHA-256".utf8) + [0, 0, 0, 0, 9, 1]),  // data shorter than its length
            password(Array("SCRAM-SHA-256".utf8) + [0, 0xFF, 0xFF, 0xFF, 0xFF]),  // negative length
            initialResponse("x,,n=user,r=abc"),
        ] {
            var machine = PooledLoginMachine(user: "user", tenant: "acme")
            _ = machine.event(.verifierLookedUp(verifier, serverNonce: serverNonce))
            #expect(machine.event(event) == [malformed])
        }
        var machine = PooledLoginMachine(user: "user", tenant: "acme")
        _ = machine.event(.verifierLookedUp(verifier, serverNonce: serverNonce))
        _ = machine.event(initialResponse(clientFirst))
        #expect(machine.event(password(Array("c=biws,r=x".utf8))) == [malformed])

        var unframed = PooledLoginMachine(user: "user", tenant: "acme")
        _ = unframed.event(.verifierLookedUp(verifier, serverNonce: serverNonce))
        #expect(unframed.event(.invalidMessage) == [.fail(.protocolViolation("invalid authentication message"))])
    }

    @Test func terminateInsteadOfThePasswordCloses() {
        var machine = PooledLoginMachine(user: "user", tenant: "acme")
        _ = machine.event(.verifierLookedUp(verifier, serverNonce: serverNonce))
        #expect(machine.event(.message(RawMessage(type: FrontendMessageType.terminate, body: ByteBuffer()))) == [.close])
        #expect(machine.event(initialResponse(clientFirst)) == [])
    }

    @Test func anIdleSessionBeginsAtOnce() {
        var machine = authenticated()
        #expect(machine.event(.pool(.idle(session))) == [.begin(session)])
    }

    @Test func aNewSessionIsOpenedWithTheClientKeyAndBegins() {
        var machine = authenticated()
        #expect(machine.event(.pool(.mustOpen)) == [.open(verifier: verifier, clientKey: clientKey)])
        #expect(machine.event(.opened(session)) == [.begin(session)])
    }

    @Test func theClientQueuesAndGetsASessionOrItsTurn() {
        var machine = authenticated()
        #expect(machine.event(.pool(.shouldWait(saturated: false, now: start))) == [.wait(until: start + .seconds(3))])
        #expect(machine.event(.resumed(session)) == [.begin(session)])

        var turn = authenticated()
        _ = turn.event(.pool(.shouldWait(saturated: false, now: start)))
        #expect(turn.event(.resumed(nil)) == [.checkOut])
        // Its turn came: it logs in a new session even if the pool advises to queue.
        #expect(turn.event(.pool(.shouldWait(saturated: false, now: start))) == [.open(verifier: verifier, clientKey: clientKey)])
    }

    @Test func aSaturatedTenantsWaitIsCountedWhenServed() {
        var machine = authenticated()
        _ = machine.event(.pool(.shouldWait(saturated: true, now: start)))
        #expect(machine.event(.resumed(session)) == [.slotWaitEnded(served: true), .begin(session)])
    }

    @Test func tooManyClientsWithinTheWaitTrimsThenWaitsOrRetries() {
        var machine = opening()
        #expect(machine.event(.refused(tooMany, now: start)) == [.trim])
        #expect(machine.event(.trimmed(hasLent: true)) == [.wait(until: start + .seconds(3))])
        #expect(machine.event(.resumed(session)) == [.slotWaitEnded(served: true), .begin(session)])

        var retrying = opening()
        _ = retrying.event(.refused(tooMany, now: start))
        #expect(retrying.event(.trimmed(hasLent: false)) == [.retry(after: .milliseconds(25))])
        #expect(retrying.event(.retryTimerFired) == [.checkOut])
        #expect(retrying.event(.pool(.mustOpen)) == [.open(verifier: verifier, clientKey: clientKey)])
        #expect(retrying.event(.refused(tooMany, now: start + .seconds(1))) == [.trim])
        #expect(retrying.event(.trimmed(hasLent: false)) == [.retry(after: .milliseconds(50))])
    }

    @Test func tooManyClientsAfterTheDeadlineIsPassedOn() {
        var machine = opening()
        _ = machine.event(.refused(tooMany, now: start))
        _ = machine.event(.trimmed(hasLent: false))
        _ = machine.event(.retryTimerFired)
        _ = machine.event(.pool(.mustOpen))
        #expect(machine.event(.refused(tooMany, now: start + .seconds(3))) == [.slotWaitEnded(served: false), .refuse(tooMany, label: "server_refused")])
    }

    @Test func otherRefusalsArePassedOnAsTheyAre() {
        let noDatabase = ErrorResponse(severity: "FATAL", sqlstate: "3D000", message: "database \"x\" does not exist")
        var machine = opening()
        #expect(machine.event(.refused(noDatabase, now: start)) == [.refuse(noDatabase, label: "server_refused")])
    }

    @Test func anotherLoginFailureMeansTheBackendIsUnavailable() {
        var machine = opening()
        #expect(machine.event(.openFailed) == [.fail(.backendUnavailable("acme"))])
        #expect(machine.event(.opened(session)) == [])
    }
}
