import FleetCore
import Synchronization

/// Maps the cancel keys the proxy hands to clients onto the tenant backends they stand for.
///
/// A client never learns a backend's real pid or key: it gets a random pair, so a key cannot be
/// guessed from pids, and a key reaches exactly one backend of exactly one tenant.
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

    /// Issues a fresh random key for `target`.
    public func register(_ target: Target) -> Key {
        var generator = SystemRandomNumberGenerator()
        return entries.withLock { entries in
            while true {
                // One draw of the generator (one getrandom) for both halves.
                let bits: UInt64 = generator.next()
                let processID = Int32(truncatingIfNeeded: bits & 0x7FFF_FFFF)
                guard processID != 0 else { continue }
                let secret = withUnsafeBytes(of: (bits >> 32).littleEndian) { Array($0.prefix(4)) }
                let key = Key(processID: processID, secret: secret)
                if entries[key] == nil {
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
