#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import FleetCore
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// One HTTP/1.1 exchange per connection over the daemon's unix socket. The CLI makes one or two
/// calls per run, so there is no pooling to get wrong.
///
/// A plain blocking socket rather than an event loop: a CLI process does one exchange, and
/// starting NIO's threads for it cost more than the exchange itself. The answer is complete when
/// its framing says so (Content-Length, the last chunk), so the daemon closing the connection
/// right after answering is never an error.
struct UnixHTTPTransport: Sendable {
    let socketPath: String
    /// For error messages: the root the socket belongs to, when known.
    let root: String?

    /// Bodies of ordinary answers and error answers are bounded; streams are bounded per line.
    static let maxBodyLength = 64 << 20
    static let maxErrorBodyLength = 1 << 20
    static let readSize = 64 << 10
    /// Bounds a connect to a daemon too busy to accept, and a write to one that stopped reading.
    static let sendTimeoutSeconds = 10

    /// Sends one request and hands the response body to `onBody` as it arrives, for a 2xx answer.
    /// Any other answer is thrown as its `APIErrorBody`.
    func exchange(
        method: HTTPMethod,
        path: String,
        body: [UInt8]? = nil,
        onBody: (ByteBuffer) async throws -> Void
    ) async throws {
        let request = try Self.request(method: method, path: path, body: body)
        let socket: UnixStreamSocket
        do {
            socket = try UnixStreamSocket()
        } catch {
            throw unavailable(error)
        }
        defer { socket.close() }
        // Each exchange gets its own serial queue for its blocking calls, so a long read (a
        // `logs --follow`, a tenant being created) holds neither a thread of Swift's cooperative
        // pool nor another exchange in the same process (the tests run many at once).
        let queue = DispatchQueue(label: "pgfleet.client.\(method.rawValue)")
        try await withTaskCancellationHandler {
            let socketPath = socketPath
            var input = try await Self.blocking(on: queue) { () throws -> [UInt8] in
                do {
                    try socket.connect(to: socketPath)
                } catch {
                    throw unavailable(error)
                }
                do {
                    try socket.send(request)
                } catch let error as SocketError where error.code == EPIPE || error.code == ECONNRESET {
                    // The daemon answered and closed before reading all of the request: read its answer.
                }
                return try socket.receive(upTo: Self.readSize)
            }
            var parser = HTTPResponseParser(requestMethod: method.rawValue)
            var head: HTTPResponseParser.Head?
            var errorBody: [UInt8] = []
            while true {
                try Task.checkCancellation()
                let events: [HTTPResponseParser.Event]
                do {
                    events = input.isEmpty ? try parser.finish() : try parser.feed(input)
                } catch HTTPResponseParser.ParseError.truncated {
                    throw Self.truncated(method, path)
                } catch {
                    throw Self.malformed(method, path, error)
                }
                for event in events {
                    switch event {
                    case .head(let responseHead):
                        head = responseHead
                    case .body(let bytes):
                        if let head, (200..<300).contains(head.status) {
                            try await onBody(ByteBuffer(bytes: bytes))
                        } else if errorBody.count < Self.maxErrorBodyLength {
                            errorBody += bytes.prefix(Self.maxErrorBodyLength - errorBody.count)
                        }
                    case .end:
                        guard let head else { throw Self.truncated(method, path) }
                        if (200..<300).contains(head.status) { return }
                        throw Self.errorBody(from: errorBody, head: head)
                    }
                }
                // `finish` either ends the answer or throws, so an empty read never comes back here.
                input = try await Self.blocking(on: queue) { try socket.receive(upTo: Self.readSize) }
            }
        } onCancel: {
            socket.cancel()
        }
    }

    /// The request's bytes: head and body in one write, so the daemon has the whole request at once.
    static func request(method: HTTPMethod, path: String, body: [UInt8]?) throws -> [UInt8] {
        // Paths are built by FleetClient from validated names; a space or line break would
        // change the request's meaning.
        guard path.hasPrefix("/"), !path.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7f }) else {
            throw FleetError.invalidRequest("cannot send a request for the path \(path.debugClipped)")
        }
        var head = "\(method.rawValue) \(path) HTTP/1.1\r\n"
        head += "Host: localhost\r\n"
        head += "User-Agent: pgfleet/\(PGFleetVersion.current)\r\n"
        head += "Connection: close\r\n"
        if let body {
            head += "Content-Type: application/json\r\n"
            head += "Content-Length: \(body.count)\r\n"
        } else if method != .GET && method != .HEAD {
            head += "Content-Length: 0\r\n"
        }
        head += "\r\n"
        return Array(head.utf8) + (body ?? [])
    }

    /// Runs blocking socket calls off Swift's cooperative pool, on the exchange's own queue.
    private static func blocking<T: Sendable>(
        on queue: DispatchQueue,
        _ work: @escaping @Sendable () throws -> T
    ) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try work() }) }
        }
    }

    /// Why the daemon cannot be reached, in words that say what to do.
    func unavailable(_ error: any Error) -> FleetError {
        let forRoot = root.map { " for root \($0)" } ?? ""
        let start = "Start it with `pgfleet serve` (or pass --root / set PGFLEET_ROOT)."
        switch (error as? SocketError)?.code {
        case ENOENT, ENOTDIR:
            return .daemonUnavailable("pgfleet serve is not running\(forRoot): no API socket at \(socketPath). \(start)")
        case ECONNREFUSED:
            return .daemonUnavailable(
                "pgfleet serve is not running\(forRoot): nothing is listening on the API socket \(socketPath) (left by a daemon that exited?). \(start)"
            )
        case EACCES, EPERM:
            return .daemonUnavailable(
                "permission denied on the API socket \(socketPath): it is private to the user running pgfleet serve; run this command as that user (usually root)"
            )
        case ENAMETOOLONG:
            return .daemonUnavailable("the API socket path \(socketPath) is too long for a unix socket; use a shorter --root")
        default:
            return .daemonUnavailable("cannot reach pgfleet serve\(forRoot) on the API socket \(socketPath): \(error). \(start)")
        }
    }

    private static func truncated(_ method: HTTPMethod, _ path: String) -> FleetError {
        .daemonUnavailable("pgfleet serve closed the connection before finishing its answer to \(method.rawValue) \(path) (did it stop?)")
    }

    private static func malformed(_ method: HTTPMethod, _ path: String, _ error: any Error) -> FleetError {
        .failed("malformed HTTP answer from the API socket to \(method.rawValue) \(path): \(error) (is it pgfleet serve listening there?)")
    }

    private static func errorBody(from bytes: [UInt8], head: HTTPResponseParser.Head) -> APIErrorBody {
        if let decoded = try? FleetJSON.makeDecoder().decode(APIErrorBody.self, from: Data(bytes)) {
            return decoded
        }
        return APIErrorBody(code: "http_\(head.status)", message: "pgfleet serve answered HTTP \(head.status) \(head.reason)")
    }
}

/// A failed socket call: which one, and its errno.
struct SocketError: Error, CustomStringConvertible {
    var operation: String
    var code: Int32

    init(_ operation: String, code: Int32 = errno) {
        self.operation = operation
        self.code = code
    }

    var description: String { "\(operation): \(String(cString: strerror(code)))" }
}

/// A blocking unix stream socket. Its calls run on one thread at a time; `cancel()` may come from
/// any thread and wakes a blocked call (the descriptor is shut down, not closed, so it cannot be
/// reused under that call).
final class UnixStreamSocket: Sendable {
    private struct State {
        var closed = false
        var cancelled = false
    }

    private let descriptor: Int32
    private let state = Mutex(State())

    init() throws(SocketError) {
        #if canImport(Darwin)
        descriptor = socket(AF_UNIX, SOCK_STREAM, 0)
        #else
        descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        #endif
        guard descriptor >= 0 else { throw SocketError("socket") }
        // On Linux this bounds connect() too, when the daemon's backlog is full.
        var timeout = timeval(tv_sec: UnixHTTPTransport.sendTimeoutSeconds, tv_usec: 0)
        _ = setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        #if canImport(Darwin)
        var on: Int32 = 1
        _ = setsockopt(descriptor, SOL_SOCKET, SO_NOSIGPIPE, &on, socklen_t(MemoryLayout<Int32>.size))
        #endif
    }

    deinit { close() }

    func connect(to path: String) throws(SocketError) {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard pathBytes.count < capacity else { throw SocketError("connect", code: ENAMETOOLONG) }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes + [0])
        }
        let result = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                retryingOnInterrupt { SystemCall.connect(descriptor, address, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
        }
        guard result == 0 || errno == EISCONN else { throw SocketError("connect") }
        // A cancel that came before the connection existed had nothing to shut down.
        state.withLock { state in
            if state.cancelled { _ = SystemCall.shutdown(descriptor, Int32(SHUT_RDWR)) }
        }
    }

    func send(_ bytes: [UInt8]) throws(SocketError) {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes { raw in
                retryingOnInterrupt { SystemCall.send(descriptor, raw.baseAddress! + offset, raw.count - offset, Self.sendFlags) }
            }
            guard sent >= 0 else { throw SocketError("send") }
            offset += sent
        }
    }

    /// Up to `count` bytes, as soon as any arrive; empty at the end of the stream.
    func receive(upTo count: Int) throws(SocketError) -> [UInt8] {
        var failure: Int32?
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            let received = retryingOnInterrupt { SystemCall.recv(descriptor, buffer.baseAddress, count, 0) }
            if received < 0 { failure = errno }
            initialized = max(received, 0)
        }
        if let failure {
            // A daemon that went away mid-answer; the parser calls that a truncated answer.
            if failure == ECONNRESET { return [] }
            throw SocketError("recv", code: failure)
        }
        return bytes
    }

    func cancel() {
        state.withLock { state in
            state.cancelled = true
            if !state.closed { _ = SystemCall.shutdown(descriptor, Int32(SHUT_RDWR)) }
        }
    }

    func close() {
        state.withLock { state in
            guard !state.closed else { return }
            state.closed = true
            _ = SystemCall.close(descriptor)
        }
    }

    #if canImport(Darwin)
    private static let sendFlags: Int32 = 0
    #else
    private static let sendFlags = Int32(MSG_NOSIGNAL)
    #endif
}

private func retryingOnInterrupt<T: BinaryInteger>(_ call: () -> T) -> T {
    while true {
        let result = call()
        if result >= 0 || errno != EINTR { return result }
    }
}

/// The C calls, named apart from the methods that wrap them.
private enum SystemCall {
    #if canImport(Glibc)
    static let connect = Glibc.connect
    static let send = Glibc.send
    static let recv = Glibc.recv
    static let shutdown = Glibc.shutdown
    static let close = Glibc.close
    #elseif canImport(Musl)
    static let connect = Musl.connect
    static let send = Musl.send
    static let recv = Musl.recv
    static let shutdown = Musl.shutdown
    static let close = Musl.close
    #elseif canImport(Darwin)
    static let connect = Darwin.connect
    static let send = Darwin.send
    static let recv = Darwin.recv
    static let shutdown = Darwin.shutdown
    static let close = Darwin.close
    #endif
}
