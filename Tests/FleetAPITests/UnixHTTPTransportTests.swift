#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import FleetClient
import FleetCore
import Foundation
import Synchronization
import Testing

/// FleetClient's transport against a server that answers byte for byte as a test scripts it: split
/// writes, pauses, early closes and answers no real daemon gives.
@Suite(.timeLimit(.minutes(1)))
struct UnixHTTPTransportTests {
    @Test func anAnswerSplitAcrossWritesIsReassembled() async throws {
        let status = try String(decoding: FleetJSON.makeEncoder().encode(Self.status), as: UTF8.self)
        let answer = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \(status.utf8.count)\r\n\r\n" + status
        let cut = answer.utf8.count / 2
        let answered = DispatchSemaphore(value: 0)
        try await withServer([
            .readRequest, .send(String(answer.prefix(20))), .pause(milliseconds: 20), .send(String(answer.dropFirst(20).prefix(cut))),
            .pause(milliseconds: 20), .send(String(answer.dropFirst(20 + cut))), .waitFor(answered),
        ]) { server in
            // The answer is complete at its last byte: the client returns while the server still
            // holds the connection open (until told, or 10 s), so no clock is involved.
            let status = try await server.client.status()
            answered.signal()
            #expect(status == Self.status)
        } after: { server in
            #expect(server.notes == ["signalled"], "the client waited for the server to close")
            let request = String(decoding: server.request, as: UTF8.self)
            #expect(request.hasPrefix("GET /v1/status HTTP/1.1\r\n"))
            #expect(request.contains("\r\nConnection: close\r\n"))
            #expect(request.hasSuffix("\r\n\r\n"))
        }
    }

    @Test func streamedProgressIsHandedOnBeforeTheAnswerEnds() async throws {
        let seenFirstEvent = DispatchSemaphore(value: 0)
        let progress = try Self.line(.progress("running initdb"))
        let result = try Self.line(StreamEvent(kind: .result, password: "secret"))
        let cut = progress.utf8.count / 2
        try await withServer([
            .readRequest,
            .send("HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"),
            .send(Self.chunk(String(progress.prefix(cut)))), .pause(milliseconds: 20), .send(Self.chunk(String(progress.dropFirst(cut)))),
            // The rest only once the client has shown the first line.
            .waitFor(seenFirstEvent),
            .send(Self.chunk(result) + "0\r\n\r\n"),
        ]) { server in
            let seen = Mutex<[String?]>([])
            let final = try await server.client.createTenant(CreateTenantRequest(name: "gamma")) { event in
                seen.withLock { $0.append(event.message) }
                seenFirstEvent.signal()
            }
            #expect(seen.withLock { $0 } == ["running initdb"])
            #expect(final.password == "secret")
        } after: { server in
            #expect(server.notes == ["signalled"])
            let request = String(decoding: server.request, as: UTF8.self)
            #expect(request.hasPrefix("POST /v1/tenants HTTP/1.1\r\n"))
            #expect(request.contains("\r\nContent-Type: application/json\r\n"))
            #expect(request.hasSuffix("\"name\":\"gamma\"}"))
        }
    }

    /// A daemon may refuse a request and close before reading all of it: its answer still counts.
    @Test func anAnswerGivenBeforeTheRequestWasReadIsStillRead() async throws {
        let refusal = try String(decoding: FleetJSON.makeEncoder().encode(APIErrorBody(.tenantExists("gamma"))), as: UTF8.self)
        try await withServer([
            .send("HTTP/1.1 409 Conflict\r\nContent-Length: \(refusal.utf8.count)\r\nConnection: close\r\n\r\n" + refusal),
        ]) { server in
            // Larger than the socket's buffers, so the client is still writing when the server closes.
            let request = CreateTenantRequest(name: "gamma", password: String(repeating: "p", count: 4 << 20))
            let error = await #expect(throws: APIErrorBody.self) { try await server.client.createTenant(request) }
            #expect(error?.code == "tenant_exists")
        }
    }

    @Test func aMalformedAnswerSaysSo() async throws {
        try await withServer([.readRequest, .send("SSH-2.0-OpenSSH_9.2\r\n\r\n")]) { server in
            let error = await #expect(throws: FleetError.self) { try await server.client.status() }
            #expect(error?.code == "failed")
            #expect(error?.description.contains("malformed HTTP answer") == true)
            #expect(error?.description.contains("GET /v1/status") == true)
        }
    }

    @Test func aTruncatedAnswerIsTheDaemonGoingAway() async throws {
        try await withServer([.readRequest, .send("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"version\":")]) { server in
            let error = await #expect(throws: FleetError.self) { try await server.client.status() }
            guard case .daemonUnavailable(let message) = error else {
                Issue.record("expected daemonUnavailable, got \(String(describing: error))")
                return
            }
            #expect(message.contains("closed the connection before finishing its answer to GET /v1/status"))
        }
        try await withServer([.readRequest]) { server in
            let error = await #expect(throws: FleetError.self) { try await server.client.status() }
            #expect(error?.code == "daemon_unavailable")
        }
    }

    @Test func anOversizedBodyIsRefused() async throws {
        let size = 64 << 20 + 1
        try await withServer([.readRequest, .send("HTTP/1.1 200 OK\r\nContent-Length: \(size)\r\n\r\n"), .sendFiller(count: size)]) { server in
            let error = await #expect(throws: FleetError.self) { try await server.client.listTenants() }
            #expect(error?.description.contains("larger than") == true)
        }
    }

    /// An error answer too large to be what it claims is cut short and reported by its status.
    @Test func anOversizedErrorBodyIsReportedByItsStatus() async throws {
        let size = 3 << 20
        let start = "{\"code\":\"x\",\"message\":\""
        try await withServer([
            .readRequest, .send("HTTP/1.1 500 Internal Server Error\r\nContent-Length: \(size)\r\n\r\n" + start),
            .sendFiller(count: size - start.utf8.count),
        ]) { server in
            let error = await #expect(throws: APIErrorBody.self) { try await server.client.status() }
            #expect(error?.code == "http_500")
            #expect(error?.message == "pgfleet serve answered HTTP 500 Internal Server Error")
        }
    }

    /// `logs --follow` ends when its task is cancelled, though the daemon sends nothing more.
    @Test func cancellingAFollowerWakesItsBlockedRead() async throws {
        let cancelled = DispatchSemaphore(value: 0)
        try await withServer([
            .readRequest, .send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + Self.chunk("one\n")), .waitFor(cancelled),
        ]) { server in
            let received = Mutex<[UInt8]>([])
            let follower = Task {
                try await server.client.logs(name: try TenantName(validating: "acme"), follow: true) { bytes in
                    received.withLock { $0 += bytes }
                }
            }
            while received.withLock({ $0.isEmpty }) { try await Task.sleep(for: .milliseconds(5)) }
            follower.cancel()
            await #expect(throws: CancellationError.self) { try await follower.value }
            cancelled.signal()
            #expect(received.withLock { $0 } == Array("one\n".utf8))
        }
    }

    // MARK: - A scripted server

    enum Step: Sendable {
        /// Reads the request head and a body of its Content-Length.
        case readRequest
        case send(String)
        /// Sends this many bytes of "x", or until the client hangs up.
        case sendFiller(count: Int)
        case pause(milliseconds: Int)
        /// Waits (up to 10 s) for the client to signal, and notes "signalled" or "timed out".
        case waitFor(DispatchSemaphore)
    }

    struct Recorded: Sendable {
        var request: [UInt8] = []
        var notes: [String] = []
    }

    /// Serves one connection on a thread of its own, step by step, then closes it.
    final class ScriptedServer: Sendable {
        let socketPath: String
        private let listener: Int32
        private let finished = DispatchSemaphore(value: 0)
        private let closed = Mutex(false)
        private let recorded = Mutex(Recorded())

        var client: FleetClient { FleetClient(socketPath: socketPath) }
        var request: [UInt8] { recorded.withLock { $0.request } }
        var notes: [String] { recorded.withLock { $0.notes } }

        init(socketPath: String, steps: [Step]) throws {
            self.socketPath = socketPath
            listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            try #require(listener >= 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(socketPath.utf8) + [0]) }
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            try #require(bound == 0)
            try #require(listen(listener, 4) == 0)
            Thread { [self] in
                serve(steps)
                finished.signal()
            }.start()
        }

        /// Waits for the script to end and closes the listener; a second call does nothing.
        func finish() {
            guard closed.withLock({ closed in defer { closed = true }; return !closed }) else { return }
            // Wakes an accept that no client came for (a test that failed early).
            shutdown(listener, Int32(SHUT_RDWR))
            finished.wait()
            close(listener)
        }

        private func serve(_ steps: [Step]) {
            let connection = accept(listener, nil, nil)
            guard connection >= 0 else { return }
            defer { close(connection) }
            for step in steps {
                switch step {
                case .readRequest:
                    readRequest(connection)
                case .send(let text):
                    guard sendAll(connection, Array(text.utf8)) else { return }
                case .sendFiller(let count):
                    let block = [UInt8](repeating: UInt8(ascii: "x"), count: 64 << 10)
                    var left = count
                    while left > 0 {
                        guard sendAll(connection, Array(block.prefix(left))) else { return }
                        left -= min(left, block.count)
                    }
                case .pause(let milliseconds):
                    usleep(useconds_t(milliseconds * 1000))
                case .waitFor(let semaphore):
                    let signalled = semaphore.wait(timeout: .now() + 10) == .success
                    recorded.withLock { $0.notes.append(signalled ? "signalled" : "timed out") }
                }
            }
        }

        private func readRequest(_ connection: Int32) {
            var bytes: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            var expected: Int?
            while expected.map({ bytes.count < $0 }) ?? true {
                let count = recv(connection, &buffer, buffer.count, 0)
                guard count > 0 else { break }
                bytes += buffer.prefix(count)
                if expected == nil, let end = bytes.firstRange(of: Array("\r\n\r\n".utf8)) {
                    let head = String(decoding: bytes[..<end.lowerBound], as: UTF8.self).lowercased()
                    let length = head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
                        .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
                    expected = end.upperBound + length
                }
            }
            recorded.withLock { $0.request = bytes }
        }

        private func sendAll(_ connection: Int32, _ bytes: [UInt8]) -> Bool {
            var offset = 0
            while offset < bytes.count {
                let sent = bytes.withUnsafeBytes { send(connection, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
                guard sent > 0 else { return false }
                offset += sent
            }
            return true
        }
    }

    func withServer(
        _ steps: [Step],
        _ body: (ScriptedServer) async throws -> Void,
        after: (ScriptedServer) throws -> Void = { _ in }
    ) async throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        try FileManager.default.createDirectory(atPath: dir.path + "/run", withIntermediateDirectories: true)
        let server = try ScriptedServer(socketPath: dir.path + "/run/api.sock", steps: steps)
        defer { server.finish() }
        try await body(server)
        server.finish()
        try after(server)
    }

    static let status = DaemonStatus(
        version: "0.1.0", root: "/var/lib/pgfleet", pid: 4242, isolated: true,
        startedAt: Date(timeIntervalSince1970: 1_700_000_000), tenants: 0, tenantsByState: [:], bundles: 1
    )

    static func line(_ event: StreamEvent) throws -> String {
        try String(decoding: FleetJSON.makeEncoder().encode(event), as: UTF8.self) + "\n"
    }

    static func chunk(_ text: String) -> String {
        String(text.utf8.count, radix: 16) + "\r\n" + text + "\r\n"
    }
}
