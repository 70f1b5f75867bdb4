import CFleetSys
import FleetCore
import Foundation
import Synchronization

/// Tells when processes end, whether they are our children or re-adopted postmasters.
///
/// One thread polls a pidfd per watched process (plus an eventfd to learn about new ones), so a
/// thousand tenants cost one thread, and there is no SIGCHLD handler or `waitpid(-1)` to steal
/// exits from anyone else. A child that exited before it was watched is a zombie, and its pidfd
/// is readable at once: no exit is ever missed.
public final class ProcessWatcher: Sendable {
    public static let shared = ProcessWatcher()

    private struct Watch {
        var pid: pid_t
        var isChild: Bool
        var continuation: CheckedContinuation<ExitStatus, Never>
    }

    private struct State {
        var watches: [Int32: Watch] = [:]  // by pidfd
        var threadStarted = false
    }

    private let state = Mutex(State())
    private let wakeFD: Int32

    private init() {
        wakeFD = pgf_eventfd()
    }

    /// Waits until `pid` exits. For our own children (`isChild`), also reaps it and returns its status.
    public func waitForExit(pid: pid_t, isChild: Bool) async -> ExitStatus {
        let pidfd = pgf_pidfd_open(pid)
        if pidfd < 0 {
            // ESRCH: already gone (and, for a child, already reaped by someone: nothing to report).
            return .unknown
        }
        return await withCheckedContinuation { continuation in
            let startThread = state.withLock { state -> Bool in
                state.watches[pidfd] = Watch(pid: pid, isChild: isChild, continuation: continuation)
                defer { state.threadStarted = true }
                return !state.threadStarted
            }
            if startThread {
                let thread = Thread { [self] in run() }
                thread.name = "pgfleet-process-watcher"
                thread.start()
            }
            var one: UInt64 = 1
            _ = write(wakeFD, &one, 8)
        }
    }

    private func run() {
        while true {
            var fds = [pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)]
            state.withLock { state in
                for fd in state.watches.keys { fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
            }
            let ready = poll(&fds, nfds_t(fds.count), -1)
            if ready < 0 { continue }  // EINTR
            if fds[0].revents != 0 {
                var drained: UInt64 = 0
                _ = read(wakeFD, &drained, 8)
            }
            for entry in fds.dropFirst() where entry.revents != 0 {
                guard let watch = state.withLock({ $0.watches.removeValue(forKey: entry.fd) }) else { continue }
                close(entry.fd)
                var status: ExitStatus = .unknown
                if watch.isChild {
                    var raw: Int32 = 0
                    if pgf_wait_child(watch.pid, &raw) == watch.pid {
                        if pgf_wifexited(raw) != 0 {
                            status = .exited(pgf_wexitstatus(raw))
                        } else if pgf_wifsignaled(raw) != 0 {
                            status = .signaled(pgf_wtermsig(raw))
                        }
                    }
                }
                watch.continuation.resume(returning: status)
            }
        }
    }
}
