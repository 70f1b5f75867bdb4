import Foundation
import Testing

@testable import FleetBundles

@Suite struct ELFDynamicTests {
    /// A real dynamic executable of this host: `/bin/ls` names libc itself and asks for the loader.
    @Test func readsTheNeededLibrariesOfARealExecutable() throws {
        let ls = try #require(ELFDynamic.read(path: "/bin/ls"))
        #expect(ls.needed.contains("libc.so.6"), "\(ls.needed)")
        #expect(ls.interpreter?.hasPrefix("/lib") == true, "\(String(describing: ls.interpreter))")
        #expect(ls.soname == nil)
        #expect(ls.linkedICU == nil)
    }

    @Test func aSharedLibraryHasItsSoname() throws {
        let path = try #require(["/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1"].first { FileManager.default.fileExists(atPath: $0) })
        let libz = try #require(ELFDynamic.read(path: path))
        #expect(libz.soname == "libz.so.1")
        #expect(libz.interpreter == nil)
    }

    /// Debian's PostgreSQL 15 is built with ICU: its server links libicuuc itself.
    @Test func aServerBuiltWithICULinksItItself() throws {
        let path = "/usr/lib/postgresql/15/bin/postgres"
        guard FileManager.default.fileExists(atPath: path) else { return }
        let postgres = try #require(ELFDynamic.read(path: path))
        #expect(postgres.linkedICU != nil, "\(postgres.needed)")
    }

    @Test func notAnELFFileIsNil() {
        #expect(ELFDynamic.parse(Array("#!/bin/sh\necho hi\n".utf8)) == nil)
        #expect(ELFDynamic.parse([]) == nil)
        #expect(ELFDynamic.read(path: "/nonexistent/file") == nil)
    }

    /// Untrusted bytes: every truncation of a real file, and the file with its offsets smashed,
    /// answer nil or something, never a trap.
    @Test func truncatedAndCorruptedFilesNeverTrap() throws {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "/bin/ls")))
        for length in stride(from: 0, to: min(bytes.count, 16384), by: 7) { _ = ELFDynamic.parse(Array(bytes.prefix(length))) }
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            var smashed = bytes
            for _ in 0..<16 { smashed[Int.random(in: 0..<min(smashed.count, 4096), using: &generator)] = UInt8.random(in: 0...255, using: &generator) }
            _ = ELFDynamic.parse(smashed)
        }
    }

    /// A server built without ICU may still load it through libxml2: only its own links count.
    @Test func icuCountsOnlyWhenTheServerLinksIt() {
        var scan = LibraryScan()
        scan.icuVersion = "72"
        scan.narrowICU(toServer: ELFDynamic(needed: ["libxml2.so.2", "libc.so.6"]))
        #expect(scan.icuVersion == nil && scan.serverLinksICU == false)
        var built = LibraryScan()
        built.icuVersion = "72"
        built.narrowICU(toServer: ELFDynamic(needed: ["libicui18n.so.72", "libicuuc.so.72"]))
        #expect(built.icuVersion == "72" && built.serverLinksICU == true)
        var unreadable = LibraryScan()
        unreadable.icuVersion = "72"
        unreadable.narrowICU(toServer: nil)
        #expect(unreadable.icuVersion == "72" && unreadable.serverLinksICU == nil)
    }
}
