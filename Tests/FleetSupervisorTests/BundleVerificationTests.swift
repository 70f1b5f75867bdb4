import FleetBundles
import FleetCore
import FleetHost
import Foundation
import Testing

@testable import FleetSupervisor

private typealias Check = BundleManifest.Verification.Check

private func manifest(vendored: Bool = false, checks: [Check]? = nil) -> BundleManifest {
    var manifest = BundleManifest(
        id: "16.15-tarball", version: "16.15", major: 16, versionString: "postgres (PostgreSQL) 16.15",
        source: .init(kind: .tarball, origin: "/x.whl"), importedAt: Date(timeIntervalSince1970: 0),
        paths: .init(bin: "bin", lib: "lib", share: "share"),
        host: .init(glibcVersion: "2.36", icuVersion: nil, libraries: [
            .init(soname: "libc.so.6", path: "/lib/x86_64-linux-gnu/libc.so.6"),
            .init(soname: "libzstd.so.1", path: "/lib/x86_64-linux-gnu/libzstd.so.1"),
        ], missing: []),
        files: [
            .init(path: "share/extension/pgcrypto.control", size: 1, sha256: "x", mode: 0o644),
            .init(path: "share/extension/cube.control", size: 1, sha256: "x", mode: 0o644),
            .init(path: "share/extension/cube--1.5.sql", size: 1, sha256: "x", mode: 0o644),
        ]
    )
    if vendored {
        manifest.vendored = .init(
            libraryDirectory: "vendor/lib", libraries: [], timeZones: .init(compiledPath: "/usr/share/zoneinfo", path: "vendor/zoneinfo", version: "2025b"),
            shell: "vendor/bin/sh",
            glibc: .init(version: "2.36", libraries: [.init(soname: "libc.so.6", path: "/lib/x86_64-linux-gnu/libc.so.6")], dataPaths: ["/usr/lib/locale/C.utf8"])
        )
    }
    if let checks {
        manifest.verification = .init(verifiedAt: Date(timeIntervalSince1970: 0), passed: checks.allSatisfy(\.passed), pgfleetVersion: "0.1.0", checks: checks)
    }
    return manifest
}

@Test func declaredHostFilesOfUnvendoredAndVendoredBundles() {
    let unvendored = BundleVerification.declaredBinds(manifest(), bundleDirectory: "/r/bundles/b") { _ in true }
    #expect(unvendored == [
        ReadOnlyBind("/lib/x86_64-linux-gnu/libc.so.6"), ReadOnlyBind("/lib/x86_64-linux-gnu/libzstd.so.1"),
        ReadOnlyBind("/lib64/ld-linux-x86-64.so.2"), ReadOnlyBind("/usr/lib/locale/C.utf8"), ReadOnlyBind("/bin/sh"),
    ])
    let vendored = BundleVerification.declaredBinds(manifest(vendored: true), bundleDirectory: "/r/bundles/b") { _ in true }
    #expect(vendored == [
        ReadOnlyBind("/lib/x86_64-linux-gnu/libc.so.6"), ReadOnlyBind("/usr/lib/locale/C.utf8"),
        ReadOnlyBind(source: "/r/bundles/b/vendor/bin/sh", target: "/bin/sh"),
    ])
}

@Test func onlyAVendoredBundleOrChangedFilesAreRefused() {
    #expect(BundleVerification.refusal(manifest()) == nil, "never verified: usable")
    let zones = [Check(name: "checksums", passed: true), Check(name: "timezone Europe/Berlin", passed: false, detail: "x")]
    #expect(BundleVerification.refusal(manifest(checks: zones)) == nil)
    #expect(BundleVerification.info(manifest(checks: zones))?.usable == true)
    let refusal = BundleVerification.refusal(manifest(vendored: true, checks: zones))
    #expect(refusal == "bundle 16.15-tarball failed its verification (timezone Europe/Berlin); fix or re-import it, then retry with `pgfleet bundle verify 16.15-tarball`")
    let edited = [Check(name: "checksums", passed: false, detail: "share/x: content changed"), Check(name: "initdb", passed: true)]
    #expect(BundleVerification.refusal(manifest(checks: edited))?.contains("(checksums)") == true)
    #expect(BundleVerification.info(manifest(checks: edited))?.usable == false)
    #expect(BundleVerification.refusal(manifest(vendored: true, checks: [Check(name: "initdb", passed: true)])) == nil)
}

@Test func readsTheLoadersErrorAndNamesTheFileThatNeededIt() {
    let stderr = """
        /r/bundles/b/bin/postgres: error while loading shared libraries: libzstd.so.1: cannot open shared object file: No such file or directory
        no data was returned by command ""/r/bundles/b/bin/postgres" -V"
        """
    #expect(BundleVerification.missingLibraries(in: stderr) == ["libzstd.so.1"])
    let dlopen = #"could not load library "/r/bundles/b/lib/plpython3.so": libpython3.11.so.1.0: cannot open shared object file: No such file or directory"#
    #expect(BundleVerification.missingLibraries(in: dlopen) == ["libpython3.11.so.1.0"])
    #expect(BundleVerification.missingLibraries(in: "ERROR: syntax error") == [])

    let readelf = """

        File: /r/bundles/b/bin/postgres

        Dynamic section at offset 0x9b5d58 contains 36 entries:
          Tag        Type                         Name/Value
         0x0000000000000001 (NEEDED)             Shared library: [libzstd.so.1]
         0x0000000000000001 (NEEDED)             Shared library: [libc.so.6]

        File: /r/bundles/b/lib/libpq.so.5.16

        Dynamic section at offset 0x4ad30 contains 30 entries:
         0x0000000000000001 (NEEDED)             Shared library: [libc.so.6]
         0x000000000000000e (SONAME)             Library soname: [libpq.so.5]
        """
    let needed = BundleVerification.neededByFile(readelf: readelf, files: ["/r/bundles/b/bin/postgres", "/r/bundles/b/lib/libpq.so.5.16"])
    #expect(needed == ["/r/bundles/b/bin/postgres": ["libzstd.so.1", "libc.so.6"], "/r/bundles/b/lib/libpq.so.5.16": ["libc.so.6"]])
    #expect(BundleVerification.describeMissing(["libzstd.so.1", "libfoo.so.2"], needed: needed, bundleDirectory: "/r/bundles/b")
        == "libzstd.so.1 is missing (needed by bin/postgres); libfoo.so.2 is missing")
    let single = " 0x0000000000000001 (NEEDED)             Shared library: [libm.so.6]\n"
    #expect(BundleVerification.neededByFile(readelf: single, files: ["/x/a.so"]) == ["/x/a.so": ["libm.so.6"]])
}

@Test func oneCheckPerShippedExtension() {
    let names = BundleVerification.extensionNames(manifest())
    #expect(names == ["cube", "pgcrypto"])
    #expect(BundleVerification.extensionsScript(names).contains("ARRAY['cube','pgcrypto']"))
    let output = """
        psql:<stdin>:1: NOTICE:  pgfleet-verify|ok|cube|
        psql:<stdin>:1: NOTICE:  pgfleet-verify|fail|pgcrypto|could not load library "/b/lib/pgcrypto.so": libcrypto.so.3: cannot open shared object file: No such file or directory
        """
    #expect(BundleVerification.extensionChecks(names: names + ["plpython3u"], output: output) == [
        Check(name: "CREATE EXTENSION cube", passed: true),
        Check(name: "CREATE EXTENSION pgcrypto", passed: false,
              detail: #"could not load library "/b/lib/pgcrypto.so": libcrypto.so.3: cannot open shared object file: No such file or directory"#),
        Check(name: "CREATE EXTENSION plpython3u", passed: false, detail: "no result (the server may have crashed)"),
    ])
}

@Test func theFailingProgramIsNamedFirst() {
    let needed = ["/b/bin/pg_basebackup": ["libzstd.so.1"], "/b/bin/pg_dump": ["libzstd.so.1"], "/b/bin/postgres": ["libzstd.so.1"]]
    let failing = "/b/bin/postgres: error while loading shared libraries: libzstd.so.1: cannot open shared object file: No such file or directory"
    #expect(BundleVerification.describeMissing(["libzstd.so.1"], needed: needed, bundleDirectory: "/b", failing: failing)
        == "libzstd.so.1 is missing (needed by bin/postgres, bin/pg_basebackup, bin/pg_dump)")
}
