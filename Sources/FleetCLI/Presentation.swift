import FleetCore
import Foundation

/// Plain-text renderings of API answers for people. Pure: `now` is passed in.

/// Columns padded to their widest cell, two spaces apart, no trailing blanks.
public struct TextTable: Sendable, Equatable {
    public var headers: [String]
    public var rows: [[String]]
    /// Lines shown under a row (by row index), outside the columns: a failure reason, say.
    public var notes: [Int: [String]]

    public init(headers: [String], rows: [[String]] = [], notes: [Int: [String]] = [:]) {
        self.headers = headers
        self.rows = rows
        self.notes = notes
    }

    public func render() -> String {
        var widths = headers.map(Self.width)
        for row in rows {
            for (index, cell) in row.enumerated() where index < widths.count {
                widths[index] = max(widths[index], Self.width(cell))
            }
        }
        // Bytes, appended once each: building a String per line and joining them, with padding
        // strings in between, took several milliseconds for 2,000 tenants. (Foundation's
        // `padding(toLength:withPad:startingAt:)`, before that, took about 50 ms.)
        var out: [UInt8] = []
        out.reserveCapacity((widths.reduce(0, +) + 2 * widths.count + 1) * (rows.count + 1))
        func line(_ cells: [String]) {
            for (index, cell) in cells.enumerated() {
                out.append(contentsOf: cell.utf8)
                if index < cells.count - 1 {
                    let target = index < widths.count ? widths[index] : 0
                    for _ in 0..<max(target + 2 - Self.width(cell), 0) { out.append(UInt8(ascii: " ")) }
                }
            }
        }
        line(headers)
        for (index, row) in rows.enumerated() {
            out.append(UInt8(ascii: "\n"))
            line(row)
            for note in notes[index] ?? [] {
                out.append(UInt8(ascii: "\n"))
                out.append(contentsOf: "  └─ ".utf8)
                out.append(contentsOf: note.utf8)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Columns are as wide as their widest cell in Characters. Printable ASCII has one per byte,
    /// which is much quicker to count; anything else is counted properly.
    static func width(_ cell: String) -> Int {
        let printableASCII = cell.utf8.withContiguousStorageIfAvailable { bytes in
            bytes.allSatisfy { $0 >= 0x20 && $0 < 0x7F }
        }
        return printableASCII == true ? cell.utf8.count : cell.count
    }
}

public enum Presentation {
    /// "3d 4h", "2h 5m", "5m 12s", "12s".
    public static func duration(_ seconds: TimeInterval) -> String {
        let total = max(0, Int(seconds.rounded(.down)))
        let days = total / 86_400
        let hours = total % 86_400 / 3_600
        let minutes = total % 3_600 / 60
        let secs = total % 60
        if days > 0 { return "\(days)d \(hours)h" }
        if hours > 0 { return "\(hours)h \(minutes)m" }
        if minutes > 0 { return "\(minutes)m \(secs)s" }
        return "\(secs)s"
    }

    public static func timestamp(_ date: Date) -> String {
        date.formatted(.iso8601)
    }

    static func uptime(_ tenant: TenantInfo, now: Date) -> String? {
        guard tenant.state == .running, let since = tenant.runningSince else { return nil }
        return duration(now.timeIntervalSince(since))
    }

    static func state(_ tenant: TenantInfo) -> String {
        // Say so when the supervisor is still working towards what the operator asked.
        switch (tenant.state, tenant.desiredState) {
        case (.stopped, .running), (.failed, .running), (.backoff, .running):
            return "\(tenant.state.rawValue) (wants running)"
        case (.running, .stopped), (.starting, .stopped):
            return "\(tenant.state.rawValue) (wants stopped)"
        default:
            return tenant.state.rawValue
        }
    }

    // MARK: Tenants

    /// A password the daemon generated: shown once, with a blank line before it.
    public static func generatedPasswordLines(superuser: String, password: String) -> [String] {
        ["", "password for \(superuser): \(password)", "  save it now: it is not stored and cannot be shown again."]
    }

    public static func tenantTable(_ tenants: [TenantInfo], now: Date) -> String {
        var table = TextTable(headers: [
            "NAME", "VERSION", "PORT", "STATE", "PID", "UPTIME", "RESTARTS", "OS USER", "SOCKET DIR", "DATA DIR", "LOG FILE",
        ])
        for tenant in tenants {
            // A stopped tenant keeps a reason when it was stopped by pgfleet, not by its operator
            // (a create cut short by the daemon's death): the list says why, as for a failure.
            if let reason = tenant.failureReason, tenant.state == .failed || tenant.state == .backoff || tenant.state == .stopped {
                table.notes[table.rows.count] = ["\(tenant.state.rawValue): \(reason)"]
            }
            if let warning = tenant.usage?.diskWarning {
                table.notes[table.rows.count, default: []].append("disk nearly full: \(warning)")
            }
            table.rows.append([
                tenant.name,
                tenant.version,
                String(tenant.port),
                state(tenant),
                tenant.pid.map { String($0) } ?? "-",
                uptime(tenant, now: now) ?? "-",
                String(tenant.restarts),
                tenant.osUser,
                tenant.socketDirectory,
                tenant.dataDirectory,
                tenant.logFile,
            ])
        }
        return table.render()
    }

    /// `key: value` lines, aligned.
    public static func tenantDetails(_ tenant: TenantInfo, now: Date) -> String {
        var pairs: [(String, String)] = [
            ("name", tenant.name),
            ("version", "\(tenant.version) (major \(tenant.major), bundle \(tenant.bundle))"),
            ("state", state(tenant)),
            ("desired state", tenant.desiredState.rawValue),
            ("pid", tenant.pid.map { String($0) } ?? "-"),
        ]
        if let since = tenant.runningSince, tenant.state == .running {
            pairs.append(("running since", "\(timestamp(since)) (up \(duration(now.timeIntervalSince(since))))"))
        }
        pairs += [
            ("restarts", String(tenant.restarts)),
            ("superuser", tenant.superuser),
            ("os user", tenant.osUser),
            ("socket directory", tenant.socketDirectory),
            ("port", String(tenant.port)),
            ("data directory", tenant.dataDirectory),
            ("log file", tenant.logFile),
            ("created", timestamp(tenant.createdAt)),
        ]
        pairs += resourceLines(tenant)
        if let network = tenant.network {
            let where_ = switch tenant.sandboxed {
            case true?: "in its sandbox"
            case false?: "not sandboxed (started by an older pgfleet, or the daemon runs with --sandbox off)"
            case nil: "not running"
            }
            let reach = network == .none ? "network none (no TCP or UDP; clients through the proxy)" : "network host"
            pairs.append(("sandbox", "\(where_), \(reach)"))
        }
        if let collation = tenant.collation {
            let versions = [collation.glibcVersion.map { "glibc \($0)" }, collation.icuVersion.map { "ICU \($0)" }].compactMap { $0 }
            let indexes = "\(collation.indexes) collation-dependent index\(collation.indexes == 1 ? "" : "es")"
            pairs.append(("collation", ([collation.providers] + versions + [indexes, "recorded on \(collation.bundle)"]).joined(separator: ", ")))
        }
        if let reason = tenant.failureReason {
            pairs.append(("failure reason", reason))
        }
        if let proxy = tenant.proxy {
            let strings = proxy.connectionStrings(tenant: tenant.name, user: tenant.superuser)
            pairs.append(("connect (proxy)", "psql " + shellDoubleQuoted(strings.keyword)))
            pairs.append(("uri (proxy)", strings.uri))
        }
        pairs.append(("connect (socket)", connectCommand(tenant)))
        return keyValueLines(pairs)
    }

    /// Each limit beside what is used of it: `memory  41MB of 256MB`, `cpu  12.3 s used (limit 0.5 cores)`.
    static func resourceLines(_ tenant: TenantInfo) -> [(String, String)] {
        let limits = tenant.limits ?? .none
        let usage = tenant.usage
        func of(_ used: String?, _ limit: String?) -> String {
            switch (used, limit) {
            case let (used?, limit?): "\(used) of \(limit)"
            case let (used?, nil): "\(used) (no limit)"
            case let (nil, limit?): "limit \(limit)"
            case (nil, nil): "no limit"
            }
        }
        var lines: [(String, String)] = [
            ("cpu", of(usage?.cpuMicroseconds.map { String(format: "%.1f s used", Double($0) / 1_000_000) },
                       limits.cpuMillicores.map { "\(TenantLimits.cores($0)) cores" }).replacingOccurrences(of: " used of ", with: " used, limit ")),
            ("memory", of(usage?.memoryBytes.map(ByteSize.format), limits.memoryBytes.map(ByteSize.format))),
            ("processes", of(usage?.pids.map(String.init), limits.pids.map(String.init))),
        ]
        if let weight = limits.ioWeight { lines.append(("io weight", String(weight))) }
        if limits.diskBytes != nil || usage?.diskUsedBytes != nil {
            let warning = usage?.diskWarning.map { "; nearly full: \($0)" } ?? ""
            lines.append(("disk", of(usage?.diskUsedBytes.map(ByteSize.format), limits.diskBytes.map(ByteSize.format)) + warning))
        }
        if let kills = usage?.oomKills { lines.append(("oom kills", String(kills))) }
        if let size = usage?.shmSizeBytes {
            lines.append(("/dev/shm", "\(ByteSize.format(usage?.shmUsedBytes ?? 0)) of \(ByteSize.format(size))"))
        } else if let shm = limits.shmBytes {
            lines.append(("/dev/shm", "size \(ByteSize.format(shm))"))
        }
        if let mode = limits.hugePages {
            var text = mode.rawValue
            if let limit = usage?.hugePagesLimitBytes, limit > 0 {
                text += ": \(ByteSize.format(usage?.hugePagesBytes ?? 0)) in use of \(ByteSize.format(limit)) given"
            } else if let note = usage?.hugePagesNote {
                text += ": " + note
            } else if mode != .off, tenant.pid != nil {
                text += ": none given"
            }
            lines.append(("huge pages", text))
        }
        return lines
    }

    public static func keyValueLines(_ pairs: [(String, String)]) -> String {
        let width = (pairs.map(\.0.count).max() ?? 0) + 2
        return pairs.map { key, value in
            (key + ":").padding(toLength: width, withPad: " ", startingAt: 0) + value
        }.joined(separator: "\n")
    }

    /// Ready-to-paste ways to connect: through the proxy (keyword and URI forms) and on the socket.
    public static func connectLines(_ tenant: TenantInfo) -> [String] {
        var lines: [String] = []
        if let proxy = tenant.proxy {
            let strings = proxy.connectionStrings(tenant: tenant.name, user: tenant.superuser)
            lines += ["  psql " + shellDoubleQuoted(strings.keyword), "  psql " + shellDoubleQuoted(strings.uri)]
        }
        lines.append("  " + connectCommand(tenant) + (tenant.proxy == nil ? "" : "   (on this host, bypassing the proxy)"))
        return lines
    }

    /// A command to paste into a shell: `psql "host=… port=5432 user=… dbname=postgres"`.
    public static func connectCommand(_ tenant: TenantInfo) -> String {
        let conninfo = [
            "host=" + conninfoValue(tenant.socketDirectory),
            "port=\(tenant.port)",
            "user=" + conninfoValue(tenant.superuser),
            "dbname=postgres",
        ].joined(separator: " ")
        return "psql " + shellDoubleQuoted(conninfo)
    }

    /// libpq quotes a value with spaces or quotes in single quotes, backslash-escaping `'` and `\`.
    static func conninfoValue(_ value: String) -> String {
        guard value.isEmpty || value.contains(where: { $0 == " " || $0 == "'" || $0 == "\\" }) else { return value }
        let escaped = value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'")
        return "'" + escaped + "'"
    }

    static func shellDoubleQuoted(_ value: String) -> String {
        var out = "\""
        for character in value {
            if "\"\\$`".contains(character) { out.append("\\") }
            out.append(character)
        }
        return out + "\""
    }

    // MARK: Bundles

    /// One row per bundle, within 80 columns for the usual ids; the paths are in `--json`.
    public static func bundleTable(_ bundles: [BundleInfo]) -> String {
        var table = TextTable(headers: ["ID", "VERSION", "SOURCE", "DEFAULT", "ICU", "GLIBC", "EXT", "VERIFIED", "TENANTS"])
        for bundle in bundles {
            table.rows.append([
                bundle.id,
                bundle.version,
                bundle.sourceKind,
                bundle.isDefault ? "fleet" : (bundle.isMajorDefault == true ? "major" : ""),
                bundle.icuVersion ?? "no",
                // What it needs (its newest GLIBC_ symbol), else the host's at import.
                bundle.glibcNeeded.map { "≥" + $0 } ?? bundle.glibcVersion ?? "-",
                bundle.extensions.map { String($0.count) } ?? "-",
                bundle.verification.map { $0.passed ? "passed" : ($0.usable ? "failed" : "refused") } ?? "never",
                String(bundle.tenants),
            ])
        }
        return table.render()
    }

    // MARK: Daemon

    public static func statusDetails(_ status: DaemonStatus, socketPath: String, now: Date) -> String {
        let byState = TenantState.allCases.compactMap { state -> String? in
            guard let count = status.tenantsByState[state.rawValue], count > 0 else { return nil }
            return "\(count) \(state.rawValue)"
        }
        var tenants = String(status.tenants)
        if !byState.isEmpty { tenants += " (" + byState.joined(separator: ", ") + ")" }
        return keyValueLines([
            ("daemon", "pgfleet serve \(status.version), pid \(status.pid)"),
            ("root", status.root),
            ("api socket", socketPath),
            ("started", "\(timestamp(status.startedAt)) (up \(duration(now.timeIntervalSince(status.startedAt))))"),
            ("isolation", status.isolated
                ? "each tenant runs as its own OS user"
                : "none: the daemon is not root, so every tenant runs as the daemon's user"),
            ("proxy", status.proxy.map { "\($0.host):\($0.port), TLS \($0.tls)" + ($0.sniDomain.map { ", SNI *.\($0)" } ?? "") } ?? "not running"),
            ("tenants", tenants),
            ("bundles", String(status.bundles)),
            ("ready pool", poolSummary(status)),
        ])
    }

    /// "2 per bundle: 15.18-debian 2 ready, 16.15-tarball 1 ready (initialising one)", or "off".
    public static func poolSummary(_ status: DaemonStatus) -> String {
        guard let size = status.poolSize, size > 0 else { return "off (serve --pool-size 0)" }
        let bundles = (status.pool ?? []).map { pool in
            "\(pool.bundle) \(pool.ready) ready" + (pool.building ? " (initialising one)" : "")
        }
        return "\(size) per bundle" + (bundles.isEmpty ? "" : ": " + bundles.joined(separator: ", "))
    }
}
