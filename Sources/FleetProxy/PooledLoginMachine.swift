import NIOCore

/// The pooled login's decisions as a value, with time passed in: so far the wait for a
/// connection slot after the tenant answered 53300 ("too many clients"). The handler asks it and
/// runs the action.
struct PooledLoginMachine: Equatable {
    enum SlotAction: Equatable {
        /// The wait is over: the tenant's refusal goes to the client (and the slot-wait metric
        /// counts a refusal).
        case refuse
        /// Give back the slots of idle pooled sessions this client cannot use, then say
        /// whether sessions of its kind are lent here (`trimmed(hasLent:attempt:)`).
        case trim
        /// Queue for the next session of the client's kind, until the deadline.
        case waitForSession(until: NIODeadline)
        /// None of its kind is lent here, so only a slot freed elsewhere helps: ask again soon.
        case retry(after: TimeAmount)
    }

    /// How long a client waits in line (for a connection slot of its tenant, or its turn to log
    /// in a new session): a burst of clients larger than max_connections waits for sessions to
    /// come back instead of failing at once. Then it tries once more, and a refusal of the
    /// tenant's (53300) is passed on.
    static let slotWait = TimeAmount.seconds(3)

    /// Set by the first wait or refusal; every later wait ends by the same time.
    private(set) var slotDeadline: NIODeadline?
    /// The client waited for a slot (for the metric).
    private(set) var waitedForSlot = false

    /// The client queues for a session (`saturated`: because its tenant has no slot free).
    mutating func queued(now: NIODeadline, saturated: Bool) -> NIODeadline {
        if saturated { waitedForSlot = true }
        return deadline(from: now)
    }

    /// The tenant refused a new session for want of a slot.
    mutating func slotRefused(now: NIODeadline) -> SlotAction {
        let deadline = deadline(from: now)
        waitedForSlot = true
        return now < deadline ? .trim : .refuse
    }

    /// After `.trim`: wait where a session of the client's kind will come back, else retry after
    /// 25 ms × attempt (at most 200 ms).
    func trimmed(hasLent: Bool, attempt: Int) -> SlotAction {
        guard let slotDeadline else { return .refuse }
        return hasLent ? .waitForSession(until: slotDeadline) : .retry(after: .milliseconds(25 * Int64(min(max(attempt, 1), 8))))
    }

    private mutating func deadline(from now: NIODeadline) -> NIODeadline {
        let deadline = slotDeadline ?? now + Self.slotWait
        slotDeadline = deadline
        return deadline
    }
}
