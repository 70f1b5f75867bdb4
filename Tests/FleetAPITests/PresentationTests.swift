import FleetCLI
import FleetClient
import FleetCore
import Foundation
import Testing

@Suite struct PresentationTests {
    @Test func splitterHandlesAnyChunking() throws {
        let stream = Array("{\"a\":1}\n{\"b\":2}\r\n\n{\"c\":3}".utf8)
        for chunkSize in [1, 2, 5, stream.count] {
            var splitter = NDJSONSplitter()
            var lines: [String] = []
            var index = 0
            while index < stream.count {
                let end = min(index + chunkSize, stream.count)
                lines += try splitter.append(stream[index..<end]).map { String(decoding: $0, as: UTF8.self) }
                index = end
            }
            if let last = splitter.finish() { lines.append(String(decoding: last, as: UTF8.self)) }
            #expect(lines == ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"], "chunk size \(chunkSize)")
        }
    }

    @Test func splitterBoundsLineLength() {
        var splitter = NDJSONSplitter(maxLineLength: 8)
        #expect(throws: FleetError.self) { try splitter.append(Array("0123456789".utf8)) }
    }

    @Test func durations() {
        #expect(Presentation.duration(12) == "12s")
        #expect(Presentation.duration(312) == "5m 12s")
        #expect(Presentation.duration(7_500) == "2h 5m")
        #expect(Presentation.duration(3 * 86_400 + 4 * 3_600 + 59) == "3d 4h")
        #expect(Presentation.duration(-5) == "0s")
    }

    @Test func tenantTableIsAlignedAndShowsFailures() {
        var acme = FakeFleet.tenant("acme")
        acme.runningSince = Date(timeIntervalSince1970: 1_000)
        var broken = FakeFleet.tenant("broken-one")
        broken.state = .failed
        broken.pid = nil
        broken.restarts = 5
        broken.failureReason = "postgres exited 1: could not map shared memory"
        var halfMade = FakeFleet.tenant("half-made")
        halfMade.state = .stopped
        halfMade.pid = nil
        halfMade.failureReason = "its creation was cut short"
        var stopped = FakeFleet.tenant("stopped")
        stopped.state = .stopped
        stopped.pid = nil
        let text = Presentation.tenantTable([acme, broken, halfMade, stopped], now: Date(timeIntervalSince1970: 1_000 + 3_700))
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines.count == 7)
        #expect(lines[5].contains("stopped: its creation was cut short"))
        #expect(lines[6].hasPrefix("stopped "))
        #expect(lines[0].hasPrefix("NAME        VERSION  PORT  STATE"))
        for header in ["PID", "UPTIME", "RESTARTS", "OS USER", "SOCKET DIR", "DATA DIR", "LOG FILE"] {
            #expect(lines[0].contains(header))
        }
        // Columns line up: every row has its STATE where the header has it.
        let stateColumn = lines[0].range(of: "STATE")!.lowerBound.utf16Offset(in: lines[0])
        #expect(lines[1].dropFirst(stateColumn).hasPrefix("running"))
        #expect(lines[2].dropFirst(stateColumn).hasPrefix("failed (wants running)"))
        #expect(lines[1].contains("1h 1m"))
        #expect(lines[3].contains("failed: postgres exited 1: could not map shared memory"))
        #expect(lines.allSatisfy { !$0.hasSuffix(" ") })
    }

    /// TextTable as it rendered before it wrote bytes: the reference for the faster one.
    static func referenceRender(_ table: TextTable) -> String {
        var widths = table.headers.map(\.count)
        for row in table.rows {
            for (index, cell) in row.enumerated() where index < widths.count {
                widths[index] = max(widths[index], cell.count)
            }
        }
        func line(_ cells: [String]) -> String {
            var out = ""
            for (index, cell) in cells.enumerated() {
                out += cell
                if index < cells.count - 1 {
                    out += String(repeating: " ", count: max(widths[index] + 2 - cell.count, 0))
                }
            }
            return out
        }
        var lines = [line(table.headers)]
        for (index, row) in table.rows.enumerated() {
            lines.append(line(row))
            for note in table.notes[index] ?? [] {
                lines.append("  └─ " + note)
            }
        }
        return lines.joined(separator: "\n")
    }

    /// Widths count Characters, not bytes: accents, CJK, emoji, combining marks and control
    /// characters pad as they did.
    @Test func tableRendersAsBefore() {
        let pieces = ["", "a", "abc", "/var/lib/pgfleet/tenants/x/socket", "é", "e\u{301}", "日本語", "😀", "👩‍👩‍👧", "a\tb", "\r\n", "x\u{7F}"]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let columns = Int.random(in: 1...5, using: &generator)
            func cell() -> String { (0..<Int.random(in: 0...3, using: &generator)).map { _ in pieces.randomElement(using: &generator)! }.joined() }
            var table = TextTable(headers: (0..<columns).map { "H\($0)" + cell() })
            for row in 0..<Int.random(in: 0...6, using: &generator) {
                table.rows.append((0..<columns).map { _ in cell() })
                if Bool.random(using: &generator) { table.notes[row] = [cell(), "failed: " + cell()] }
            }
            #expect(table.render() == Self.referenceRender(table), "\(table)")
        }
        let tenants = (0..<50).map { FakeFleet.tenant(String(format: "t%02d", $0)) }
        let text = Presentation.tenantTable(tenants, now: Date(timeIntervalSince1970: 1_700_000_500))
        #expect(text.split(separator: "\n").count == 51)
    }

    @Test func connectCommandQuotesForLibpqAndTheShell() {
        var tenant = FakeFleet.tenant("acme")
        #expect(Presentation.connectCommand(tenant)
            == #"psql "host=/var/lib/pgfleet/tenants/acme/socket port=5432 user=postgres dbname=postgres""#)
        tenant.socketDirectory = "/srv/my fleet/tenants/acme/socket"
        #expect(Presentation.connectCommand(tenant)
            == #"psql "host='/srv/my fleet/tenants/acme/socket' port=5432 user=postgres dbname=postgres""#)
    }

    @Test func bundleTable() {
        var vendored = FakeFleet.bundle(id: "18.6-tarball", major: 18, version: "18.6")
        vendored.isDefault = false
        vendored.isMajorDefault = true
        vendored.icuVersion = nil
        vendored.glibcNeeded = "2.34"
        vendored.extensions = ["amcheck", "dblink", "postgres_fdw"]
        vendored.verification = BundleVerificationInfo(passed: true, verifiedAt: Date(), pgfleetVersion: "0.1.0", checks: [], usable: true)
        let text = Presentation.bundleTable([FakeFleet.bundle(), vendored])
        let lines = text.split(separator: "\n").map(String.init)
        let words = lines.map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        #expect(words[0] == ["ID", "VERSION", "SOURCE", "DEFAULT", "ICU", "GLIBC", "EXT", "VERIFIED", "TENANTS"])
        // A bundle from before format 2: no manifest facts, never verified.
        #expect(words[1] == ["16.4-debian", "16.4", "system", "fleet", "72", "2.36", "-", "never", "0"])
        #expect(words[2] == ["18.6-tarball", "18.6", "system", "major", "no", "≥2.34", "3", "passed", "0"])
        #expect(lines.allSatisfy { $0.count <= 80 })
    }
}

@Suite struct JSONOutputTests {
    @Test func tenantJSONHasEveryFieldWithNullsAndSortedKeys() throws {
        var tenant = FakeFleet.tenant("acme")
        tenant.state = .stopped
        tenant.pid = nil
        tenant.runningSince = nil
        let text = try JSONOutput.render(tenant)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        for key in ["name", "version", "state", "pid", "socketDirectory", "dataDirectory", "logFile", "runningSince", "failureReason"] {
            #expect(object.keys.contains(key), "missing \(key)")
        }
        #expect(object["pid"] is NSNull)
        #expect(object["state"] as? String == "stopped")
        #expect(text.contains("\"createdAt\" : \"2023-11-14T22:13:20Z\""))
        let keys = text.split(separator: "\n").compactMap { line -> String? in
            guard let quote = line.firstIndex(of: "\"") else { return nil }
            return String(line[quote...].split(separator: "\"").first ?? "")
        }
        #expect(keys == keys.sorted())

        // Still decodes as a TenantInfo.
        #expect(try decodeJSON(TenantInfo.self, text) == tenant)
    }

    @Test func listsAreArrays() throws {
        let tenants = try decodeJSON([TenantInfo].self, try JSONOutput.render([FakeFleet.tenant("a"), FakeFleet.tenant("b")]))
        #expect(tenants.map(\.name) == ["a", "b"])
        var bundle = FakeFleet.bundle()
        bundle.icuVersion = nil
        let text = try JSONOutput.render([bundle])
        #expect(text.contains("\"icuVersion\" : null"))
        #expect(try decodeJSON([BundleInfo].self, text) == [bundle])
    }

    @Test func statusSaysHowFullTheReadyPoolIs() {
        var status = DaemonStatus(
            version: "0.1.0", root: "/r", pid: 1, isolated: true, startedAt: Date(timeIntervalSince1970: 0), tenants: 0,
            tenantsByState: [:], bundles: 2, poolSize: 2,
            pool: [PoolStatus(bundle: "15.18-debian", ready: 2, size: 2, building: false), PoolStatus(bundle: "16.15-tarball", ready: 1, size: 2, building: true)]
        )
        #expect(Presentation.poolSummary(status) == "2 per bundle: 15.18-debian 2 ready, 16.15-tarball 1 ready (initialising one)")
        #expect(Presentation.statusDetails(status, socketPath: "/r/run/api.sock", now: Date(timeIntervalSince1970: 5)).contains("ready pool: 2 per bundle:"))
        status.poolSize = 0
        #expect(Presentation.poolSummary(status) == "off (serve --pool-size 0)")
    }
}
