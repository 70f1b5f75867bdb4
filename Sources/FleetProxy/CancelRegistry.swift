import FleetCore
import Synchronization

/// Maps the cancel keys the proxy hands to clients onto the tenant backends they stand for.
///
/// A client is told its backend's own pid (a NOTIFY carries it, `pg_terminate_backend` and
/// `pg_stat_activity` know it, and `select pg_backend_pid()` tells it anyway) with a random secret
/// of the proxy's, new for every client, also for a pooled session lent again. A cancel needs both:
/// the backend's own secret never leaves the proxy, and a key reaches exactly one backend of
/// exactly one tenant.
public final class CancelRegistry: Sendable {
    public struct Key: Hashable, Sendable {
        public var processID: Int32
        public var secret: [UInt8]
    }

    public struct Target: Sendable, Equatable {
        public var tenant: TenantName
        public var socketPath: String
        public var processID: Int32
        public var secretKey: [UInt8]
    }

    private let entries = Mutex<[Key: Target]>([:])

    public init() {}

    /// Issues a key for `target`: its pid and a fresh random secret.
    public func register(_ target: Target) -> Key {
        var generator = SystemRandomNumberGenerator()
        return entries.withLock { entries in
            while true {
                let bits: UInt32 = generator.next()
                let secret = withUnsafeBytes(of: bits.littleEndian) { Array($0) }
                // Two tenants' backends can share a pid, and one backend serves many clients in turn.
                let key = Key(processID: target.processID, secret: secret)
                if secret != target.secretKey, entries[key] == nil {
                    entries[key] = target
                    return key
                }
            }
        }
    }

    public func remove(_ key: Key) {
        _ = entries.withLock { $0.removeValue(forKey: key) }
    }

    public func lookup(_ key: Key) -> Target? {
        entries.withLock { $0[key] }
    }

    public var count: Int { entries.withLock { $0.count } }
}
