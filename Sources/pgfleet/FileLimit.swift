import FleetProxy
import FleetSystem
import Logging

/// Raises the soft RLIMIT_NOFILE to the hard one (a proxy holds two descriptors per client),
/// says what it is, and returns the gauge the proxy refuses clients by before the daemon runs out.
func raiseFileLimit(logger: Logger) -> DescriptorGauge {
    let before = ResourceLimits.fileLimits()
    let raised = ResourceLimits.raiseFileLimit()
    let limits = ResourceLimits.fileLimits()
    let metadata: Logger.Metadata = ["soft": "\(limits.soft)", "hard": "\(limits.hard)", "was": "\(before.soft)"]
    if raised < 0 {
        logger.warning("could not raise the descriptor limit (RLIMIT_NOFILE) to its hard limit", metadata: metadata)
    } else {
        logger.info("descriptor limit (RLIMIT_NOFILE)", metadata: metadata)
    }
    let gauge = DescriptorGauge(limit: limits.soft, measure: { ResourceLimits.openDescriptors() })
    logger.debug("the proxy refuses new clients when fewer descriptors are free", metadata: [
        "free_below": "\(gauge.headroom.reserve + DescriptorHeadroom.perSession)", "in_use": "\(gauge.inUse)",
    ])
    return gauge
}
