/// Work done as a list of steps, each with its undo: when a later step fails, `undoAll(_:)` runs the
/// undos of the steps done so far, newest first, and each exactly once. A create that fails at
/// any point removes exactly what it made, in reverse, and nothing it did not make.
///
/// Undos cannot fail the rollback: each does its best and says nothing (a rollback that stopped
/// half-way would leave more behind than one that carries on). What the steps learnt since they
/// ran (a uid assigned later, a useradd that failed) reaches the undos as `Context`, given to
/// `undoAll`, so that no undo has to capture mutable state.
struct UndoableSteps<Context: Sendable> {
    private var done: [(name: String, undo: (Context) async -> Void)] = []

    /// The steps done and not undone, oldest first (for logs and tests).
    var names: [String] { done.map(\.name) }

    /// Runs `work`; once it has succeeded, `undo` is kept to run should a later step fail. A step
    /// that throws is not kept: it undoes its own half-done work.
    @discardableResult
    mutating func run<T>(
        _ name: String, isolation: isolated (any Actor)? = #isolation,
        _ work: () async throws -> T, undo: @escaping (T, Context) async -> Void
    ) async throws -> T {
        let result = try await work()
        done.append((name, { context in await undo(result, context) }))
        return result
    }

    /// A step done outside `run` (its work was already under way): its undo is kept as if it had.
    mutating func record(_ name: String, undo: @escaping (Context) async -> Void) {
        done.append((name, undo))
    }

    /// Undoes every step done, newest first; afterwards there is nothing left to undo.
    mutating func undoAll(_ context: Context, isolation: isolated (any Actor)? = #isolation) async {
        while let last = done.popLast() {
            await last.undo(context)
        }
    }
}
