import Logging
import NIOCore
import Synchronization

/// How many descriptors the daemon has open, cheaply enough to ask on every accept: the sockets
/// the proxy opens and closes are counted as it does so (an atomic add each); everything else
/// the daemon holds changes slowly and is measured (`measure`, the process's whole count) at
/// most every `refreshInterval`, when a client arrives.
public final class DescriptorGauge: Sendable {
    public let headroom: DescriptorHeadroom
    /// How long a measurement of the rest of the daemon stands: longer than an accept, shorter
    /// than the daemon takes to open a reserve's worth of files (250 ms).
    let refreshInterval: Duration

    private let sockets = Atomic<Int>(0)
    /// One per admitted client that has no server socket yet: in a burst, hundreds are admitted
    /// before the first of them reaches its server (TLS, then SCRAM), and each will need one.
    private let reserved = Atomic<Int>(0)
    private struct Others {
        var count = 0
        var measuredAt: ContinuousClock.Instant?
    }
    private let others = Mutex(Others())
    private let measure: @Sendable () -> Int?
    /// Whether the last client was refused for want of descriptors: the log says when that
    /// starts and ends, not once per client.
    private let short = Atomic<Bool>(false)

    /// `limit`: the daemon's soft RLIMIT_NOFILE; `measure`: the descriptors it has open now.
    public init(limit: Int, refreshInterval: Duration = .milliseconds(250), measure: @escaping @Sendable () -> Int?) {
        headroom = DescriptorHeadroom(limit: limit)
        self.refreshInterval = refreshInterval
        self.measure = measure
    }

    /// A gauge that never runs short: for proxies whose descriptors nobody measures (tests).
    public static func unlimited() -> DescriptorGauge { DescriptorGauge(limit: Int.max / 2, measure: { 0 }) }

    /// Counts `channel`'s socket until it closes.
    func track(_ channel: any Channel) {
        sockets.add(1, ordering: .relaxed)
        channel.closeFuture.whenComplete { _ in self.sockets.subtract(1, ordering: .relaxed) }
    }

    /// The proxy's sockets open now.
    public var proxySockets: Int { sockets.load(ordering: .relaxed) }

    /// Descriptors in use now, or promised to admitted clients' servers, as well as the gauge knows.
    public var inUse: Int { proxySockets + reserved.load(ordering: .relaxed) + othersNow() }

    /// Nil when a client just accepted may have a session: a descriptor is then set aside for
    /// its server until `releaseReservation()` (it reached its server, or closed). Otherwise
    /// the error it gets. `onShortage` runs when refusals start (to close idle pooled server
    /// connections).
    func admit(logger: Logger, onShortage: () -> Void = {}) -> ProxyError? {
        let used = inUse
        let refused = !headroom.admits(inUse: used)
        if !refused { reserved.add(1, ordering: .relaxed) }
        if short.exchange(refused, ordering: .relaxed) != refused {
            let metadata: Logger.Metadata = ["in_use": "\(used)", "limit": "\(headroom.limit)", "proxy_sockets": "\(proxySockets)"]
            if refused {
                onShortage()
                logger.warning("out of file descriptors: the proxy refuses new clients (53300) until connections close", metadata: metadata)
            } else {
                logger.info("file descriptors free again: the proxy accepts new clients", metadata: metadata)
            }
        }
        return refused ? .outOfDescriptors(inUse: used, limit: headroom.limit) : nil
    }

    /// An admitted client's server socket is open (and counted), or the client is gone.
    func releaseReservation() {
        reserved.subtract(1, ordering: .relaxed)
    }

    /// Whether the listening sockets may accept now.
    var acceptsMore: Bool { headroom.accepts(inUse: inUse) }

    private func othersNow() -> Int {
        let now = ContinuousClock.now
        return others.withLock { others in
            if let at = others.measuredAt, now - at < refreshInterval { return others.count }
            if let total = measure() { others.count = max(0, total - sockets.load(ordering: .relaxed)) }
            others.measuredAt = now
            return others.count
        }
    }
}
