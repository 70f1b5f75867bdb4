/// A cluster's settings as its configuration files say, read without running PostgreSQL:
/// postgresql.conf with its `include`, `include_if_exists` and `include_dir` lines, then
/// postgresql.auto.conf (ALTER SYSTEM), the last value of a name winning, as PostgreSQL reads them.
/// Command-line `-c` options and the environment are not seen; pgfleet sets neither.
public enum PostgresConfig {
    public enum Line: Equatable, Sendable {
        case setting(name: String, value: String)
        case include(path: String, required: Bool)
        case includeDirectory(path: String)
    }

    /// How far includes nest before the rest is ignored (PostgreSQL stops at 10 too).
    static let maxDepth = 10

    /// One file's lines: `name = value` or `name value`, `#` comments, single-quoted values
    /// with `''` and backslash escapes. Names are lowercased, as PostgreSQL compares them.
    public static func parse(_ text: String) -> [Line] {
        var lines: [Line] = []
        for raw in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            var line = Substring(raw).drop { $0 == " " || $0 == "\t" }
            guard let first = line.first, first != "#" else { continue }
            let name = line.prefix { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "." || $0 == "-" }
            guard !name.isEmpty, first.isLetter || first == "_" else { continue }
            line = line.dropFirst(name.count).drop { $0 == " " || $0 == "\t" }
            if line.first == "=" { line = line.dropFirst().drop { $0 == " " || $0 == "\t" } }
            let value: String
            if line.first == "'" {
                var text = ""
                var rest = line.dropFirst()
                while let character = rest.first {
                    rest = rest.dropFirst()
                    if character == "'" {
                        guard rest.first == "'" else { break }
                        rest = rest.dropFirst()
                        text.append("'")
                    } else if character == "\\", let next = rest.first {
                        rest = rest.dropFirst()
                        text.append(next)
                    } else {
                        text.append(character)
                    }
                }
                value = text
            } else {
                value = String(line.prefix { $0 != "#" && $0 != " " && $0 != "\t" })
            }
            switch name.lowercased() {
            case "include": lines.append(.include(path: value, required: true))
            case "include_if_exists": lines.append(.include(path: value, required: false))
            case "include_dir": lines.append(.includeDirectory(path: value))
            default: lines.append(.setting(name: name.lowercased(), value: value))
            }
        }
        return lines
    }

    /// The effective settings of the cluster in `dataDirectory`. `read` returns a file's text
    /// (nil: missing), `list` a directory's entries; both are the caller's I/O.
    public static func settings(
        dataDirectory: String, read: (String) -> String?, list: (String) -> [String] = { _ in [] }
    ) -> [String: String] {
        var settings: [String: String] = [:]
        func load(_ path: String, depth: Int) {
            guard depth <= maxDepth, let text = read(path) else { return }
            let directory = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
            func absolute(_ file: String) -> String { file.hasPrefix("/") ? file : directory + "/" + file }
            for line in parse(text) {
                switch line {
                case .setting(let name, let value): settings[name] = value
                case .include(let file, _): load(absolute(file), depth: depth + 1)
                case .includeDirectory(let dir):
                    // PostgreSQL reads the directory's *.conf files in name order, hidden ones skipped.
                    let full = absolute(dir)
                    for entry in list(full).filter({ $0.hasSuffix(".conf") && !$0.hasPrefix(".") }).sorted() {
                        load(full + "/" + entry, depth: depth + 1)
                    }
                }
            }
        }
        load(dataDirectory + "/postgresql.conf", depth: 0)
        load(dataDirectory + "/postgresql.auto.conf", depth: 0)
        return settings
    }
}
