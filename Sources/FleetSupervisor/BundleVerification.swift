import FleetBundles
import FleetCore
import FleetHost
import Foundation

/// The pure half of `bundle verify`: which host files a bundle declares, what to run, how to read
/// what ran, and whether a result keeps a bundle from new tenants. The running is in
/// Fleet+BundleVerify.swift.
enum BundleVerification {
    typealias Check = BundleManifest.Verification.Check

    /// glibc's data an unvendored bundle reads from the host: the C.UTF-8 locale its clusters use.
    static let unvendoredGlibcData = ["/usr/lib/locale/C.utf8"]
    /// The ELF interpreter of x86-64 binaries (PT_INTERP), when the manifest does not list it.
    static let loader = "/lib64/ld-linux-x86-64.so.2"

    /// The host files the bundle-only sandbox holds besides the bundle: for a vendored bundle
    /// glibc's declared paths and its own shell at /bin/sh; for an unvendored one the host
    /// libraries its manifest lists, glibc's locale data and the host's /bin/sh. Never the host's
    /// time zones: an unvendored bundle that needs them fails the time-zone check, which is the point.
    static func declaredBinds(_ manifest: BundleManifest, bundleDirectory: String, exists: (String) -> Bool) -> [ReadOnlyBind] {
        var binds: [ReadOnlyBind] = []
        if let vendored = manifest.vendored {
            binds += vendored.glibc.hostPaths.filter { $0.hasPrefix("/") && !$0.split(separator: "/").contains { $0 == ".." || $0 == "." } }
                .map { ReadOnlyBind($0) }
            if let shell = vendored.shell, isInside(shell) {
                binds.append(ReadOnlyBind(source: bundleDirectory + "/" + shell, target: "/bin/sh"))
            }
        } else {
            // Only clean absolute paths: a sandbox plan refuses "..", and one bad path must not fail every check.
            binds += manifest.host.libraries.map(\.path).filter { $0.hasPrefix("/") && !$0.split(separator: "/").contains { $0 == ".." || $0 == "." } }
                .map { ReadOnlyBind($0) }
            if !manifest.host.libraries.contains(where: { $0.path == loader }), exists(loader) { binds.append(ReadOnlyBind(loader)) }
            binds += unvendoredGlibcData.filter(exists).map { ReadOnlyBind($0) }
            binds.append(ReadOnlyBind("/bin/sh"))
        }
        return binds
    }

    /// A path relative to the bundle that stays inside it.
    static func isInside(_ relative: String) -> Bool {
        !relative.isEmpty && !relative.hasPrefix("/") && !relative.split(separator: "/").contains("..")
    }

    // MARK: - Whether a result keeps the bundle from new tenants

    /// Why new tenants and the ready pool may not use the bundle, or nil. A bundle never
    /// verified (imported before `bundle verify`) stays usable. A vendored bundle claims to need
    /// nothing of the host but glibc, so any failed check refuses it. An unvendored one runs its
    /// tenants with the host's /usr, which the bundle-only sandbox leaves out: there only a
    /// changed file (the checksums) refuses it, its other failures say what it takes from the host.
    static func refusal(_ manifest: BundleManifest) -> String? {
        guard let verification = manifest.verification, !verification.passed else { return nil }
        let failures = verification.failures
        let refusing = manifest.vendored != nil ? failures : failures.filter { $0.name == checksumsCheck }
        guard !refusing.isEmpty else { return nil }
        return "bundle \(manifest.id) failed its verification (\(refusing.map(\.name).joined(separator: ", "))); "
            + "fix or re-import it, then retry with `pgfleet bundle verify \(manifest.id)`"
    }

    static func info(_ manifest: BundleManifest) -> BundleVerificationInfo? {
        guard let verification = manifest.verification else { return nil }
        let refusal = refusal(manifest)
        var note: String?
        if let refusal {
            note = refusal
        } else if !verification.passed {
            note = "not vendored: its tenants see the host's /usr, so the checks that failed in a sandbox holding only the bundle "
                + "name what it takes from the host; re-import it with vendoring to make it self-contained"
        }
        return BundleVerificationInfo(
            passed: verification.passed, verifiedAt: verification.verifiedAt, pgfleetVersion: verification.pgfleetVersion,
            checks: verification.checks.map { .init(name: $0.name, passed: $0.passed, detail: $0.detail) }, usable: refusal == nil, note: note
        )
    }

    // MARK: - Checks and their reading

    static let checksumsCheck = "checksums"
    /// '2026-07-01 12:00+00' in Berlin (CEST, UTC+2).
    static let zoneQuery = "SET timezone = 'Europe/Berlin'; SELECT now() IS NOT NULL, ('2026-07-01 12:00+00'::timestamptz AT TIME ZONE 'Europe/Berlin')::text;"
    static let zoneExpected = "t|2026-07-01 14:00:00"
    static let sortValues = "(VALUES ('b'),('a'),('B'),('ä')) v(x)"
    static let sortQuery = "SELECT string_agg(x, ',' ORDER BY x COLLATE \"C\") FROM \(sortValues); SELECT string_agg(x, ',' ORDER BY x) FROM \(sortValues);"
    /// Code-point order: what C and the clusters' C.UTF-8 both give.
    static let sortExpected = "B,a,b,ä"

    /// Every extension in its own subtransaction, so one failing does not hide the next; each
    /// result comes back as a NOTICE line `pgfleet-verify|ok|NAME|` or `pgfleet-verify|fail|NAME|ERROR`.
    static func extensionsScript(_ names: [String]) -> String {
        let list = names.map { "'" + $0.replacingOccurrences(of: "'", with: "''") + "'" }.joined(separator: ",")
        return """
            DO $pgfleet$
            DECLARE name text;
            BEGIN
              FOREACH name IN ARRAY ARRAY[\(list)]::text[] LOOP
                BEGIN
                  EXECUTE format('CREATE EXTENSION IF NOT EXISTS %I CASCADE', name);
                  RAISE NOTICE 'pgfleet-verify|ok|%|', name;
                EXCEPTION WHEN others THEN
                  RAISE NOTICE 'pgfleet-verify|fail|%|%', name, SQLERRM;
                END;
              END LOOP;
            END
            $pgfleet$;
            """
    }

    /// One check per extension from the NOTICE lines; an extension with no line failed without a word.
    static func extensionChecks(names: [String], output: String) -> [Check] {
        var results: [String: Check] = [:]
        for line in output.split(separator: "\n") {
            guard let start = line.range(of: "pgfleet-verify|") else { continue }
            let fields = line[start.upperBound...].split(separator: "|", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            let name = String(fields[1])
            let error = String(fields[2]).trimmingCharacters(in: .whitespaces)
            results[name] = Check(name: "CREATE EXTENSION \(name)", passed: fields[0] == "ok", detail: fields[0] == "ok" ? nil : error)
        }
        return names.map { results[$0] ?? Check(name: "CREATE EXTENSION \($0)", passed: false, detail: "no result (the server may have crashed)") }
    }

    /// The extensions a bundle ships: `share/extension/*.control`, sorted.
    static func extensionNames(_ manifest: BundleManifest) -> [String] {
        if let listed = manifest.extensions { return listed.sorted() }
        let prefix = manifest.paths.share + "/extension/"
        return manifest.files.compactMap { file -> String? in
            let path = file.path.hasPrefix(prefix) ? String(file.path.dropFirst(prefix.count)) : nil
            guard let path, !path.contains("/"), path.hasSuffix(".control") else { return nil }
            return String(path.dropLast(".control".count))
        }.sorted()
    }

    // MARK: - Missing libraries, named with the file that needed them

    /// Sonames in the loader's "error while loading shared libraries: X: cannot open shared
    /// object file" (and dlopen's "X: cannot open shared object file"), in order, once each.
    static func missingLibraries(in output: String) -> [String] {
        var found: [String] = []
        var rest = Substring(output)
        while let marker = rest.range(of: ": cannot open shared object file") {
            let before = rest[..<marker.lowerBound]
            let name = before.reversed().prefix { !" \t\n\"':".contains($0) }
            let soname = String(name.reversed())
            if !soname.isEmpty, !found.contains(soname) { found.append(soname) }
            rest = rest[marker.upperBound...]
        }
        return found
    }

    /// `readelf -d -W FILE…`: each file's NEEDED sonames (a single file's output has no "File:" line).
    static func neededByFile(readelf output: String, files: [String]) -> [String: [String]] {
        var result: [String: [String]] = [:]
        var current: String? = files.count == 1 ? files[0] : nil
        for line in output.split(separator: "\n") {
            if line.hasPrefix("File: ") {
                current = String(line.dropFirst("File: ".count))
                continue
            }
            guard let current, line.contains("(NEEDED)"), let open = line.range(of: "["), let close = line.range(of: "]", range: open.upperBound..<line.endIndex) else { continue }
            result[current, default: []].append(String(line[open.upperBound..<close.lowerBound]))
        }
        return result
    }

    /// "libzstd.so.1 (needed by lib/libpq.so.5)": the files that list it as NEEDED, relative to the bundle.
    /// `failing`: the loader's whole message, whose program ("…/postgres: error while loading")
    /// is named first when it is one of the files.
    static func describeMissing(_ sonames: [String], needed: [String: [String]], bundleDirectory: String, failing: String = "") -> String {
        let programs = Set(failing.split(separator: "\n").compactMap { line -> String? in
            guard let marker = line.range(of: ": error while loading shared libraries") else { return nil }
            return line[..<marker.lowerBound].split(separator: "/").last.map(String.init)
        })
        return sonames.map { soname in
            let users = needed.filter { $0.value.contains(soname) }.keys.map { path in
                path.hasPrefix(bundleDirectory + "/") ? String(path.dropFirst(bundleDirectory.count + 1)) : path
            }.sorted { lhs, rhs in
                let (l, r) = (programs.contains(lhs.split(separator: "/").last.map(String.init) ?? ""), programs.contains(rhs.split(separator: "/").last.map(String.init) ?? ""))
                return l != r ? l : lhs < rhs
            }
            let shown = users.prefix(5).joined(separator: ", ") + (users.count > 5 ? " and \(users.count - 5) more" : "")
            return users.isEmpty ? "\(soname) is missing" : "\(soname) is missing (needed by \(shown))"
        }.joined(separator: "; ")
    }

    /// The last lines of a command's output, for a check's detail.
    static func tail(_ text: String, lines: Int = 6) -> String {
        text.split(separator: "\n").suffix(lines).joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
