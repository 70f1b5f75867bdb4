import Foundation

/// What an ELF file's dynamic section says about its own linking: the libraries it names itself
/// (DT_NEEDED, not the closure ldd prints), its soname and its search paths. Read from the file,
/// never by running it, with every offset bounded by the file's size: a bundle is untrusted input.
public struct ELFDynamic: Equatable, Sendable {
    public var needed: [String] = []
    public var soname: String?
    public var runpath: String?
    public var rpath: String?
    /// PT_INTERP of an executable: the loader it asks for, e.g. /lib64/ld-linux-x86-64.so.2.
    public var interpreter: String?

    public init(needed: [String] = [], soname: String? = nil, runpath: String? = nil, rpath: String? = nil, interpreter: String? = nil) {
        self.needed = needed
        self.soname = soname
        self.runpath = runpath
        self.rpath = rpath
        self.interpreter = interpreter
    }

    /// The ICU major this file links itself ("72" for libicuuc.so.72), nil if it names no ICU.
    public var linkedICU: String? { needed.lazy.compactMap(LibraryScan.icuMajor).first }

    /// nil for a file that is not a 64-bit little-endian ELF with a dynamic section (a script, a
    /// static binary, data), or one whose tables point outside it.
    public static func read(path: String, limit: Int = 256 << 20) -> ELFDynamic? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        guard let head = try? handle.read(upToCount: 4), head == Data([0x7F, 0x45, 0x4C, 0x46]) else { return nil }
        try? handle.seek(toOffset: 0)
        guard let data = try? handle.read(upToCount: limit) else { return nil }
        return parse([UInt8](data))
    }

    static func parse(_ bytes: [UInt8]) -> ELFDynamic? {
        let file = Bytes(bytes: bytes)
        // ELFCLASS64, ELFDATA2LSB: every PostgreSQL build pgfleet runs (x86-64, aarch64).
        guard bytes.count >= 64, bytes[0..<4] == [0x7F, 0x45, 0x4C, 0x46], bytes[4] == 2, bytes[5] == 1 else { return nil }
        guard let phoff = file.u64(32), let shoff = file.u64(40),
            let phentsize = file.u16(54), let phnum = file.u16(56), let shentsize = file.u16(58), let shnum = file.u16(60)
        else { return nil }
        // Offsets, sizes and addresses above 2^40 are refused rather than converted: no sum of a
        // few of them (or an index times an entry size) can then overflow an Int.
        func small(_ value: UInt64) -> Int? { value <= 1 << 40 ? Int(value) : nil }
        guard let phoff = small(phoff), let shoff = small(shoff) else { return nil }
        var result = ELFDynamic()
        var dynamic: (offset: Int, size: Int)?
        // Program headers: PT_DYNAMIC (2) and PT_INTERP (3); PT_LOAD (1) maps addresses to offsets.
        var loads: [(vaddr: Int, offset: Int, size: Int)] = []
        for index in 0..<Int(phnum) {
            let base = phoff + index * Int(phentsize)
            guard phentsize >= 56, let type = file.u32(base), let offset = file.u64(base + 8).flatMap(small),
                let vaddr = file.u64(base + 16).flatMap(small), let size = file.u64(base + 32).flatMap(small)
            else { return nil }
            switch type {
            case 1: loads.append((vaddr, offset, size))
            case 2: dynamic = (offset, size)
            case 3: result.interpreter = file.cString(offset, max: size)
            default: break
            }
        }
        guard let dynamic else { return nil }
        var strtabAddress: Int?
        var strtabSize = 0
        var entries: [(tag: UInt64, value: UInt64)] = []
        var at = dynamic.offset
        while at + 16 <= dynamic.offset + dynamic.size {
            guard let tag = file.u64(at), let value = file.u64(at + 8) else { return nil }
            if tag == 0 { break }
            if tag == 5 { guard let address = small(value) else { return nil }; strtabAddress = address }
            if tag == 10 { guard let size = small(value) else { return nil }; strtabSize = size }
            entries.append((tag, value))
            at += 16
        }
        // DT_STRTAB is an address: the PT_LOAD segment that holds it gives its file offset; failing
        // that, the string-table section at that address does.
        var strtab: Int?
        if let address = strtabAddress {
            if let segment = loads.first(where: { address >= $0.vaddr && address < $0.vaddr + $0.size }) {
                strtab = address - segment.vaddr + segment.offset
            } else if shentsize >= 64 {
                for index in 0..<Int(shnum) {
                    let base = shoff + index * Int(shentsize)
                    if file.u32(base + 4) == 3, let addr = file.u64(base + 16), addr == UInt64(address), let offset = file.u64(base + 24).flatMap(small) {
                        strtab = offset
                    }
                }
            }
        }
        guard let strtab, strtab < bytes.count else { return entries.isEmpty ? result : nil }
        let bound = strtabSize > 0 ? strtabSize : bytes.count - strtab
        func string(_ value: UInt64) -> String? {
            guard value < UInt64(bound) else { return nil }
            return file.cString(strtab + Int(value), max: bound - Int(value))
        }
        for (tag, value) in entries {
            switch tag {
            case 1: if let name = string(value) { result.needed.append(name) }
            case 14: result.soname = string(value)
            case 15: result.rpath = string(value)
            case 29: result.runpath = string(value)
            default: break
            }
        }
        return result
    }

    /// Little-endian reads that answer nil past the end instead of trapping.
    private struct Bytes {
        let bytes: [UInt8]

        func u16(_ at: Int) -> UInt16? { value(at, 2).map { UInt16($0) } }
        func u32(_ at: Int) -> UInt32? { value(at, 4).map { UInt32($0) } }
        func u64(_ at: Int) -> UInt64? { value(at, 8) }

        private func value(_ at: Int, _ width: Int) -> UInt64? {
            guard at >= 0, width <= bytes.count, at <= bytes.count - width else { return nil }
            var value: UInt64 = 0
            for index in (0..<width).reversed() { value = value << 8 | UInt64(bytes[at + index]) }
            return value
        }

        func cString(_ at: Int, max: Int) -> String? {
            guard at >= 0, at < bytes.count, max > 0 else { return nil }
            let end = min(bytes.count, at + max)
            guard let zero = bytes[at..<end].firstIndex(of: 0) else { return nil }
            return String(decoding: bytes[at..<zero], as: UTF8.self)
        }
    }
}
