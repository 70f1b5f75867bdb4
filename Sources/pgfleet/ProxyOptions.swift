import ArgumentParser
import FleetCore
import FleetProxy
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL

extension TLSMode: ExpressibleByArgument {}

/// The proxy's options, shared by `serve` (which runs it beside the supervisor) and `proxy`.
struct ProxyOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Address the PostgreSQL proxy listens on, HOST:PORT; 'none' runs no proxy.", valueName: "host:port"))
    var listen = "127.0.0.1:6432"

    @Option(help: "TLS for clients: disable, allow (when the client asks) or require.")
    var tls: TLSMode = .allow

    @Option(help: ArgumentHelp("PEM certificate (chain) for TLS. Default: one generated once under ROOT/tls/.", valueName: "file"))
    var tlsCert: String?

    @Option(help: ArgumentHelp("PEM private key for --tls-cert.", valueName: "file"))
    var tlsKey: String?

    @Option(help: ArgumentHelp("Route TLS connections for <tenant>.<domain> by their server name (SNI).", valueName: "domain"))
    var sniDomain: String?

    @Option(help: "Seconds a client has to send its startup packet and reach its tenant.")
    var startupTimeout: Double = 10

    @Option(help: "Seconds a client waits for a suspended tenant to wake before it gets an error.")
    var wakeTimeout: Double = 30

    @Option(help: "Event-loop threads for the proxy (default: one per core).")
    var proxyThreads: Int?

    @Option(help: "Client connections allowed at once, overall.")
    var maxConnections = 10_000

    @Option(help: "Client connections allowed at once, per tenant.")
    var maxConnectionsPerTenant = 1_000

    @Option(help: ArgumentHelp(
        "Server connection pooling: on (the proxy checks SCRAM passwords itself and lends a server session to the next client of the same tenant, user, database and parameters) or off (every client gets a server connection of its own).",
        valueName: "on|off"))
    var serverPool: Switch = .on

    @Option(help: "Seconds an idle pooled server connection is kept.")
    var serverIdleTimeout: Double = 30

    enum Switch: String, ExpressibleByArgument {
        case on, off
    }

    var enabled: Bool { listen != "none" }

    func validate() throws {
        guard enabled else { return }
        _ = try hostAndPort()
        guard (tlsCert == nil) == (tlsKey == nil) else { throw ValidationError("--tls-cert and --tls-key go together") }
        if let proxyThreads, !(1...256).contains(proxyThreads) { throw ValidationError("--proxy-threads must be 1 to 256") }
        guard startupTimeout > 0, wakeTimeout > 0, maxConnections > 0, maxConnectionsPerTenant > 0, serverIdleTimeout > 0 else {
            throw ValidationError("--startup-timeout, --wake-timeout, --max-connections, --max-connections-per-tenant and --server-idle-timeout must be positive")
        }
        if let sniDomain, sniDomain.isEmpty || sniDomain.contains("/") || sniDomain.hasPrefix(".") {
            throw ValidationError("--sni-domain must be a domain name such as db.example.com")
        }
    }

    func hostAndPort() throws -> (host: String, port: Int) {
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (0...65535).contains(port) else {
            throw ValidationError("--listen must be HOST:PORT (e.g. 127.0.0.1:6432 or 0.0.0.0:5432), or 'none'")
        }
        var host = String(listen[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? "0.0.0.0" : host, port)
    }

    func configuration() throws -> ProxyConfiguration {
        let (host, port) = try hostAndPort()
        return ProxyConfiguration(
            host: host, port: port, tlsMode: tls, sniDomain: sniDomain,
            startupTimeout: .milliseconds(Int64(startupTimeout * 1000)), maxConnections: maxConnections,
            maxConnectionsPerTenant: maxConnectionsPerTenant, wakeTimeout: .milliseconds(Int64(wakeTimeout * 1000)),
            pool: PoolConfiguration(enabled: serverPool == .on, idleTimeout: .milliseconds(Int64(serverIdleTimeout * 1000)))
        )
    }

    func tlsContext(root: String) throws -> NIOSSLContext? {
        guard tls != .disable else { return nil }
        if let tlsCert, let tlsKey {
            return try TLSSetup.makeContext(files: .init(certificate: tlsCert, privateKey: tlsKey), generateIfMissing: false, hostNames: [])
        }
        var names = ["localhost"]
        if let sniDomain { names.append("*." + sniDomain) }
        return try TLSSetup.makeContext(files: TLSSetup.defaultFiles(root: root), generateIfMissing: true, hostNames: names)
    }

    /// The proxy's event loops: the shared group, or a group of its own with --proxy-threads.
    func eventLoopGroup() -> any EventLoopGroup {
        guard let proxyThreads else { return MultiThreadedEventLoopGroup.singleton }
        return MultiThreadedEventLoopGroup(numberOfThreads: proxyThreads)
    }

    /// What `tenant info` prints as the address to connect to.
    func endpoint() throws -> ProxyEndpoint? {
        guard enabled else { return nil }
        var (host, port) = try hostAndPort()
        if host == "0.0.0.0" || host == "::" { host = "127.0.0.1" }
        return ProxyEndpoint(host: host, port: port, tls: tls.rawValue, sniDomain: sniDomain)
    }
}
