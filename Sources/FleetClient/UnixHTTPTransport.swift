#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import FleetCore
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// One HTTP/1.1 exchange per connection over the daemon's unix socket. The CLI makes one or two
/// calls per run, so there is no pooling to get wrong.
struct UnixHTTPTransport: Sendable {
    let socketPath: String
    /// For error messages: the root the socket belongs to, when known.
    let root: String?

    /// Bodies of ordinary answers and error answers are bounded; streams are bounded per line.
    static let maxBodyLength = 64 << 20
    static let maxErrorBodyLength = 1 << 20

    struct ResponseHead: Sendable {
        var status: Int
        var reason: String
    }

    /// Sends one request and hands the response body to `onBody` as it arrives, for a 2xx answer.
    /// Any other answer is thrown as its `APIErrorBody`.
    func exchange(
        method: HTTPMethod,
        path: String,
        body: [UInt8]? = nil,
        onBody: (ByteBuffer) async throws -> Void
    ) async throws {
        let channel = try await connect()
        try await channel.executeThenClose { inbound, outbound in
            var headers = HTTPHeaders()
            headers.add(name: "Host", value: "localhost")
            headers.add(name: "User-Agent", value: "pgfleet/\(PGFleetVersion.current)")
            headers.add(name: "Connection", value: "close")
            if let body {
                headers.add(name: "Content-Type", value: "application/json")
                headers.add(name: "Content-Length", value: String(body.count))
            }
            let head = HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: headers)
            var request: [HTTPClientRequestPart] = [.head(head)]
            if let body { request.append(.body(.byteBuffer(ByteBuffer(bytes: body)))) }
            request.append(.end(nil))
            do {
                // One write and one flush: the daemon may answer (and, with Connection: close,
                // close) as soon as it has the head, before a separate write of the end arrives.
                try await outbound.write(contentsOf: request)
            } catch let error as ChannelError where error == .ioOnClosedChannel || error == .outputClosed {
                // Closed after answering: the answer is still there to read.
            }

            var responseHead: ResponseHead?
            var errorBody = ByteBuffer()
            for try await part in inbound {
                switch part {
                case .head(let head):
                    responseHead = ResponseHead(status: Int(head.status.code), reason: head.status.reasonPhrase)
                case .body(let buffer):
                    guard let status = responseHead?.status else { continue }
                    if (200..<300).contains(status) {
                        try await onBody(buffer)
                    } else if errorBody.readableBytes < Self.maxErrorBodyLength {
                        var buffer = buffer
                        errorBody.writeBuffer(&buffer)
                    }
                case .end:
                    guard let responseHead else { throw Self.truncated(method, path) }
                    if (200..<300).contains(responseHead.status) { return }
                    throw Self.errorBody(from: errorBody, head: responseHead)
                }
            }
            throw Self.truncated(method, path)
        }
    }

    private func connect() async throws -> NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart> {
        do {
            return try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(10))
                .connect(unixDomainSocketPath: socketPath) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(
                            wrappingChannelSynchronously: channel
                        )
                    }
                }
        } catch {
            throw unavailable(error)
        }
    }

    /// Why the daemon cannot be reached, in words that say what to do.
    func unavailable(_ error: any Error) -> FleetError {
        let forRoot = root.map { " for root \($0)" } ?? ""
        let start = "Start it with `pgfleet serve` (or pass --root / set PGFLEET_ROOT)."
        let code = (error as? IOError)?.errnoCode
        switch code {
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
        default:
            if case SocketAddressError.unixDomainSocketPathTooLong = error {
                return .daemonUnavailable("the API socket path \(socketPath) is too long for a unix socket; use a shorter --root")
            }
            return .daemonUnavailable("cannot reach pgfleet serve\(forRoot) on the API socket \(socketPath): \(error). \(start)")
        }
    }

    private static func truncated(_ method: HTTPMethod, _ path: String) -> FleetError {
        .daemonUnavailable("pgfleet serve closed the connection before finishing its answer to \(method.rawValue) \(path) (did it stop?)")
    }

    private static func errorBody(from buffer: ByteBuffer, head: ResponseHead) -> APIErrorBody {
        if let decoded = try? FleetJSON.makeDecoder().decode(APIErrorBody.self, from: Data(buffer.readableBytesView)) {
            return decoded
        }
        return APIErrorBody(code: "http_\(head.status)", message: "pgfleet serve answered HTTP \(head.status) \(head.reason)")
    }
}
