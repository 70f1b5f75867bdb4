import FleetAPI
import Foundation
import Testing

@Suite struct LogTailTests {
    // MARK: Decisions

    @Test func stepDecisions() {
        let a = LogTail.FileIdentity(device: 1, inode: 10)
        let b = LogTail.FileIdentity(device: 1, inode: 11)
        #expect(LogTail.step(open: nil, atPath: nil) == .waitForFile)
        #expect(LogTail.step(open: nil, atPath: a) == .open)
        #expect(LogTail.step(open: .init(identity: a, size: 100, offset: 40), atPath: a) == .read)
        #expect(LogTail.step(open: .init(identity: a, size: 100, offset: 100), atPath: a) == .read)
        #expect(LogTail.step(open: .init(identity: a, size: 10, offset: 40), atPath: a) == .rewind)
        #expect(LogTail.step(open: .init(identity: a, size: 100, offset: 40), atPath: b) == .reopen)
        // Renamed away, nothing new yet: keep reading the old file.
        #expect(LogTail.step(open: .init(identity: a, size: 100, offset: 40), atPath: nil) == .read)
    }

    @Test func startOfLastLines() {
        let text = Array("a\nbb\nccc\n".utf8)
        #expect(LogTail.startOfLastLines(text, count: 1) == 5)
        #expect(LogTail.startOfLastLines(text, count: 2) == 2)
        #expect(LogTail.startOfLastLines(text, count: 3) == nil)  // the start may be further back
        #expect(LogTail.startOfLastLines(text, count: 0) == text.count)
        // No final line break: the partial line is the last line.
        #expect(LogTail.startOfLastLines(Array("a\nbb".utf8), count: 1) == 2)
    }

    // MARK: Files

    @Test func readsLastLinesThenFollowsAppends() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.path + "/postgresql.log"
        try (1...10).map { "line \($0)\n" }.joined().write(toFile: path, atomically: false, encoding: .utf8)

        let tail = LogTail(path: path)
        #expect(String(decoding: try tail.lastLines(3), as: UTF8.self) == "line 8\nline 9\nline 10\n")
        #expect(try tail.readAppended().isEmpty)

        try append("line 11\npartial", to: path)
        #expect(String(decoding: try tail.readAppended(), as: UTF8.self) == "line 11\npartial")
        try append(" end\n", to: path)
        #expect(String(decoding: try tail.readAppended(), as: UTF8.self) == " end\n")
        #expect(try tail.readAppended().isEmpty)
    }

    @Test func moreLinesThanTheFileHasGivesTheWholeFile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.path + "/log"
        try "only\ntwo\n".write(toFile: path, atomically: false, encoding: .utf8)
        #expect(String(decoding: try LogTail(path: path).lastLines(100), as: UTF8.self) == "only\ntwo\n")
        #expect(try LogTail(path: path).lastLines(0).isEmpty)
    }

    @Test func lastLinesOfABigFileReadsOnlyTheEnd() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.path + "/log"
        // ~1.9 MB, far more than the first 64 KiB window.
        try (1...100_000).map { "log line number \($0)\n" }.joined().write(toFile: path, atomically: false, encoding: .utf8)
        let lines = String(decoding: try LogTail(path: path).lastLines(5000), as: UTF8.self).split(separator: "\n")
        #expect(lines.count == 5000)
        #expect(lines.first == "log line number 95001")
        #expect(lines.last == "log line number 100000")

        // A byte bound clips, dropping the partial first line.
        let clipped = String(decoding: try LogTail(path: path).lastLines(5000, maxBytes: 1000), as: UTF8.self)
        #expect(clipped.utf8.count <= 1000)
        #expect(clipped.hasPrefix("log line number "))
        #expect(clipped.hasSuffix("log line number 100000\n"))
    }

    @Test func followsTruncation() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.path + "/log"
        try "old 1\nold 2\nold 3\n".write(toFile: path, atomically: false, encoding: .utf8)
        let tail = LogTail(path: path)
        _ = try tail.lastLines(10)

        // copytruncate: same file, emptied, then written again.
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.truncate(atOffset: 0)
        try handle.close()
        try append("new\n", to: path)
        #expect(String(decoding: try tail.readAppended(), as: UTF8.self) == "new\n")
    }

    @Test func followsRotationAfterDrainingTheOldFile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.path + "/log"
        try "before\n".write(toFile: path, atomically: false, encoding: .utf8)
        let tail = LogTail(path: path)
        _ = try tail.lastLines(10)

        try append("late line in old file\n", to: path)
        try FileManager.default.moveItem(atPath: path, toPath: path + ".1")
        // Renamed, nothing new yet.
        #expect(String(decoding: try tail.readAppended(), as: UTF8.self) == "late line in old file\n")
        try append("even later\n", to: path + ".1")
        try "fresh\n".write(toFile: path, atomically: false, encoding: .utf8)
        #expect(String(decoding: try tail.readAppended(), as: UTF8.self) == "even later\nfresh\n")
        try append("more\n", to: path)
        #expect(String(decoding: try tail.readAppended(), as: UTF8.self) == "more\n")
    }

    @Test func waitsForAFileThatDoesNotExistYet() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.path + "/later.log"
        let tail = LogTail(path: path)
        #expect(try tail.lastLines(10).isEmpty)
        #expect(try tail.readAppended().isEmpty)
        try "first\n".write(toFile: path, atomically: false, encoding: .utf8)
        #expect(String(decoding: try tail.readAppended(), as: UTF8.self) == "first\n")
    }

    @Test func followDeliversAppendedBytesUntilCancelled() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.path + "/log"
        try "start\n".write(toFile: path, atomically: false, encoding: .utf8)
        let tail = LogTail(path: path)
        _ = try tail.lastLines(1)

        let (chunks, continuation) = AsyncStream.makeStream(of: [UInt8].self)
        let follower = Task {
            try await tail.follow(every: .milliseconds(20)) { continuation.yield($0) }
        }
        try append("appended\n", to: path)
        var iterator = chunks.makeAsyncIterator()
        let chunk = await iterator.next()
        #expect(chunk.map { String(decoding: $0, as: UTF8.self) } == "appended\n")
        follower.cancel()
        await #expect(throws: CancellationError.self) { try await follower.value }
    }

    private func append(_ text: String, to path: String) throws {
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(text.utf8))
        try handle.close()
    }
}
