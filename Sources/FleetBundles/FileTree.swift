import Crypto
import FleetCore
import Foundation

/// One thing found under a bundle directory (never following symlinks).
struct TreeEntry: Equatable, Sendable {
    enum Kind: Equatable, Sendable { case file, directory, symlink, other }

    /// Relative to the tree's root.
    var path: String
    var kind: Kind
    /// Permission bits (including setuid/setgid/sticky).
    var mode: Int
    var size: Int64
}

/// Walking, hashing and tidying a directory tree, plus the path arithmetic that decides what is
/// inside a bundle.
enum FileTree {
    /// Everything under `root`, depth first, sorted by path; symlinks are listed, not followed.
    static func walk(_ root: String) throws -> [TreeEntry] {
        var entries: [TreeEntry] = []
        func visit(_ relative: String) throws {
            let directory = relative.isEmpty ? root : root + "/" + relative
            let names: [String]
            do { names = try FileManager.default.contentsOfDirectory(atPath: directory) } catch {
                throw FleetError.failed("cannot read directory \(directory): \(error.localizedDescription)")
            }
            for name in names.sorted() {
                let path = relative.isEmpty ? name : relative + "/" + name
                let entry = try lstatEntry(root + "/" + path, relative: path)
                entries.append(entry)
                if entry.kind == .directory { try visit(path) }
            }
        }
        try visit("")
        // Sorting whole paths (not per directory) keeps "a/b" after "a.txt" byte-wise, which is
        // the order the manifest promises.
        return entries.sorted { $0.path.utf8.lexicographicallyPrecedes($1.path.utf8) }
    }

    static func lstatEntry(_ fullPath: String, relative: String) throws -> TreeEntry {
        var info = stat()
        guard lstat(fullPath, &info) == 0 else {
            throw FleetError.failed("cannot stat \(fullPath): \(String(cString: strerror(errno)))")
        }
        let kind: TreeEntry.Kind =
            switch info.st_mode & S_IFMT {
            case S_IFREG: .file
            case S_IFDIR: .directory
            case S_IFLNK: .symlink
            default: .other
            }
        return TreeEntry(path: relative, kind: kind, mode: Int(info.st_mode & 0o7777), size: Int64(info.st_size))
    }

    /// SHA-256 (lowercase hex) and length of a file, read in 1 MiB chunks.
    static func sha256(ofFile path: String) throws -> (digest: String, size: Int64) {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw FleetError.failed("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var hasher = SHA256()
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var size: Int64 = 0
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw FleetError.failed("cannot read \(path): \(String(cString: strerror(errno)))")
            }
            if count == 0 { break }
            buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
            size += Int64(count)
        }
        return (hasher.finalize().map { hexDigits[Int($0 >> 4)] + hexDigits[Int($0 & 0xf)] }.joined(), size)
    }

    private static let hexDigits = (0..<16).map { String($0, radix: 16) }

    /// The mode a bundle file gets: readable (and, where the owner may execute it, executable)
    /// by every user, since tenants run as their own users; writable by the owner only; never
    /// setuid, setgid or sticky, since a setuid file in a bundle would be a way up to root.
    static func publicMode(_ mode: Int, kind: TreeEntry.Kind) -> Int {
        if kind == .directory { return 0o755 }
        var result = mode & 0o755
        if mode & 0o400 != 0 { result |= 0o044 }
        if mode & 0o100 != 0 { result |= 0o011 }
        return result
    }

    /// Gives every directory and file its public mode and, when running as root, root's ownership.
    static func makePublic(_ root: String, entries: [TreeEntry]) throws {
        let owner: (uid_t, gid_t)? = geteuid() == 0 ? (0, 0) : nil
        for entry in [TreeEntry(path: "", kind: .directory, mode: 0o755, size: 0)] + entries {
            let path = entry.path.isEmpty ? root : root + "/" + entry.path
            if let owner, lchown(path, owner.0, owner.1) != 0 {
                throw FleetError.failed("chown \(path): \(String(cString: strerror(errno)))")
            }
            guard entry.kind == .file || entry.kind == .directory else { continue }
            let wanted = publicMode(entry.mode, kind: entry.kind)
            if wanted != entry.mode {
                guard chmod(path, mode_t(wanted)) == 0 else {
                    throw FleetError.failed("chmod \(path): \(String(cString: strerror(errno)))")
                }
            }
        }
    }

    // MARK: - Paths

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Resolves "." and ".." and repeated slashes without touching the file system.
    static func lexicallyNormalized(_ path: String) -> String {
        let absolute = path.hasPrefix("/")
        var parts: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." {
                if let last = parts.last, last != ".." {
                    parts.removeLast()
                } else if !absolute {
                    parts.append(part)
                }
                continue
            }
            parts.append(part)
        }
        let joined = parts.joined(separator: "/")
        if absolute { return "/" + joined }
        return joined.isEmpty ? "." : joined
    }

    /// `path` relative to `directory` ("" for the directory itself), or nil when it is not inside.
    /// Both are taken as they are written: normalise them first when they may hold "..".
    static func relative(_ path: String, to directory: String) -> String? {
        let base = directory.hasSuffix("/") && directory.count > 1 ? String(directory.dropLast()) : directory
        if path == base { return "" }
        let prefix = base == "/" ? "/" : base + "/"
        guard path.hasPrefix(prefix) else { return nil }
        return String(path.dropFirst(prefix.count))
    }

    static func relative(_ path: String, toAny directories: [String]) -> String? {
        for directory in directories {
            if let inside = relative(path, to: directory) { return inside }
        }
        return nil
    }

    /// Whether the symlink at `linkPath` (relative to a tree's root) pointing at `target` stays
    /// inside the tree when read as written. Absolute targets never do: the tree is about to move.
    static func symlinkStaysInside(linkPath: String, target: String) -> Bool {
        guard !target.hasPrefix("/"), !target.isEmpty else { return false }
        let parent = (linkPath as NSString).deletingLastPathComponent
        let joined = lexicallyNormalized(parent.isEmpty ? target : parent + "/" + target)
        return joined != ".." && !joined.hasPrefix("../")
    }
}
