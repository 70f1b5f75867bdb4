/// When the daemon's descriptors run short, which clients the proxy still serves. Pure: the
/// counts come from a `DescriptorGauge`.
///
/// Every proxied session holds two descriptors (the client's socket and its server's), briefly
/// a third (a verifier lookup or a cancel). Once accept() itself fails with EMFILE a client can
/// only wait in the listen backlog (NIO's AcceptBackoffHandler retries once a second) and never
/// learns why, while the rest of the daemon (its catalog, log files, the pipes of the programs it
/// runs) fails too. So the proxy stops short of the limit in two steps: below `reserve` + one
/// session it still accepts a client, to answer it 53300 and close; below half the reserve it
/// stops accepting until descriptors are free again, so even refusals cannot use up the rest.
public struct DescriptorHeadroom: Sendable, Equatable {
    /// Descriptors one more session may take.
    public static let perSession = 3
    /// Connections NIO may accept in one go before the gate looks again: `maxMessagesPerRead`
    /// (4) on each of the two listening sockets of a two-core host.
    public static let acceptBatch = 8

    /// The soft RLIMIT_NOFILE of the daemon.
    public let limit: Int
    /// Descriptors left to the rest of the daemon and to refusals in flight: a sixteenth of the
    /// limit, at least 32 (a tenant's start runs a dozen `postgres -C` with their pipes) and at
    /// most 1024.
    public let reserve: Int

    public init(limit: Int) {
        self.limit = limit
        reserve = min(1024, max(32, limit / 16))
    }

    /// Whether a client accepted with `inUse` descriptors open (its own socket counted) gets a session.
    public func admits(inUse: Int) -> Bool {
        limit - inUse >= reserve + Self.perSession
    }

    /// Whether the listening sockets may accept more now (each accepted client costs one
    /// descriptor even when it is refused).
    public func accepts(inUse: Int) -> Bool {
        limit - inUse > reserve / 2 + Self.acceptBatch
    }
}
