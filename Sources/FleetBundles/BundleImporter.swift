import FleetCore
import FleetSystem
import Foundation

/// Runs a bundle's own programs, as an unprivileged user when it can (see `BundleTools.probeUser`).
struct Prober: Sendable {
    var user: UserIdentity?

    static func choose(for directory: String, userName: String?) -> Prober {
        guard geteuid() == 0, let userName, let user = OSUsers.lookup(userName),
              Files.firstUnsearchableAncestor(of: directory) == nil else { return Prober(user: nil) }
        return Prober(user: user)
    }

    func run(_ executable: String, _ arguments: [String]) async throws -> CommandResult {
        try await Command.run(executable, arguments, user: user, workingDirectory: "/")
    }
}

/// One import, from a classified source to a bundle renamed into place. Everything it creates is
/// under `staging`, which the store removes afterwards whatever happened.
struct BundleImporter {
    static let progressEvery = 50

    let store: BundleStore
    /// The path as the caller gave it: recorded in the manifest and named in messages.
    let origin: String
    let staging: String
    let progress: ProgressReporter

    var tools: BundleTools { store.tools }

    func run(_ source: ImportSource) async throws -> Bundle {
        switch source {
        case .installation(let binDirectory):
            return try await importInstallation(binDirectory: binDirectory)
        case .tarball(let path, let format):
            let digest = try await checksumArchive(path)
            return try await importTarball(path, format: format, archiveSHA256: digest, member: nil)
        case .wheel(let path):
            return try await importWheel(path)
        }
    }

    // MARK: - Installed PostgreSQL

    /// Copies an installed PostgreSQL into a mirror of its absolute paths under the bundle.
    ///
    /// Distribution builds are not relocatable by copying bin/, lib/ and share/ side by side:
    /// PostgreSQL finds its share and pkglib directories by taking the path from its compiled-in
    /// BINDIR to SHAREDIR and applying it to the real directory of its executable. Debian's
    /// /usr/lib/postgresql/15/bin → /usr/share/postgresql/15 only works again when both sit at the
    /// same relative places, so the bundle holds usr/lib/postgresql/15/bin and
    /// usr/share/postgresql/15, with top-level symlinks bin, lib and share into them.
    private func importInstallation(binDirectory: String) async throws -> Bundle {
        let sourceBin = FileTree.realPath(binDirectory) ?? binDirectory
        // Known before copying, so a duplicate fails at once and not after copying 50 MB.
        let sourceVersion = try await probeVersion(sourceBin + "/postgres", prober: Prober(user: nil))
        let id = BundleID.make(version: sourceVersion.version, kind: BundleID.systemKind(for: sourceVersion))
        try checkID(id)
        try store.checkAbsent(id)

        let pgConfig = sourceBin + "/pg_config"
        guard ImportSource.isExecutableFile(pgConfig) else {
            throw FleetError.invalidBundle(
                "\(origin) has bin/postgres but no bin/pg_config, which pgfleet needs to find its share and lib directories"
            )
        }
        let result = try await Command.run(pgConfig, ["--bindir", "--sharedir", "--pkglibdir"]).check("\(pgConfig)")
        let layout = try MirrorLayout(pgConfigOutput: result.stdout, origin: origin)

        let tree = staging + "/tree"
        try Files.makeDirectory(tree, mode: 0o755)
        var roots: [(source: String, real: String)] = []
        for source in layout.copyRoots {
            var isDirectory: ObjCBool = false
            guard let real = FileTree.realPath(source), FileManager.default.fileExists(atPath: real, isDirectory: &isDirectory),
                  isDirectory.boolValue else {
                throw FleetError.invalidBundle("\(origin): pg_config names \(source), which is not a directory")
            }
            roots.append((source, real))
        }
        try checkRoom(
            for: ArchiveContents(tree: try roots.flatMap { try FileTree.walk($0.real) }),
            what: "the copy of " + roots.map(\.source).joined(separator: " and ")
        )
        for (source, real) in roots {
            await progress(.progress("copying \(source)"))
            let destination = tree + source
            try Files.makeDirectory((destination as NSString).deletingLastPathComponent, mode: 0o755)
            try await Command.run(tools.cp, ["-a", "-T", "--", real, destination]).check("copying \(source)")
            try Task.checkCancellation()
        }
        for (name, target) in [("bin", layout.bin), ("lib", layout.pkglib), ("share", layout.share)] {
            let link = tree + "/" + name
            guard symlink(String(target.dropFirst()), link) == 0 else {
                throw FleetError.failed("cannot create \(link): \(String(cString: strerror(errno)))")
            }
        }
        try relinkToHost(tree)
        return try await finish(
            tree: tree, source: .init(kind: .system, origin: origin), expectedID: id,
            idKind: BundleID.systemKind(for:), allowLinksOutside: true
        )
    }

    /// A symlink that pointed somewhere outside the copied directories dangles in the mirror; it
    /// is pointed at its absolute target on the host instead, as it was before the copy.
    private func relinkToHost(_ tree: String) throws {
        for entry in try FileTree.walk(tree) where entry.kind == .symlink {
            let inBundle = tree + "/" + entry.path
            guard FileTree.realPath(inBundle) == nil, let onHost = FileTree.realPath("/" + entry.path) else { continue }
            guard unlink(inBundle) == 0, symlink(onHost, inBundle) == 0 else {
                throw FleetError.failed("cannot relink \(inBundle): \(String(cString: strerror(errno)))")
            }
        }
    }

    // MARK: - Archives

    private func importWheel(_ path: String) async throws -> Bundle {
        guard ImportSource.isExecutableFile(tools.unzip) else {
            throw FleetError.failed(
                "importing a wheel (.whl) needs \(tools.unzip), which is not installed: install the Debian package `unzip` (apt-get install unzip)"
            )
        }
        let digest = try await checksumArchive(path)
        let listing = try await Command.run(tools.unzip, ["-Z1", path])
        guard listing.succeeded else {
            throw FleetError.invalidBundle(
                "\(origin) is not a readable zip archive (unzip: \(Self.tail(listing))); \(ImportSource.expectation)"
            )
        }
        let member: String
        do {
            member = try Wheel.tarballMember(in: listing.stdout.split(separator: "\n").map(String.init))
        } catch let error as FleetError {
            throw FleetError.invalidBundle("\(origin): \(error.description)")
        }
        let lengths = try await Command.run(tools.unzip, ["-l", path, member])
        guard lengths.succeeded, let length = ArchiveContents.unzippedLength(of: member, inListing: lengths.stdout) else {
            throw FleetError.invalidBundle("\(origin): cannot read the length of \(member) (unzip: \(Self.tail(lengths))); the wheel is truncated or corrupt")
        }
        try checkRoom(for: ArchiveContents(bytes: length, entries: 1), what: member)
        await progress(.progress("extracting \(member) from \((path as NSString).lastPathComponent)"))
        let archiveDirectory = staging + "/archive"
        try Files.makeDirectory(archiveDirectory, mode: 0o700)
        let unzipped = try await Command.run(tools.unzip, ["-q", "-o", "-j", path, member, "-d", archiveDirectory])
        let inner = archiveDirectory + "/" + (member as NSString).lastPathComponent
        guard unzipped.succeeded, FileManager.default.fileExists(atPath: inner) else {
            throw FleetError.invalidBundle("\(origin): cannot extract \(member) (unzip: \(Self.tail(unzipped))); the wheel is truncated or corrupt")
        }
        guard case .tarball(_, let format) = try ImportSource.classify(inner) else {
            throw FleetError.invalidBundle("\(origin): \(member) is not a tar archive")
        }
        return try await importTarball(inner, format: format, archiveSHA256: digest, member: member)
    }

    /// A release tarball: one top directory with bin/, lib/ and share/, relocatable as it is
    /// (its binaries find their libraries through an $ORIGIN rpath), so it becomes the bundle
    /// directory unchanged apart from modes. include/ and the license files are kept: they are
    /// part of the release, pgxs builds need include/, and the manifest checksums them anyway.
    private func importTarball(_ path: String, format: ArchiveFormat, archiveSHA256: String, member: String?) async throws -> Bundle {
        let name = (path as NSString).lastPathComponent
        await progress(.progress("reading the table of contents of \(name)"))
        let listing = try await Command.run(tools.tar, ["--list", "--verbose", "--numeric-owner", "--file", path])
        guard listing.succeeded, let contents = ArchiveContents(tarListing: listing.stdout) else {
            throw FleetError.invalidBundle(
                "cannot read \(origin) (\(format.rawValue) archive): tar \(listing.status): \(Self.tail(listing)); the archive is truncated or corrupt"
            )
        }
        try checkRoom(for: contents, what: member ?? name)
        await progress(.progress("extracting \(name) (\(DiskSpace.describe(contents.bytes)), \(contents.entries) entries)"))
        let extract = staging + "/tree"
        try Files.makeDirectory(extract, mode: 0o755)
        // --no-same-owner: the archive's uids mean nothing here; files belong to the daemon.
        let result = try await Command.run(tools.tar, ["--extract", "--file", path, "--directory", extract, "--no-same-owner"])
        guard result.succeeded else {
            throw FleetError.invalidBundle(
                "cannot extract \(origin) (\(format.rawValue) archive): tar \(result.status): \(Self.tail(result)); the archive is truncated or corrupt"
            )
        }
        let top = try findTop(extract)
        for required in ["bin", "lib", "share"] {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: top + "/" + required, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw FleetError.invalidBundle("\(origin) has no \(required)/ directory beside bin/postgres; \(ImportSource.expectation)")
            }
        }
        if FileManager.default.fileExists(atPath: top + "/" + BundleManifest.fileName) {
            throw FleetError.invalidBundle("\(origin) contains a \(BundleManifest.fileName), a name pgfleet keeps for itself")
        }
        return try await finish(
            tree: top, source: .init(kind: .tarball, origin: origin, archiveSHA256: archiveSHA256, archiveMember: member),
            expectedID: nil, idKind: { _ in BundleID.tarballKind }, allowLinksOutside: false
        )
    }

    /// The directory holding bin/postgres: the archive's single top directory, or its root.
    private func findTop(_ extract: String) throws -> String {
        if ImportSource.isExecutableFile(extract + "/bin/postgres") { return extract }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: extract)) ?? []
        if names.count == 1, let name = names.first {
            let top = extract + "/" + name
            var info = stat()
            if lstat(top, &info) == 0, info.st_mode & S_IFMT == S_IFDIR, lstat(top + "/bin/postgres", &info) == 0,
               info.st_mode & S_IFMT == S_IFREG {
                return top
            }
        }
        throw FleetError.invalidBundle(
            "\(origin) does not hold a PostgreSQL build: expected one top directory with bin/postgres, lib/ and share/ "
                + "(as in postgresql-16.15.0-x86_64-unknown-linux-gnu.tar.gz)"
        )
    }

    /// Throws unless `contents` fits the import limits and the disk, leaving the reserve free.
    /// The archive is read again to extract it; one replaced in between is not caught here, but
    /// the manifest records the checksum of the one that was read first.
    private func checkRoom(for contents: ArchiveContents, what: String) throws {
        let limits = tools.limits
        guard contents.bytes <= limits.maxUnpackedBytes else {
            throw FleetError.invalidBundle(
                "\(origin): \(what) would take \(DiskSpace.describe(contents.bytes)) on disk, more than any PostgreSQL build needs "
                    + "(pgfleet imports up to \(DiskSpace.describe(limits.maxUnpackedBytes))); nothing was written; \(ImportSource.expectation)"
            )
        }
        guard contents.entries <= limits.maxEntries else {
            throw FleetError.invalidBundle(
                "\(origin): \(what) holds \(contents.entries) entries, more than any PostgreSQL build has "
                    + "(pgfleet imports up to \(limits.maxEntries)); nothing was written; \(ImportSource.expectation)"
            )
        }
        let free = try DiskSpace.available(at: staging)
        let (needed, overflow) = contents.bytes.addingReportingOverflow(limits.reserveBytes)
        guard !overflow, needed <= free else {
            throw FleetError.failed(
                "not enough disk space to import \(origin): \(what) needs \(DiskSpace.describe(contents.bytes)) and \(store.directory) "
                    + "has \(DiskSpace.describe(free)) free, of which pgfleet leaves \(DiskSpace.describe(limits.reserveBytes)) to the tenants; "
                    + "free some space and import again"
            )
        }
    }

    private func checksumArchive(_ path: String) async throws -> String {
        await progress(.progress("checksumming \((path as NSString).lastPathComponent)"))
        return try FileTree.sha256(ofFile: path).digest
    }

    // MARK: - Common steps

    /// Checks, tidies, probes and hashes the tree, writes the manifest and renames the tree into
    /// place as `ROOT/bundles/<id>`.
    private func finish(
        tree: String, source: BundleManifest.Source, expectedID: String?, idKind: (PostgresVersion) -> String,
        allowLinksOutside: Bool
    ) async throws -> Bundle {
        await progress(.progress("verifying"))
        let realTree = FileTree.realPath(tree) ?? tree
        let found = try FileTree.walk(tree)
        try checkEntries(found, tree: tree, realTree: realTree, allowLinksOutside: allowLinksOutside)
        try FileTree.makePublic(tree, entries: found)

        let prober = Prober.choose(for: tree, userName: tools.probeUser)
        let version = try await probeVersion(tree + "/bin/postgres", prober: prober)
        let id = BundleID.make(version: version.version, kind: idKind(version))
        if let expectedID, id != expectedID {
            throw FleetError.invalidBundle("\(origin): the copied postgres reports \(id), not \(expectedID); was it changed during the import?")
        }
        try checkID(id)
        try store.checkAbsent(id)
        guard ImportSource.isExecutableFile(tree + "/bin/initdb") else {
            throw FleetError.invalidBundle("\(origin) has bin/postgres but no bin/initdb; pgfleet needs both")
        }
        let paths = try await resolvePaths(tree: tree, realTree: realTree, prober: prober)

        await progress(.progress("checking host libraries"))
        let scan = try await BundleImporter.scanLibraries(tree: tree, libDirectory: paths.lib, prober: prober, ldd: tools.ldd)
        let essential = scan.missingBy.filter { _, users in users.contains("bin/postgres") || users.contains("bin/initdb") }
        if !essential.isEmpty {
            let list = essential.sorted { $0.key < $1.key }.map { "\($0.key) (needed by \($0.value.joined(separator: ", ")))" }
            throw FleetError.invalidBundle(
                "\(origin) needs shared libraries this host does not have: \(list.joined(separator: ", ")); install them first"
            )
        }
        let glibc = await HostFacts.glibcVersion(ldd: tools.ldd)

        let files = try await hashFiles(tree: tree)
        let manifest = BundleManifest(
            id: id, version: version.version, major: version.major, versionString: version.line, source: source,
            importedAt: BundleManifest.wholeSeconds(Date()), paths: paths,
            host: .init(glibcVersion: glibc, icuVersion: scan.icuVersion, libraries: scan.libraries, missing: scan.missing),
            files: files
        )
        let manifestPath = tree + "/" + BundleManifest.fileName
        guard FileManager.default.createFile(atPath: manifestPath, contents: try manifest.encoded()) else {
            throw FleetError.failed("cannot write \(manifestPath)")
        }
        try Files.setMode(manifestPath, 0o644)

        let destination = store.bundleDirectory(id)
        guard rename(tree, destination) == 0 else {
            if errno == EEXIST || errno == ENOTEMPTY { throw FleetError.bundleExists(id) }
            throw FleetError.failed("cannot move the new bundle to \(destination): \(String(cString: strerror(errno)))")
        }
        return Bundle(directory: destination, manifest: manifest)
    }

    private func checkID(_ id: String) throws {
        if let problem = BundleID.problem(with: id) {
            throw FleetError.invalidBundle("\(origin): the bundle id \"\(id.debugClipped)\" derived from its version is unusable: \(problem)")
        }
    }

    /// No device files or fifos; for archives, no symlink out of the tree, where it would let an
    /// archive reach host files through a path that looks like part of the bundle.
    private func checkEntries(_ entries: [TreeEntry], tree: String, realTree: String, allowLinksOutside: Bool) throws {
        for entry in entries {
            switch entry.kind {
            case .other:
                throw FleetError.invalidBundle("\(origin) contains \(entry.path), which is not a regular file, directory or symlink")
            case .symlink where !allowLinksOutside:
                let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: tree + "/" + entry.path)) ?? ""
                let resolvesInside = FileTree.realPath(tree + "/" + entry.path).map { FileTree.relative($0, to: realTree) != nil } ?? true
                guard FileTree.symlinkStaysInside(linkPath: entry.path, target: target), resolvesInside else {
                    throw FleetError.invalidBundle("\(origin) contains a symlink \(entry.path) -> \(target) that leads outside the bundle")
                }
            default:
                continue
            }
        }
    }

    private func probeVersion(_ postgres: String, prober: Prober) async throws -> PostgresVersion {
        let result: CommandResult
        do { result = try await prober.run(postgres, ["--version"]) } catch let error as FleetError {
            throw FleetError.invalidBundle("\(origin): bin/postgres cannot be started on this host: \(error.description)")
        }
        guard result.succeeded else {
            throw FleetError.invalidBundle("\(origin): `bin/postgres --version` \(result.status): \(Self.tail(result))")
        }
        guard let version = PostgresVersion(parsing: result.stdout) else {
            let first = result.stdout.split(separator: "\n").first.map(String.init) ?? ""
            throw FleetError.invalidBundle(
                "\(origin): `bin/postgres --version` printed \"\(first.debugClipped)\", not \"postgres (PostgreSQL) <version>\""
            )
        }
        return version
    }

    /// Where pg_config, run from inside the bundle, says the directories are. They must be inside
    /// it, or the binaries would read another installation's files.
    private func resolvePaths(tree: String, realTree: String, prober: Prober) async throws -> BundleManifest.Paths {
        var paths = BundleManifest.Paths(bin: "bin", lib: "lib", share: "share")
        let pgConfig = tree + "/bin/pg_config"
        if ImportSource.isExecutableFile(pgConfig) {
            let result = try await prober.run(pgConfig, ["--bindir", "--sharedir", "--pkglibdir"])
            let lines = result.stdout.split(separator: "\n").map(String.init)
            guard result.succeeded, lines.count == 3 else {
                throw FleetError.invalidBundle("\(origin): bin/pg_config failed in the bundle: \(Self.tail(result))")
            }
            var relative: [String] = []
            for (name, line) in zip(["bin", "share", "pkglib"], lines) {
                let normalized = FileTree.lexicallyNormalized(line)
                guard let inside = FileTree.relative(normalized, toAny: [realTree, tree]), !inside.isEmpty else {
                    throw FleetError.invalidBundle(
                        "\(origin): once copied, its pg_config reports the \(name) directory as \(line), outside the bundle: "
                            + "this PostgreSQL build does not relocate (its binaries look for files where they were built)"
                    )
                }
                relative.append(inside)
            }
            paths = BundleManifest.Paths(bin: relative[0], lib: relative[2], share: relative[1])
        }
        for file in ["postgres.bki", "postgresql.conf.sample"]
        where !FileManager.default.fileExists(atPath: tree + "/" + paths.share + "/" + file) {
            throw FleetError.invalidBundle("\(origin): its share directory (\(paths.share)) has no \(file), which initdb needs")
        }
        return paths
    }

    /// ldd over bin/postgres, bin/initdb and every lib/*.so.
    static func scanLibraries(tree: String, libDirectory: String, prober: Prober, ldd: String) async throws -> LibraryScan {
        var files = [tree + "/bin/postgres", tree + "/bin/initdb"]
        let lib = tree + "/" + libDirectory
        let names = (try? FileManager.default.contentsOfDirectory(atPath: lib)) ?? []
        for name in names.sorted() where name.hasSuffix(".so") {
            var info = stat()
            if lstat(lib + "/" + name, &info) == 0, info.st_mode & S_IFMT == S_IFREG { files.append(lib + "/" + name) }
        }
        let result = try await prober.run(ldd, files)
        // ldd exits 1 when any file is not dynamic (a script, a static binary): the rest still counts.
        let sections = LddOutput.parse(result.stdout, files: files)
        guard !sections.isEmpty else {
            throw FleetError.failed("ldd failed on \(tree): \(tail(result))")
        }
        let directories = [tree] + [FileTree.realPath(tree)].compactMap { $0 }.filter { $0 != tree }
        var scan = LibraryScan.summarize(sections, bundleDirectories: directories)
        scan.narrowICU(toServer: ELFDynamic.read(path: tree + "/bin/postgres"))
        return scan
    }

    private func hashFiles(tree: String) async throws -> [BundleManifest.FileEntry] {
        let entries = try FileTree.walk(tree).filter { $0.kind != .directory && $0.path != BundleManifest.fileName }
        let total = entries.count(where: { $0.kind == .file })
        var files: [BundleManifest.FileEntry] = []
        var hashed = 0
        await progress(.progress("hashing files", completed: 0, total: total))
        for entry in entries {
            let full = tree + "/" + entry.path
            if entry.kind == .symlink {
                let target: String
                do { target = try FileManager.default.destinationOfSymbolicLink(atPath: full) } catch {
                    throw FleetError.failed("cannot read symlink \(full): \(error.localizedDescription)")
                }
                files.append(.init(path: entry.path, linkTarget: target))
                continue
            }
            let (digest, size) = try FileTree.sha256(ofFile: full)
            files.append(.init(path: entry.path, size: size, sha256: digest, mode: entry.mode))
            hashed += 1
            if hashed % BundleImporter.progressEvery == 0 || hashed == total {
                await progress(.progress("hashing files", completed: hashed, total: total))
                try Task.checkCancellation()
            }
        }
        return files
    }

    /// The end of a command's output, in one line for a message.
    static func tail(_ result: CommandResult) -> String {
        let output = (result.stderr + "\n" + result.stdout).trimmingCharacters(in: .whitespacesAndNewlines)
        let lines = output.split(separator: "\n").suffix(3).map { $0.trimmingCharacters(in: .whitespaces) }
        return lines.isEmpty ? "no output" : lines.joined(separator: " / ")
    }
}

/// Where an installed PostgreSQL's files go in the bundle: each directory pg_config names,
/// at its absolute path under the bundle.
struct MirrorLayout: Equatable, Sendable {
    var bin: String
    var share: String
    var pkglib: String

    /// Directories that also hold other programs' files: copying them would copy the system.
    static let sharedDirectories: Set<String> = [
        "/", "/bin", "/sbin", "/lib", "/lib64", "/usr", "/usr/bin", "/usr/sbin", "/usr/lib", "/usr/lib64", "/usr/share",
        "/usr/local", "/usr/local/bin", "/usr/local/sbin", "/usr/local/lib", "/usr/local/share", "/opt", "/etc", "/var",
    ]
    /// Names the bundle's top level keeps for itself.
    static let reservedTopLevel: Set<String> = ["bin", "lib", "share", BundleManifest.fileName]

    init(bin: String, share: String, pkglib: String, origin: String) throws {
        for (name, path) in [("bindir", bin), ("sharedir", share), ("pkglibdir", pkglib)] {
            guard path.hasPrefix("/"), FileTree.lexicallyNormalized(path) == path else {
                throw FleetError.invalidBundle("\(origin): pg_config reports \(name) as \"\(path.debugClipped)\", not a plain absolute path")
            }
            let multiarch = path.hasPrefix("/usr/lib/") && path.split(separator: "/").count == 3 && path.contains("-linux-")
            if MirrorLayout.sharedDirectories.contains(path) || multiarch {
                throw FleetError.invalidBundle(
                    "\(origin): its \(name) is \(path), which other software shares; pgfleet imports PostgreSQL installations with "
                        + "their own directories (such as /usr/lib/postgresql/15) or release tarballs"
                )
            }
            if let first = path.split(separator: "/").first, MirrorLayout.reservedTopLevel.contains(String(first)) {
                throw FleetError.invalidBundle(
                    "\(origin): its \(name) \(path) starts with /\(first), which would collide with the bundle's own \(first) link"
                )
            }
        }
        self.bin = bin
        self.share = share
        self.pkglib = pkglib
    }

    init(pgConfigOutput: String, origin: String) throws {
        let lines = pgConfigOutput.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        guard lines.count == 3 else {
            throw FleetError.invalidBundle("\(origin): pg_config printed \(lines.count) lines for --bindir --sharedir --pkglibdir, expected 3")
        }
        try self.init(bin: lines[0], share: lines[1], pkglib: lines[2], origin: origin)
    }

    /// The directories to copy: each once, and none that lies inside another.
    var copyRoots: [String] {
        let unique = Set([bin, share, pkglib]).sorted()
        return unique.filter { path in !unique.contains { $0 != path && FileTree.relative(path, to: $0) != nil } }
    }
}
