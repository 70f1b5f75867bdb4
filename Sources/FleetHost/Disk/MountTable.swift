import Foundation

/// `/proc/self/mountinfo`: which filesystem is mounted where, in this mount namespace.
public struct MountTable: Sendable, Equatable {
    public struct Mount: Sendable, Equatable {
        public var mountPoint: String
        public var fsType: String
        public var source: String
        public var superOptions: [String]
        /// The directory of the filesystem that is mounted here (`/` unless a bind mount of a part).
        public var root: String = "/"

        public var hasProjectQuota: Bool {
            superOptions.contains { ["prjquota", "pquota", "pqnoenforce"].contains($0) }
        }
    }

    public var mounts: [Mount]

    public static func read(host: HostRoot = .real) -> MountTable? {
        host.read("proc/self/mountinfo").map(parse)
    }

    /// Lines are `id parent major:minor root mountpoint options [optional…] - fstype source superoptions`.
    public static func parse(_ text: String) -> MountTable {
        var mounts: [Mount] = []
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ").map(String.init)
            guard fields.count >= 10, let dash = fields.firstIndex(of: "-"), dash >= 6, fields.count >= dash + 3 else { continue }
            mounts.append(Mount(
                mountPoint: unescape(fields[4]), fsType: fields[dash + 1], source: unescape(fields[dash + 2]),
                superOptions: fields.count > dash + 3 ? fields[dash + 3].split(separator: ",").map(String.init) : [],
                root: unescape(fields[3])
            ))
        }
        return MountTable(mounts: mounts)
    }

    /// The mount at exactly `path` (the last one when several are stacked there).
    public func mount(at path: String) -> Mount? {
        mounts.last { $0.mountPoint == path }
    }

    /// The mount holding `path`: the longest mount point that is `path` or one of its ancestors.
    public func mount(containing path: String) -> Mount? {
        var best: Mount?
        for mount in mounts where path == mount.mountPoint || mount.mountPoint == "/" || path.hasPrefix(mount.mountPoint + "/") {
            if mount.mountPoint.count >= (best?.mountPoint.count ?? -1) { best = mount }
        }
        return best
    }

    /// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
    static func unescape(_ field: String) -> String {
        guard field.contains("\\") else { return field }
        var bytes: [UInt8] = []
        let utf8 = Array(field.utf8)
        var index = 0
        while index < utf8.count {
            if utf8[index] == UInt8(ascii: "\\"), index + 3 < utf8.count,
                let value = UInt8(String(decoding: utf8[(index + 1)...(index + 3)], as: UTF8.self), radix: 8)
            {
                bytes.append(value)
                index += 4
            } else {
                bytes.append(utf8[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
