import FleetCore
import FleetSystem
import Foundation

/// The host's `/dev/shm`, where PostgreSQL's dynamic shared memory lives (parallel query's
/// segments, `dynamic_shared_memory_type = posix`). Too small, and a parallel hash join fails with
/// "could not resize shared memory segment … No space left on device" (seed 004, where a 64 MB
/// container default met a 48 MB segment). Sandboxed tenants get a private one sized by pgfleet,
/// so the host's matters only for tenants run without a sandbox.
public enum SharedMemoryCheck {
    static let name = "/dev/shm"
    /// Below this, one parallel query of a tenant with default settings may not fit.
    public static let failBelow: UInt64 = 64 << 20
    /// Below this, a few tenants' parallel queries at once may not.
    public static let warnBelow: UInt64 = 512 << 20

    public static func check(root: HostRoot = .real, sandboxed: Bool?) -> HostCheck {
        let path = root.resolve("dev/shm")
        // Not an ancestor's filesystem: a missing /dev/shm is a finding of its own.
        return judge(FileManager.default.fileExists(atPath: path) ? FilesystemSpace.read(path) : nil, sandboxed: sandboxed)
    }

    /// `sandboxed`: whether the daemon sandboxes its tenants; nil when no daemon told.
    public static func judge(_ space: FilesystemSpace?, sandboxed: Bool?) -> HostCheck {
        let fix = "mount -o remount,size=1G /dev/shm (and size=1G on its /etc/fstab line; in a container: docker run --shm-size=1g)"
        let sandboxNote = switch sandboxed {
        case true?: "the daemon runs every tenant in a sandbox with a private /dev/shm, so this one serves only the host"
        case false?: "the daemon runs its tenants without a sandbox, so they all share this one"
        case nil: "tenants in pgfleet's sandbox get a private /dev/shm; those without one share this"
        }
        guard let space else {
            return HostCheck(
                name: name, status: sandboxed == true ? .ok : .fail, detail: "no /dev/shm: PostgreSQL's dynamic shared memory cannot be made; \(sandboxNote)",
                fix: sandboxed == true ? nil : "mount -t tmpfs -o size=1G tmpfs /dev/shm")
        }
        let f = ByteSize.format
        var detail = "\(f(space.size)), \(f(space.used)) used"
        var status = HostCheck.Status.ok
        if space.size < failBelow {
            status = .fail
            detail += ": too small for one parallel query's segments (\"could not resize shared memory segment … No space left on device\", seed 004)"
        } else if space.size < warnBelow {
            status = .warn
            detail += ": a few parallel queries at once will not fit"
        }
        if space.size > 0, space.used > space.size / 10 * 8 {
            status = max(status, .warn)
            detail += "; over 80 % used: segments left by crashed clusters stay until removed (ls -la /dev/shm)"
        }
        // Sandboxed tenants do not use it: a small one is then the host's business, not theirs.
        if sandboxed == true, status != .ok {
            return HostCheck(name: name, status: .ok, detail: detail + "; " + sandboxNote)
        }
        return HostCheck(name: name, status: status, detail: detail + "; " + sandboxNote, fix: status == .ok ? nil : fix)
    }
}
