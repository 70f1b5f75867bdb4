#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import FleetCore
import Hummingbird
import Logging

/// The API server on the unix socket at `socketPath`, ready to run as a `Service`.
///
/// Before binding it refuses to take over a socket another daemon still answers on; a stale
/// socket file left by a daemon that died is removed by the bind. Once bound the socket is made
/// 0600: only the daemon's user (root, usually) may talk to it. The run directory is 0700 too, so
/// the moment between bind and chmod exposes nothing.
public func buildApplication(router: Router<BasicRequestContext>, socketPath: String, logger: Logger) -> some ApplicationProtocol {
    var app = Application(
        router: router,
        configuration: ApplicationConfiguration(address: .unixDomainSocket(path: socketPath), serverName: nil),
        onServerRunning: { _ in
            if chmod(socketPath, 0o600) != 0 {
                let reason = String(cString: strerror(errno))
                logger.error("cannot make the API socket private (mode 0600)", metadata: [APILogKey.socket: "\(socketPath)", APILogKey.error: "\(reason)"])
            } else {
                logger.info("API listening", metadata: [APILogKey.socket: "\(socketPath)"])
            }
        },
        logger: logger
    )
    app.beforeServerStarts {
        if UnixSocketProbe.isAnswering(path: socketPath) {
            throw FleetError.conflict("another pgfleet serve is already listening on \(socketPath)")
        }
    }
    return app
}

/// Whether something accepts connections on a unix socket path.
enum UnixSocketProbe {
    static func isAnswering(path: String) -> Bool {
        #if canImport(Darwin)
        let descriptor = socket(AF_UNIX, SOCK_STREAM, 0)
        #else
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        #endif
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        let pathBytes = Array(path.utf8)
        guard pathBytes.count < capacity else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
            raw[pathBytes.count] = 0
        }
        let result = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        return result == 0
    }
}
