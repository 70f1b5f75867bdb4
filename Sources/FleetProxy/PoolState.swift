import FleetCore
import NIOCore

/// The decisions of one event loop's pool of server sessions, with no channels, promises or
/// timers of its own: servers and waiting clients are ids, time is a value, and what is to be
/// done comes back as `Action`s for `ServerPool` to run. Each server is in exactly one state
/// (PgBouncer keeps one list per state for the same reason: counts cannot drift).
struct PoolState {
    struct ServerID: Hashable, Sendable {
        let raw: Int
    }

    struct WaiterID: Hashable, Sendable {
        let raw: Int
    }

    enum ServerState: Equatable {
        /// Logging in a new session.
        case opening
        case idle(since: NIODeadline)
        case lent
        /// Being reset after its client left; still counts as lent.
        case resetting
    }

    enum Action: Hashable {
        case close(ServerID)
        /// Keep `ServerID` idle: watch it for anything the server sends.
        case watchIdle(ServerID)
        /// After `delay` (zero: the next tick), the first waiter of the key still there gets its
        /// turn to log in (see `nextWaiter`).
        case offerTurn(PoolKey, after: TimeAmount)
        /// On the next tick, `WaiterID` gets its turn to log in (whether it takes it or not).
        case giveTurn(WaiterID)
        case scheduleTimeout(WaiterID, NIODeadline)
        case cancelTimeout(WaiterID)
        case scheduleProbe(PoolKey, after: TimeAmount)
        case cancelProbe(PoolKey)
    }

    /// New sessions of one key a pool logs in at once; more clients wait for one of those logins
    /// to end or for a session to come back. A burst then costs the tenant a few backends
    /// more than it has slots, not one per client (PgBouncer opens one at a time).
    static let maxOpening = 4
    /// How often one waiting client of a saturated key asks the tenant again: a slot may have
    /// been freed by a connection that is not the pool's.
    static let probeInterval = TimeAmount.seconds(1)
    /// A closed server's backend needs a moment to exit before its slot is free.
    static let slotFreeDelay = TimeAmount.milliseconds(10)

    private struct KeyState {
        var opening: Set<ServerID> = []
        /// Newest last: the most recently used session is lent first.
        var idle: [ServerID] = []
        var lent: Set<ServerID> = []
        var resetting: Set<ServerID> = []
        /// First come first served: the tenant had no connection slot left for a new one.
        var waiters = CircularBuffer<WaiterID>()
        /// The last new session was refused for want of a slot while sessions of the key were
        /// lent: its clients wait for one to come back, and one of them asks the tenant again
        /// each `probeInterval` (each refused login is a backend started for nothing and a
        /// FATAL line in the tenant's log).
        var saturated = false
        var probing = false

        var isEmpty: Bool {
            opening.isEmpty && idle.isEmpty && lent.isEmpty && resetting.isEmpty && waiters.isEmpty && !saturated && !probing
        }
    }

    let maxIdlePerKey: Int
    private var keys: [PoolKey: KeyState] = [:]
    private var servers: [ServerID: (key: PoolKey, state: ServerState)] = [:]
    private var waiterKeys: [WaiterID: PoolKey] = [:]
    private var nextID = 0

    init(maxIdlePerKey: Int) {
        self.maxIdlePerKey = maxIdlePerKey
    }

    // MARK: Questions

    func state(of server: ServerID) -> ServerState? {
        servers[server]?.state
    }

    /// Sessions of `key` lent to clients, or being reset after one.
    func lentCount(_ key: PoolKey) -> Int {
        keys[key].map { $0.lent.count + $0.resetting.count } ?? 0
    }

    func idleCount(_ key: PoolKey) -> Int { keys[key]?.idle.count ?? 0 }
    func openingCount(_ key: PoolKey) -> Int { keys[key]?.opening.count ?? 0 }
    func waiterCount(_ key: PoolKey) -> Int { keys[key]?.waiters.count ?? 0 }
    func isSaturated(_ key: PoolKey) -> Bool { keys[key]?.saturated ?? false }
    func hasLent(_ key: PoolKey) -> Bool { lentCount(key) > 0 }

    /// Whether a client of `key` without an idle session should queue rather than log in a new
    /// one: a session of `key` being reset is not promised to a client already in line, the
    /// tenant is out of slots while sessions of `key` are lent, or `maxOpening` logins of `key`
    /// are under way.
    func shouldWait(_ key: PoolKey) -> Bool {
        guard let state = keys[key] else { return false }
        return state.resetting.count > state.waiters.count || (state.saturated && lentCount(key) > 0)
            || state.opening.count >= Self.maxOpening
    }

    /// The sweep after the idle timeout: idle sessions idle since before `now - idleTimeout`,
    /// or `dead` ones, are closed.
    mutating func sweep(now: NIODeadline, idleTimeout: TimeAmount, dead: Set<ServerID> = []) -> [Action] {
        let cutoff = now - idleTimeout
        let stale = keys.values.flatMap(\.idle).filter { id in
            guard case .idle(let since) = servers[id]?.state else { return false }
            return since < cutoff || dead.contains(id)
        }
        for id in stale { remove(id) }
        return stale.map { .close($0) }
    }

    /// The tenant ran out of slots: its idle sessions are closed, but those of `spare`.
    mutating func closeIdle(of tenant: TenantName, except spare: PoolKey?) -> [Action] {
        let doomed = keys.filter { $0.key.tenant == tenant && $0.key != spare }.flatMap(\.value.idle)
        for id in doomed { remove(id) }
        return doomed.map { .close($0) }
    }

    /// Idle sessions, to check for dead ones before a sweep.
    var idleServers: [ServerID] { keys.values.flatMap(\.idle) }

    // MARK: Events

    /// A login of a new session of `key` starts.
    mutating func startOpening(_ key: PoolKey) -> ServerID {
        let id = ServerID(raw: allocate())
        move(id, key: key, to: .opening)
        return id
    }

    /// The login succeeded: the session is lent to the client that asked, and the next client
    /// in line may log in.
    mutating func opened(_ id: ServerID) -> [Action] {
        guard let key = servers[id]?.key else { return [] }
        keys[key]?.saturated = false
        move(id, key: key, to: .lent)
        return [.offerTurn(key, after: .zero)]
    }

    /// The login failed. A refusal for want of a slot (`outOfSlots`, 53300) while sessions of the
    /// key are lent marks the key saturated; otherwise the next client in line may log in.
    mutating func openFailed(_ id: ServerID, outOfSlots: Bool) -> [Action] {
        guard let key = servers[id]?.key else { return [] }
        remove(id)
        if outOfSlots && lentCount(key) > 0 {
            keys[key, default: KeyState()].saturated = true
            return probeIfWaiting(key)
        }
        return isSaturated(key) ? [] : [.offerTurn(key, after: .zero)]
    }

    /// The idle session of `key` to lend next, now lent; nil when none is idle. The caller
    /// `forget`s one it finds dead.
    mutating func checkout(_ key: PoolKey) -> ServerID? {
        guard let id = keys[key]?.idle.last else { return nil }
        move(id, key: key, to: .lent)
        return id
    }

    /// A server the pool no longer tracks (found dead at checkout, or not watchable when idle);
    /// its `closed` still frees a slot for a waiter.
    mutating func forget(_ id: ServerID) {
        remove(id)
    }

    /// The client left with the session idle: it is being reset.
    mutating func resetStarted(_ id: ServerID) {
        guard let key = servers[id]?.key, servers[id]?.state == .lent else { return }
        move(id, key: key, to: .resetting)
    }

    /// The reset failed: the session is closed, and counts as lent until it is.
    mutating func resetFailed(_ id: ServerID) -> [Action] {
        guard let key = servers[id]?.key, servers[id]?.state == .resetting else { return [] }
        move(id, key: key, to: .lent)
        return [.close(id)]
    }

    /// The reset went cleanly: the session is lent again (to be handed to the first waiter
    /// that takes it, see `nextWaiter`), until `checkIn`.
    mutating func resetSucceeded(_ id: ServerID) {
        guard let key = servers[id]?.key, servers[id]?.state == .resetting else { return }
        move(id, key: key, to: .lent)
    }

    /// No waiter took the reset session: it goes idle, or is closed when `active` is false or
    /// `maxIdlePerKey` of its key are idle.
    mutating func checkIn(_ id: ServerID, active: Bool, now: NIODeadline) -> [Action] {
        guard let key = servers[id]?.key else { return [] }
        var actions = unlend(id)
        if active && idleCount(key) < maxIdlePerKey {
            move(id, key: key, to: .idle(since: now))
            actions.append(.watchIdle(id))
        } else {
            remove(id)
            actions.append(.close(id))
        }
        return actions
    }

    /// A server connection closed: a lent one is no longer, and the tenant has a slot free
    /// again once its backend has exited, which the first client waiting for the key may take,
    /// or else one waiting for another key of the tenant (`trim` closes idle sessions for them).
    mutating func closed(_ id: ServerID, key: PoolKey) -> [Action] {
        var actions = unlend(id)
        remove(id)
        let next = waiterCount(key) > 0 ? key : keys.first { $0.key.tenant == key.tenant && !$0.value.waiters.isEmpty }?.key
        if let next { actions.append(.offerTurn(next, after: Self.slotFreeDelay)) }
        return actions
    }

    /// A client queues for the next session of `key` that comes back, or its turn to log in.
    mutating func wait(for key: PoolKey, until deadline: NIODeadline) -> (WaiterID, [Action]) {
        let id = WaiterID(raw: allocate())
        keys[key, default: KeyState()].waiters.append(id)
        waiterKeys[id] = key
        var actions: [Action] = [.scheduleTimeout(id, deadline)]
        if isSaturated(key) { actions += probeIfWaiting(key) }
        return (id, actions)
    }

    /// A waiter's deadline passed: it leaves the queue and gets its turn to log in (once more).
    mutating func timedOut(_ waiter: WaiterID) -> Bool {
        guard let key = waiterKeys.removeValue(forKey: waiter), let index = keys[key]?.waiters.firstIndex(of: waiter) else { return false }
        keys[key]!.waiters.remove(at: index)
        tidy(key)
        return true
    }

    /// The first waiter of `key`, out of the queue (its timeout cancelled, and the probe with
    /// the queue's last), to offer a session or a turn; nil when none waits.
    mutating func nextWaiter(_ key: PoolKey) -> (WaiterID, [Action])? {
        guard let waiter = keys[key]?.waiters.popFirst() else { return nil }
        waiterKeys[waiter] = nil
        var actions: [Action] = [.cancelTimeout(waiter)]
        if keys[key]!.waiters.isEmpty && keys[key]!.probing {
            keys[key]!.probing = false
            actions.append(.cancelProbe(key))
        }
        tidy(key)
        return (waiter, actions)
    }

    /// The probe timer of `key` fired: the caller offers the first waiter its turn, then
    /// `probeEnded` says whether to ask again.
    mutating func probeFired(_ key: PoolKey) {
        keys[key]?.probing = false
        tidy(key)
    }

    mutating func probeEnded(_ key: PoolKey) -> [Action] {
        isSaturated(key) ? probeIfWaiting(key) : []
    }

    // MARK: Bookkeeping

    /// `id` is back (idle, or closed): no longer lent. With none of its key lent any more,
    /// nothing will come back to the clients waiting for one: they all ask the tenant again.
    private mutating func unlend(_ id: ServerID) -> [Action] {
        guard let entry = servers[id], entry.state == .lent || entry.state == .resetting else { return [] }
        let key = entry.key
        move(id, key: key, to: nil)
        guard lentCount(key) == 0 else { return [] }
        keys[key]?.saturated = false
        var actions: [Action] = []
        while let (waiter, more) = nextWaiter(key) {
            actions += more
            actions.append(.giveTurn(waiter))
        }
        tidy(key)
        return actions
    }

    private mutating func probeIfWaiting(_ key: PoolKey) -> [Action] {
        guard let state = keys[key], !state.probing, !state.waiters.isEmpty else { return [] }
        keys[key]!.probing = true
        return [.scheduleProbe(key, after: Self.probeInterval)]
    }

    /// Puts `id` in exactly one state's list (none: `nil`, then it is in `servers` no more).
    private mutating func move(_ id: ServerID, key: PoolKey, to new: ServerState?) {
        var state = keys[key] ?? KeyState()
        state.opening.remove(id)
        state.idle.removeAll { $0 == id }
        state.lent.remove(id)
        state.resetting.remove(id)
        switch new {
        case .opening: state.opening.insert(id)
        case .idle: state.idle.append(id)
        case .lent: state.lent.insert(id)
        case .resetting: state.resetting.insert(id)
        case nil: break
        }
        keys[key] = state
        servers[id] = new.map { (key, $0) }
        tidy(key)
    }

    private mutating func remove(_ id: ServerID) {
        guard let key = servers[id]?.key else { return }
        move(id, key: key, to: nil)
    }

    private mutating func tidy(_ key: PoolKey) {
        if keys[key]?.isEmpty == true { keys[key] = nil }
    }

    private mutating func allocate() -> Int {
        nextID += 1
        return nextID
    }
}
