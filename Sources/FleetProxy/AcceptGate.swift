import NIOCore

/// On a listening socket: passes NIO's read (its accept loop) on only while the daemon has
/// descriptors to spare (`DescriptorGauge.acceptsMore`). Otherwise new clients wait in the
/// kernel's backlog and the gate looks again every `recheck`: no accept loop spinning on
/// EMFILE, and they are answered (53300 while descriptors stay short) as soon as some are free.
final class AcceptGate: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = Never

    static let recheck: TimeAmount = .milliseconds(100)

    private let descriptors: DescriptorGauge
    private let onHold: @Sendable (_ holding: Bool) -> Void
    private var scheduled: Scheduled<Void>?
    private var holding = false

    /// `onHold`: told when the gate starts and stops holding accepts back (for the log).
    init(descriptors: DescriptorGauge, onHold: @escaping @Sendable (_ holding: Bool) -> Void = { _ in }) {
        self.descriptors = descriptors
        self.onHold = onHold
    }

    func read(context: ChannelHandlerContext) {
        guard scheduled == nil else { return }
        if descriptors.acceptsMore {
            if holding {
                holding = false
                onHold(false)
            }
            context.read()
            return
        }
        if !holding {
            holding = true
            onHold(true)
        }
        scheduled = context.eventLoop.assumeIsolated().scheduleTask(in: Self.recheck) {
            self.scheduled = nil
            self.read(context: context)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        scheduled?.cancel()
        scheduled = nil
    }
}
