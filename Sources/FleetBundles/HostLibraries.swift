import FleetCore
import FleetSystem
import Foundation

/// One line of `ldd` output.
enum LddEntry: Equatable, Sendable {
    /// `libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x…)`, or the loader itself: `/lib64/ld-linux-x86-64.so.2 (0x…)`.
    case resolved(soname: String, path: String)
    /// `libfoo.so.1 => not found`.
    case missing(soname: String)
    /// `linux-vdso.so.1 (0x…)`: provided by the kernel, not a file.
    case virtual(soname: String)
}

/// Parses `ldd` output for one or more files. With several files ldd starts each section with a
/// `path:` line; with one it prints none, and everything belongs to the first file.
enum LddOutput {
    static func parse(_ output: String, files: [String]) -> [(file: String, entries: [LddEntry])] {
        var sections: [(file: String, entries: [LddEntry])] = []
        for rawLine in output.split(separator: "\n") {
            let line = String(rawLine)
            if let first = line.first, first != "\t", first != " ", line.hasSuffix(":") {
                sections.append((String(line.dropLast()), []))
                continue
            }
            guard let entry = parseEntry(line) else { continue }
            if sections.isEmpty, let file = files.first { sections.append((file, [])) }
            guard !sections.isEmpty else { continue }
            sections[sections.count - 1].entries.append(entry)
        }
        return sections
    }

    /// One dependency line, or nil for anything else ("not a dynamic executable", "statically linked").
    static func parseEntry(_ line: String) -> LddEntry? {
        let text = line.trimmingCharacters(in: .whitespaces)
        guard !text.isEmpty else { return nil }
        let withoutAddress = stripAddress(text)
        if let arrow = withoutAddress.range(of: " => ") ?? withoutAddress.range(of: " =>") {
            let soname = withoutAddress[..<arrow.lowerBound].trimmingCharacters(in: .whitespaces)
            let target = withoutAddress[arrow.upperBound...].trimmingCharacters(in: .whitespaces)
            guard !soname.isEmpty, !soname.contains(" ") else { return nil }
            if target == "not found" { return .missing(soname: soname) }
            if target.hasPrefix("/") { return .resolved(soname: soname, path: target) }
            return .virtual(soname: soname)  // old glibc: "linux-vdso.so.1 =>  (0x…)"
        }
        guard !withoutAddress.contains(" ") else { return nil }
        if withoutAddress.hasPrefix("/") {
            return .resolved(soname: (withoutAddress as NSString).lastPathComponent, path: withoutAddress)
        }
        guard withoutAddress.contains(".so") else { return nil }
        return .virtual(soname: withoutAddress)
    }

    private static func stripAddress(_ text: String) -> String {
        guard text.hasSuffix(")"), let open = text.range(of: " (0x", options: .backwards) else { return text }
        return text[..<open.lowerBound].trimmingCharacters(in: .whitespaces)
    }
}

/// What a bundle needs from the host, summarised from ldd.
struct LibraryScan: Equatable, Sendable {
    var libraries: [BundleManifest.Library] = []
    var missing: [String] = []
    /// Which scanned files (relative to the bundle) need each missing soname.
    var missingBy: [String: [String]] = [:]
    /// The ICU the server is built with: set only when bin/postgres names libicuuc itself. A
    /// library it loads may pull ICU in (libxml2 does) into a server built without it, which
    /// refuses ICU databases all the same.
    var icuVersion: String?
    /// Whether bin/postgres's own DT_NEEDED names ICU; nil when its dynamic section is unreadable.
    var serverLinksICU: Bool?

    /// `bundleDirectories`: the bundle's path as given and its real path; a library under either
    /// is the bundle's own, not the host's.
    static func summarize(
        _ sections: [(file: String, entries: [LddEntry])], bundleDirectories: [String],
        realPath: (String) -> String? = FileTree.realPath
    ) -> LibraryScan {
        var scan = LibraryScan()
        // One path per soname: the first found, i.e. the one bin/postgres loads. Other files may
        // reach the same soname by another path (/lib vs /usr/lib on merged-/usr hosts).
        var host: [String: String] = [:]
        var missing = Set<String>()
        for section in sections {
            let file = FileTree.relative(section.file, toAny: bundleDirectories) ?? section.file
            for entry in section.entries {
                switch entry {
                case .virtual:
                    continue
                case .missing(let soname):
                    missing.insert(soname)
                    if !(scan.missingBy[soname]?.contains(file) ?? false) { scan.missingBy[soname, default: []].append(file) }
                case .resolved(let soname, let path):
                    // ICU decides collation whether the bundle carries it or the host does.
                    if scan.icuVersion == nil, let icu = icuMajor(soname: soname) { scan.icuVersion = icu }
                    let normalized = FileTree.lexicallyNormalized(path)
                    let inside = FileTree.relative(normalized, toAny: bundleDirectories) != nil
                        || realPath(path).map { FileTree.relative($0, toAny: bundleDirectories) != nil } ?? false
                    if !inside, host[soname] == nil { host[soname] = normalized }
                }
            }
        }
        scan.libraries = host.map { BundleManifest.Library(soname: $0.key, path: $0.value) }.sorted { $0.soname < $1.soname }
        scan.missing = missing.sorted()
        return scan
    }

    /// Narrows `icuVersion` to what the server itself links, from its dynamic section.
    mutating func narrowICU(toServer server: ELFDynamic?) {
        guard let server else { return }
        let linked = server.linkedICU
        serverLinksICU = linked != nil
        icuVersion = linked
    }

    /// "72" for "libicuuc.so.72".
    static func icuMajor(soname: String) -> String? {
        let prefix = "libicuuc.so."
        guard soname.hasPrefix(prefix) else { return nil }
        let major = soname.dropFirst(prefix.count).prefix(while: \.isASCIIDigit)
        return major.isEmpty ? nil : String(major)
    }
}

/// The host facts a manifest records.
enum HostFacts {
    /// glibc's version, e.g. "2.36": from confstr, else from the first line of `ldd --version`.
    static func glibcVersion(ldd: String) async -> String? {
        var buffer = [CChar](repeating: 0, count: 128)
        let length = confstr(Int32(_CS_GNU_LIBC_VERSION), &buffer, buffer.count)
        if length > 0, length <= buffer.count {
            let text = String(decoding: buffer.prefix(length - 1).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if let version = glibcVersion(fromConfstr: text) { return version }
        }
        guard let result = try? await Command.run(ldd, ["--version"]), result.succeeded else { return nil }
        return glibcVersion(fromLddVersion: result.stdout)
    }

    /// "glibc 2.36" → "2.36".
    static func glibcVersion(fromConfstr text: String) -> String? {
        let parts = text.split(separator: " ")
        guard parts.count == 2, parts[0] == "glibc", parts[1].first?.isASCIIDigit == true else { return nil }
        return String(parts[1])
    }

    /// "ldd (Debian GLIBC 2.36-9+deb12u10) 2.36" → "2.36".
    static func glibcVersion(fromLddVersion output: String) -> String? {
        guard let first = output.split(separator: "\n").first,
              let last = first.split(separator: " ").last, last.first?.isASCIIDigit == true else { return nil }
        return String(last)
    }
}
