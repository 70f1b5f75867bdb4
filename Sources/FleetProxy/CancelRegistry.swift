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
                let key = Key(
                    processID: Int32.random(in: 1...Int32.max, using: &generator),
                    secret: (0..<4).map { _ in UInt8.random(in: 0...255, using: &generator) }
                )
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
