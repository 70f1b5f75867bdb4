import FleetCLI
import Testing

struct RootArgumentTests {
    @Test func movesRootToTheEndOfTheOptionsWhereverItStands() {
        #expect(RootArgument.moved(["--root", "/r", "tenant", "list"]) == ["tenant", "list", "--root", "/r"])
        #expect(RootArgument.moved(["tenant", "--root", "/r", "list"]) == ["tenant", "list", "--root", "/r"])
        #expect(RootArgument.moved(["tenant", "list", "--root", "/r"]) == ["tenant", "list", "--root", "/r"])
        #expect(RootArgument.moved(["--root=/r", "status"]) == ["status", "--root=/r"])
        // Before `--`, never after it: what follows `--` is the command's operands.
        #expect(RootArgument.moved(["--root=/r", "tenant", "set", "a", "x=1", "--", "--root"]) == ["tenant", "set", "a", "x=1", "--root=/r", "--", "--root"])
        #expect(RootArgument.moved(["tenant", "--root", "/r", "set", "a", "--", "y=2"]) == ["tenant", "set", "a", "--root", "/r", "--", "y=2"])
    }

    @Test func leavesAMissingValueToTheParser() {
        #expect(RootArgument.moved(["status", "--root"]) == ["status", "--root"])
        #expect(RootArgument.moved(["status", "--root", "--"]) == ["status", "--root", "--"])
        #expect(RootArgument.moved([]) == [])
    }
}
