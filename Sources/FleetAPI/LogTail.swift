#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import FleetCore
import Synchronization

/// `tail -n N -F` for one file: the last lines, then whatever is appended, surviving truncation
/// (copytruncate) and rotation (rename + new file) by reopening.
///
/// It keeps the file open between polls so that lines written to a log just before it was
/// rotated away are still read from the old file before switching to the new one.
public final class LogTail: Sendable {
    /// Identifies a file independently of its name.
    public struct FileIdentity: Equatable, Sendable {
        public var device: UInt64
        public var inode: UInt64

        public init(device: UInt64, inode: UInt64) {
            self.device = device
            self.inode = inode
        }
    }

    /// The file currently open, as a poll sees it.
    public struct OpenFile: Equatable, Sendable {
        public var identity: FileIdentity
        public var size: UInt64
        /// How far it has been read.
        public var offset: UInt64

        public init(identity: FileIdentity, size: UInt64, offset: UInt64) {
            self.identity = identity
            self.size = size
            self.offset = offset
        }
    }

    /// What a poll does next.
    public enum Step: Equatable, Sendable {
        /// Nothing open and nothing at the path yet.
        case waitForFile
        /// Nothing open; a file has appeared at the path.
        case open
        /// Read from the offset to the end.
        case read
        /// The open file shrank below what was read: it was truncated in place; start over at 0.
        case rewind
        /// Another file is at the path now: finish the open one, then open the new one.
        case reopen
    }

    /// Decides the next step from what is open and what is at the path now. A path that vanished
    /// while a file is open (renamed, the new one not created yet) keeps the old file.
    public static func step(open: OpenFile?, atPath: FileIdentity?) -> Step {
        guard let open else { return atPath == nil ? .waitForFile : .open }
        if let atPath, atPath != open.identity { return .reopen }
        if open.size < open.offset { return .rewind }
        return .read
    }

    /// Where the last `count` lines of `bytes` start, or nil when `bytes` holds fewer line breaks
    /// than that and an earlier part of the file could still hold the start. A final line break
    /// ends the last line; it does not start an empty one.
    public static func startOfLastLines(_ bytes: some Collection<UInt8>, count: Int) -> Int? {
        let array = Array(bytes)
        if count <= 0 { return array.count }
        var index = array.count - 1
        if index >= 0 && array[index] == UInt8(ascii: "\n") { index -= 1 }
        var seen = 0
        while index >= 0 {
            if array[index] == UInt8(ascii: "\n") {
                seen += 1
                if seen == count { return index + 1 }
            }
            index -= 1
        }
        return nil
    }

    public let path: String
    private let state = Mutex(State())

    private struct State: ~Copyable {
        var descriptor: Int32 = -1
        var identity: FileIdentity?
        var offset: UInt64 = 0

        deinit {
            if descriptor >= 0 { close(descriptor) }
        }
    }

    public init(path: String) {
        self.path = path
    }

    /// The last `lines` lines (at most `maxBytes` of them), positioning the tail at the current
    /// end of the file. A missing file reads as empty; following it then starts when it appears.
    public func lastLines(_ lines: Int, maxBytes: Int = 8 << 20) throws(FleetError) -> [UInt8] {
        try state.withLock { state throws(FleetError) -> [UInt8] in
            if state.descriptor < 0 {
                guard try openFile(&state) else { return [] }
            }
            let size = try fileSize(state.descriptor)
            state.offset = size
            guard lines > 0, size > 0 else { return [] }
            let limit = UInt64(max(1, maxBytes))
            var window = min(size, 64 << 10, limit)
            while true {
                let start = size - window
                let bytes = try readAt(state.descriptor, offset: start, count: Int(window))
                if let cut = Self.startOfLastLines(bytes, count: lines) { return Array(bytes[cut...]) }
                if start == 0 { return bytes }
                if window >= limit {
                    // Clipped: drop the partial first line.
                    guard let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) else { return bytes }
                    return Array(bytes[(newline + 1)...])
                }
                window = min(size, window * 4, limit)
            }
        }
    }

    /// What was appended since the last read (at most about `maxBytes`; the rest comes with the
    /// next call), following truncation and rotation.
    public func readAppended(maxBytes: Int = 1 << 20) throws(FleetError) -> [UInt8] {
        try state.withLock { state throws(FleetError) -> [UInt8] in
            var out: [UInt8] = []
            // open → read, or reopen → open → read: a handful of steps at most.
            for _ in 0..<4 {
                let atPath = try identity(ofPath: path)
                var open: OpenFile?
                if state.descriptor >= 0, let identity = state.identity {
                    open = OpenFile(identity: identity, size: try fileSize(state.descriptor), offset: state.offset)
                }
                switch Self.step(open: open, atPath: atPath) {
                case .waitForFile:
                    return out
                case .open:
                    guard try openFile(&state) else { return out }
                case .rewind:
                    state.offset = 0
                case .read:
                    let size = open?.size ?? state.offset
                    out += try readRange(&state, upTo: size, budget: maxBytes - out.count)
                    return out
                case .reopen:
                    // Lines written before the rotation are still in the old file.
                    let size = open?.size ?? state.offset
                    out += try readRange(&state, upTo: size, budget: maxBytes - out.count)
                    close(state.descriptor)
                    state.descriptor = -1
                    state.identity = nil
                    state.offset = 0
                }
            }
            return out
        }
    }

    /// Polls for appended bytes every `interval` until the task is cancelled or `keepGoing`
    /// answers false.
    public func follow(
        every interval: Duration = .milliseconds(200),
        while keepGoing: () -> Bool = { true },
        _ onData: ([UInt8]) async throws -> Void
    ) async throws {
        while keepGoing() {
            try await Task.sleep(for: interval)
            let bytes = try readAppended()
            if !bytes.isEmpty { try await onData(bytes) }
        }
    }

    // MARK: - POSIX

    private func readRange(_ state: inout State, upTo size: UInt64, budget: Int) throws(FleetError) -> [UInt8] {
        guard size > state.offset, budget > 0 else { return [] }
        let count = Int(min(size - state.offset, UInt64(budget)))
        let bytes = try readAt(state.descriptor, offset: state.offset, count: count)
        state.offset += UInt64(bytes.count)
        return bytes
    }

    /// Opens the file at the path; false when there is none.
    private func openFile(_ state: inout State) throws(FleetError) -> Bool {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)
        if descriptor < 0 {
            let code = errno
            if code == ENOENT { return false }
            throw failure("cannot open", code)
        }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            let code = errno
            close(descriptor)
            throw failure("cannot stat", code)
        }
        state.descriptor = descriptor
        state.identity = FileIdentity(device: UInt64(truncatingIfNeeded: info.st_dev), inode: UInt64(truncatingIfNeeded: info.st_ino))
        state.offset = 0
        return true
    }

    private func identity(ofPath path: String) throws(FleetError) -> FileIdentity? {
        var info = stat()
        guard stat(path, &info) == 0 else {
            let code = errno
            if code == ENOENT || code == ENOTDIR { return nil }
            throw failure("cannot stat", code)
        }
        return FileIdentity(device: UInt64(truncatingIfNeeded: info.st_dev), inode: UInt64(truncatingIfNeeded: info.st_ino))
    }

    private func fileSize(_ descriptor: Int32) throws(FleetError) -> UInt64 {
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw failure("cannot stat", errno) }
        return UInt64(max(0, info.st_size))
    }

    private func readAt(_ descriptor: Int32, offset: UInt64, count: Int) throws(FleetError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var filled = 0
        while filled < count {
            let got = bytes.withUnsafeMutableBytes { buffer in
                pread(descriptor, buffer.baseAddress! + filled, count - filled, off_t(offset) + off_t(filled))
            }
            if got < 0 {
                if errno == EINTR { continue }
                throw failure("cannot read", errno)
            }
            if got == 0 { break }  // shrank under us; the next poll sees the truncation
            filled += got
        }
        bytes.removeLast(count - filled)
        return bytes
    }

    private func failure(_ what: String, _ code: Int32) -> FleetError {
        .failed("\(what) log file \(path): \(String(cString: strerror(code)))")
    }
}
