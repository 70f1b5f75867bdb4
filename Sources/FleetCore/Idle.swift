/// Decides when a running tenant has gone without clients long enough to be suspended. Pure:
/// the caller observes connection counts and passes `now` (a monotonic offset).
public struct IdleTracker: Sendable {
    /// When each tenant was last seen with a client (or started being watched).
    private var lastBusy: [TenantName: Duration] = [:]

    public init() {}

    /// Returns true when `tenant` should be suspended now.
    public mutating func observe(_ tenant: TenantName, connections: Int, isRunning: Bool, suspendAfter: Duration, now: Duration) -> Bool {
        guard isRunning, suspendAfter > .zero else {
            lastBusy[tenant] = nil
            return false
        }
        if connections > 0 {
            lastBusy[tenant] = now
            return false
        }
        guard let since = lastBusy[tenant] else {
            lastBusy[tenant] = now
            return false
        }
        return now - since >= suspendAfter
    }

    /// A client was seen some other way (e.g. on the socket, bypassing the proxy), or the tenant just woke.
    public mutating func markBusy(_ tenant: TenantName, now: Duration) {
        lastBusy[tenant] = now
    }

    public mutating func forget(_ tenant: TenantName) {
        lastBusy[tenant] = nil
    }

    /// Forgets every tenant but `tenants`: those not observed (no longer running) start afresh
    /// when they are observed again.
    public mutating func keepOnly(_ tenants: Set<TenantName>) {
        lastBusy = lastBusy.filter { tenants.contains($0.key) }
    }
}

/// Token buckets that keep a storm of connections from waking tenants faster than the host can
/// start them: per tenant, and for the whole fleet.
public struct WakeLimiter: Sendable {
    public struct Bucket: Sendable, Equatable {
        public var capacity: Double
        /// Tokens added per second.
        public var refill: Double

        public init(capacity: Double, refill: Double) {
            self.capacity = capacity
            self.refill = refill
        }
    }

    public let perTenant: Bucket
    public let overall: Bucket
    private var tenantTokens: [TenantName: (tokens: Double, at: Duration)] = [:]
    private var overallTokens: (tokens: Double, at: Duration)?

    public init(perTenant: Bucket = Bucket(capacity: 5, refill: 0.5), overall: Bucket = Bucket(capacity: 50, refill: 20)) {
        self.perTenant = perTenant
        self.overall = overall
    }

    /// Takes a token for one wake of `tenant`, or returns false when either bucket is empty.
    public mutating func allow(_ tenant: TenantName, now: Duration) -> Bool {
        let tenantLevel = Self.level(tenantTokens[tenant], bucket: perTenant, now: now)
        let overallLevel = Self.level(overallTokens, bucket: overall, now: now)
        guard tenantLevel >= 1, overallLevel >= 1 else { return false }
        tenantTokens[tenant] = (tenantLevel - 1, now)
        overallTokens = (overallLevel - 1, now)
        return true
    }

    private static func level(_ state: (tokens: Double, at: Duration)?, bucket: Bucket, now: Duration) -> Double {
        guard let state else { return bucket.capacity }
        let elapsed = Double((now - state.at).components.seconds) + Double((now - state.at).components.attoseconds) / 1e18
        return min(bucket.capacity, state.tokens + max(elapsed, 0) * bucket.refill)
    }
}

/// Parses durations as operators write them: "0", "90", "90s", "5m", "1h", "1h30m".
public enum DurationText {
    public static func seconds(_ text: String) -> Int? {
        let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
        if let plain = Int(trimmed), plain >= 0 { return plain }
        var total = 0
        var number = ""
        for character in trimmed {
            if character.isNumber {
                number.append(character)
                continue
            }
            guard let value = Int(number) else { return nil }
            switch character {
            case "s": total += value
            case "m": total += value * 60
            case "h": total += value * 3600
            case "d": total += value * 86400
            default: return nil
            }
            number = ""
        }
        return number.isEmpty && !trimmed.isEmpty ? total : nil
    }

    public static func describe(_ seconds: Int) -> String {
        if seconds == 0 { return "never" }
        if seconds % 3600 == 0 { return "\(seconds / 3600)h" }
        if seconds % 60 == 0 { return "\(seconds / 60)m" }
        return "\(seconds)s"
    }
}

import Foundation
