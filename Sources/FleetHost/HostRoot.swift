import Foundation

/// Where the host's kernel interfaces are: `/` on a real host, a directory holding a fake
/// `proc/` and `sys/fs/cgroup/` tree in tests. Every reader and writer in FleetHost takes one,
/// so the cgroup v1 and v2 writers are tested against fake trees without root.
public struct HostRoot: Sendable, Equatable {
    public var path: String

    public init(_ path: String = "/") {
        self.path = path
    }

    public static let real = HostRoot()

    /// `relative` ("proc/self/cgroup", "/sys/fs/cgroup") under this root.
    public func resolve(_ relative: String) -> String {
        let trimmed = relative.hasPrefix("/") ? String(relative.dropFirst()) : relative
        return path == "/" ? "/" + trimmed : (path.hasSuffix("/") ? path : path + "/") + trimmed
    }

    public func read(_ relative: String) -> String? {
        try? String(contentsOfFile: resolve(relative), encoding: .utf8)
    }
}
