import Testing

@testable import FleetSupervisor

/// The provisioning step runner: a failure at any step undoes exactly the steps before it, in reverse.
@Suite struct UndoableStepsTests {
    struct Injected: Error, Equatable {
        let step: Int
    }

    /// What the steps did and undid, in order.
    actor Journal {
        var entries: [String] = []
        func note(_ entry: String) { entries.append(entry) }
    }

    /// Five steps, the one at `failing` (if any) throwing; on a failure everything done is undone.
    private func provision(failingAt failing: Int?, journal: Journal) async throws {
        var steps = UndoableSteps<Void>()
        do {
            for step in 0..<5 {
                try await steps.run("step \(step)") {
                    if step == failing { throw Injected(step: step) }
                    await journal.note("do \(step)")
                    return step
                } undo: { done, _ in
                    await journal.note("undo \(done)")
                }
            }
        } catch {
            await steps.undoAll(())
            #expect(steps.names.isEmpty)
            throw error
        }
        #expect(steps.names == (0..<5).map { "step \($0)" })
    }

    @Test(arguments: 0..<5)
    func aFailureUndoesExactlyTheEarlierStepsInReverse(failing: Int) async {
        let journal = Journal()
        await #expect(throws: Injected(step: failing)) { try await provision(failingAt: failing, journal: journal) }
        let done = (0..<failing).map { "do \($0)" }
        let undone = (0..<failing).reversed().map { "undo \($0)" }
        #expect(await journal.entries == done + undone)
    }

    @Test func successUndoesNothing() async throws {
        let journal = Journal()
        try await provision(failingAt: nil, journal: journal)
        #expect(await journal.entries == (0..<5).map { "do \($0)" })
    }

    @Test func undoAllRunsEachUndoOnce() async {
        var steps = UndoableSteps<Void>()
        let journal = Journal()
        steps.record("a") { _ in await journal.note("undo a") }
        steps.record("b") { _ in await journal.note("undo b") }
        await steps.undoAll(())
        await steps.undoAll(())
        #expect(await journal.entries == ["undo b", "undo a"])
    }
}
