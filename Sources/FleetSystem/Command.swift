import CFleetSys
import FleetCore
import Foundation

public struct CommandResult: Sendable {
    public var status: ExitStatus
    public var stdout: String
    public var stderr: String

    public var succeeded: Bool { status.isCleanExit }

    /// Throws a `FleetError.failed` naming `what` with the end of the command's output, unless it succeeded.
    @discardableResult
    public func check(_ what: String) throws(FleetError) -> CommandResult {
        guard succeeded else {
            let output = (stderr + "\n" + stdout).trimmingCharacters(in: .whitespacesAndNewlines)
            let tail = output.split(separator: "\n", omittingEmptySubsequences: false).suffix(15).joined(separator: "\n")
            throw .failed("\(what) \(status)" + (tail.isEmpty ? "" : ":\n\(tail)"))
        }
        return self
    }
}

/// Runs short-lived commands (initdb, useradd, tar, ldd …) to completion, capturing their output.
public enum Command {
    /// Output beyond this is dropped: these commands are not expected to say much.
    static let outputLimit = 4 << 20

    public static func run(
        _ executable: String, _ arguments: [String], environment: [String: String] = SpawnSpec.baseEnvironment,
        user: UserIdentity? = nil, stdin: [UInt8]? = nil, workingDirectory: String? = nil, background: Bool = false
    ) async throws -> CommandResult {
        let outFD = pgf_memfd("stdout")
        let errFD = pgf_memfd("stderr")
        var inFD: Int32 = -1
        defer {
            close(outFD)
            close(errFD)
            if inFD >= 0 { close(inFD) }
        }
        guard outFD >= 0, errFD >= 0 else { throw FleetError.failed("memfd_create: \(String(cString: strerror(errno)))") }
        if let stdin {
            inFD = pgf_memfd("stdin")
            guard inFD >= 0 else { throw FleetError.failed("memfd_create: \(String(cString: strerror(errno)))") }
            try writeAll(inFD, stdin)
            lseek(inFD, 0, SEEK_SET)
        }
        let spec = SpawnSpec(
            executable: executable, arguments: arguments, environment: environment,
            workingDirectory: workingDirectory, user: user, newSession: true, background: background
        )
        let pid: pid_t
        do {
            pid = try Spawner.spawn(spec, stdin: inFD, stdout: outFD, stderr: errFD)
        } catch {
            throw FleetError.failed(error.description)
        }
        // A cancelled caller (the daemon shutting down) does not leave the command running behind it.
        let status = await withTaskCancellationHandler {
            await ProcessWatcher.shared.waitForExit(pid: pid, isChild: true)
        } onCancel: {
            kill(pid, SIGTERM)
        }
        return CommandResult(status: status, stdout: readAll(outFD), stderr: readAll(errFD))
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if written < 0 {
                if errno == EINTR { continue }
                throw FleetError.failed("write: \(String(cString: strerror(errno)))")
            }
            offset += written
        }
    }

    private static func readAll(_ fd: Int32) -> String {
        lseek(fd, 0, SEEK_SET)
        var data = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while data.count < outputLimit {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            data.append(contentsOf: buffer[0..<n])
        }
        return String(decoding: data, as: UTF8.self)
    }
}
