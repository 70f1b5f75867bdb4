/// `--root DIR` may stand anywhere before `--`: after `pgfleet`, between `tenant` and `list`, or
/// after the subcommand. Only the leaf commands declare it (argument-parser gives a parent's
/// options to no child), so every occurrence moves to the end of the options, before any `--`,
/// where the leaf command parses it. One after `--` is an operand and stays where it is.
public enum RootArgument {
    public static func moved(_ arguments: [String]) -> [String] {
        let end = arguments.firstIndex(of: "--") ?? arguments.endIndex
        var rest: [String] = []
        var roots: [String] = []
        var index = arguments.startIndex
        while index < end {
            let argument = arguments[index]
            if argument == "--root", index + 1 < end {
                roots += [argument, arguments[index + 1]]
                index += 2
            } else {
                if argument.hasPrefix("--root=") { roots.append(argument) } else { rest.append(argument) }
                index += 1
            }
        }
        return rest + roots + arguments[end...]
    }
}
