import FleetCore

/// Operations that change a tenant, one at a time per tenant, in order of arrival: an operation on
/// a tenant that has one running waits for it (and for those that came before), then runs; on
/// other tenants operations run side by side.
///
/// It belongs to one actor (the fleet) and runs on it, so that its bookkeeping never crosses a
/// suspension point unguarded: a finished operation hands the tenant straight to the next in line
/// before anything else can run on the actor, so a newcomer cannot slip in between, and a waiter
/// is queued in the same step in which it finds the tenant taken, so no wake-up is lost.
///
/// A waiter whose task is cancelled still waits for its turn (taking it out of the line from a
/// cancellation handler would race the hand-over), but then gives it up without running: a request
/// whose client has gone must not drop a tenant when the create before it finishes.
final class TenantOperations {
    /// What an operation does to its tenant.
    enum Kind: String, Sendable, CaseIterable {
        case create, drop, password, start, stop, suspend, restart, settings

        /// Whether the tenant's postmaster is off-limits meanwhile: clients and `tenant info` see it
        /// `starting`, and nobody wakes it.
        var hidesTenant: Bool {
            switch self {
            case .create, .drop, .password: true
            case .start, .stop, .suspend, .restart, .settings: false
            }
        }
    }

    private struct Line {
        var running: Kind
        var waiting: [(kind: Kind, turn: CheckedContinuation<Void, Never>)] = []
    }

    private var lines: [TenantName: Line] = [:]

    init() {}

    /// The operation that has `name` now, if any.
    func running(_ name: TenantName) -> Kind? { lines[name]?.running }

    /// Whether `name`'s running operation keeps its postmaster off-limits (see `Kind.hidesTenant`).
    func hides(_ name: TenantName) -> Bool { lines[name]?.running.hidesTenant ?? false }

    /// Operations running or waiting on `name` (for tests and logs).
    func count(_ name: TenantName) -> Int { lines[name].map { 1 + $0.waiting.count } ?? 0 }

    /// Runs `body` once every earlier operation on `name` has finished; the next one starts when
    /// it returns or throws. Throws `CancellationError` without running `body` if the task was
    /// cancelled while it waited.
    func run<T>(
        _ name: TenantName, _ kind: Kind, isolation: isolated (any Actor)? = #isolation, _ body: () async throws -> T
    ) async throws -> T {
        var waited = false
        if lines[name] == nil {
            lines[name] = Line(running: kind)
        } else {
            // Queued in the same step that found the tenant taken: the hand-over below cannot miss it.
            await withCheckedContinuation(isolation: isolation) { turn in lines[name]!.waiting.append((kind, turn)) }
            waited = true
        }
        defer { handOver(name) }
        // One that did not wait runs as it would have without the queue, cancelled or not.
        if waited { try Task.checkCancellation() }
        return try await body()
    }

    /// Runs `body` only if nothing runs or waits on `name` (the idle suspender skips busy tenants
    /// rather than queue behind them); nil if it did not run.
    func runIfFree<T, E: Error>(
        _ name: TenantName, _ kind: Kind, isolation: isolated (any Actor)? = #isolation, _ body: () async throws(E) -> T
    ) async throws(E) -> T? {
        guard lines[name] == nil else { return nil }
        lines[name] = Line(running: kind)
        defer { handOver(name) }
        return try await body()
    }

    /// Says that the running operation on `name` now does `kind` (a password change restarting its
    /// tenant lets clients wait for that start); the tenant stays held.
    func proceed(_ name: TenantName, as kind: Kind) {
        precondition(lines[name] != nil, "no operation holds tenant \(name)")
        lines[name]?.running = kind
    }

    /// Gives `name` to the first waiter, or frees it.
    private func handOver(_ name: TenantName) {
        guard var line = lines[name] else { preconditionFailure("no operation holds tenant \(name)") }
        guard !line.waiting.isEmpty else {
            lines[name] = nil
            return
        }
        let next = line.waiting.removeFirst()
        line.running = next.kind
        lines[name] = line
        next.turn.resume()
    }
}
