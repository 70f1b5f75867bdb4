import CFleetSys
import FleetCore
import Foundation

/// File operations with explicit modes and owners: who may read what is the isolation.
public enum Files {
    /// Creates `path` (and missing parents) and sets exactly `mode` and, when given, the owner.
    public static func makeDirectory(_ path: String, mode: mode_t, owner: UserIdentity? = nil) throws {
        if !FileManager.default.fileExists(atPath: path) {
            do {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            } catch {
                throw FleetError.failed("cannot create directory \(path): \(error.localizedDescription)")
            }
        }
        try setMode(path, mode)
        if let owner { try setOwner(path, owner) }
    }

    public static func setMode(_ path: String, _ mode: mode_t) throws {
        guard chmod(path, mode) == 0 else { throw FleetError.failed("chmod \(path): \(String(cString: strerror(errno)))") }
    }

    public static func setOwner(_ path: String, _ owner: UserIdentity) throws {
        guard lchown(path, owner.uid, owner.gid) == 0 else {
            throw FleetError.failed("chown \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Gives `path` and everything under it to `owner` (symbolic links themselves, never their
    /// targets). In C (fts): a fresh cluster is about a thousand files, a millisecond or two.
    public static func setOwnerRecursively(_ path: String, _ owner: UserIdentity) throws {
        let result = pgf_chown_tree(path, owner.uid, owner.gid)
        guard result == 0 else { throw FleetError.failed("chown -R \(path): \(String(cString: strerror(result)))") }
    }

    /// Writes `contents` atomically-enough for config files: temp file, mode, owner, rename.
    /// With `sync` the contents reach the disk before the rename; without it (a new cluster's
    /// files, written several at a time) the caller syncs them together with `sync(_:)`.
    public static func write(_ contents: String, to path: String, mode: mode_t, owner: UserIdentity? = nil, sync: Bool = true) throws {
        // Unique per call: two tasks of one daemon may write the same file at once (the sandbox's passwd).
        let temp = path + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode)
        guard fd >= 0 else { throw FleetError.failed("cannot write \(path): \(String(cString: strerror(errno)))") }
        var problem: String?
        let bytes = Array(contents.utf8)
        var offset = 0
        while offset < bytes.count, problem == nil {
            let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 {
                if errno != EINTR { problem = "write: \(String(cString: strerror(errno)))" }
            } else {
                offset += written
            }
        }
        if problem == nil, fchmod(fd, mode) != 0 { problem = "chmod: \(String(cString: strerror(errno)))" }
        if problem == nil, let owner, fchown(fd, owner.uid, owner.gid) != 0 { problem = "chown: \(String(cString: strerror(errno)))" }
        if problem == nil, sync, fsync(fd) != 0 { problem = "fsync: \(String(cString: strerror(errno)))" }
        close(fd)
        if let problem {
            unlink(temp)
            throw FleetError.failed("cannot write \(path): \(problem)")
        }
        guard rename(temp, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temp)
            throw FleetError.failed("rename \(temp): \(reason)")
        }
    }

    /// Flushes files written with `sync: false`, and the directories that hold them, to disk.
    public static func sync(_ paths: [String]) throws {
        let directories = Set(paths.map { ($0 as NSString).deletingLastPathComponent })
        for path in paths + directories.sorted() {
            let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
            guard fd >= 0 else { throw FleetError.failed("cannot open \(path) to sync it: \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            guard fsync(fd) == 0 else { throw FleetError.failed("fsync \(path): \(String(cString: strerror(errno)))") }
        }
    }

    public static func removeTree(_ path: String) throws {
        guard FileManager.default.fileExists(atPath: path) else { return }
        do { try FileManager.default.removeItem(atPath: path) } catch {
            throw FleetError.failed("cannot remove \(path): \(error.localizedDescription)")
        }
    }

    /// Opens `path` for appending (creating it with `mode` and `owner`), for a child's stderr.
    public static func openLog(_ path: String, mode: mode_t, owner: UserIdentity?) throws -> Int32 {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, mode)
        guard fd >= 0 else { throw FleetError.failed("cannot open \(path): \(String(cString: strerror(errno)))") }
        if let owner { fchown(fd, owner.uid, owner.gid) }
        return fd
    }

    /// The last `count` lines of a text file (reads at most the last 256 KiB).
    public static func tail(_ path: String, lines count: Int) -> [String] {
        guard let handle = FileHandle(forReadingAtPath: path) else { return [] }
        defer { try? handle.close() }
        let size = (try? handle.seekToEnd()) ?? 0
        let start = size > 262_144 ? size - 262_144 : 0
        try? handle.seek(toOffset: start)
        let data = (try? handle.readToEnd()) ?? Data()
        let text = String(decoding: data, as: UTF8.self)
        return Array(text.split(separator: "\n").suffix(count).map(String.init))
    }

    /// Checks that every ancestor of `path` lets others search it, so tenant users can reach their
    /// directories under it; returns the first one that does not.
    public static func firstUnsearchableAncestor(of path: String) -> String? {
        var current = ""
        for component in path.split(separator: "/") {
            current += "/" + component
            var info = stat()
            guard stat(current, &info) == 0 else { return nil }
            if info.st_mode & S_IXOTH == 0 { return current }
        }
        return nil
    }
}
