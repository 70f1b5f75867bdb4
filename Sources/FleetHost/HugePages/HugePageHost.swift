import FleetCore
import Foundation

/// The host's huge page pool (`/sys/kernel/mm/hugepages`) and `vm.nr_hugepages`, under a `HostRoot`.
public struct HugePageHost: Sendable {
    public let root: HostRoot

    public init(root: HostRoot = .real) {
        self.root = root
    }

    /// The default huge page size (`Hugepagesize` in /proc/meminfo), which PostgreSQL uses
    /// unless `huge_page_size` says otherwise; nil when the kernel has no huge pages.
    public var defaultPageBytes: UInt64? {
        guard let meminfo = root.read("proc/meminfo") else { return nil }
        for line in meminfo.split(separator: "\n") where line.hasPrefix("Hugepagesize:") {
            let fields = line.split(separator: " ")
            if fields.count >= 2, let kB = UInt64(fields[1]), kB > 0 { return kB * 1024 }
        }
        return nil
    }

    func directory(_ pageBytes: UInt64) -> String { "sys/kernel/mm/hugepages/hugepages-\(pageBytes / 1024)kB" }

    /// The pool of the default size; nil when the kernel has none.
    public func pool() -> HugePagePool? {
        guard let size = defaultPageBytes else { return nil }
        return pool(pageBytes: size)
    }

    public func pool(pageBytes: UInt64) -> HugePagePool? {
        let directory = directory(pageBytes)
        func number(_ name: String) -> Int? {
            root.read(directory + "/" + name).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        guard let total = number("nr_hugepages"), let free = number("free_hugepages"), let reserved = number("resv_hugepages") else { return nil }
        return HugePagePool(pageBytes: pageBytes, total: total, free: free, reserved: reserved)
    }

    /// Every huge page size the kernel offers ("2MB", "1GB"): a tenant's limit is 0 for those it is not given.
    public func pageSizes() -> [UInt64] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: root.resolve("sys/kernel/mm/hugepages"))) ?? []
        return entries.compactMap { entry -> UInt64? in
            guard entry.hasPrefix("hugepages-"), entry.hasSuffix("kB"), let kB = UInt64(entry.dropFirst(10).dropLast(2)) else { return nil }
            return kB * 1024
        }.sorted()
    }

    /// Asks the kernel for `pages` persistent pages of the size; returns what it has now (it may
    /// give fewer when memory is fragmented).
    @discardableResult
    public func setPoolSize(_ pages: Int, pageBytes: UInt64) throws -> Int {
        let path = root.resolve(directory(pageBytes) + "/nr_hugepages")
        try CgroupFiles.write(String(max(0, pages)), to: path)
        return pool(pageBytes: pageBytes)?.total ?? 0
    }

    /// Why the kernel cannot limit a cgroup's huge page reservations, which is what turns an
    /// over-commit into a failed mmap instead of a SIGBUS at the first touch; nil when it can.
    public func reservationLimitProblem(cgroups: TenantCgroups?) -> String? {
        if let release = root.read("proc/sys/kernel/osrelease") {
            let numbers = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
            if numbers.count == 2, (numbers[0], numbers[1]) < (5, 7) {
                return "Linux \(release.trimmingCharacters(in: .whitespacesAndNewlines)) has no hugetlb reservation limits (5.7 or later has)"
            }
        }
        guard let cgroups else { return "the daemon has no cgroups (not root, or none usable), so it cannot limit a tenant's huge pages" }
        guard let hierarchy = cgroups.layout.hierarchy(for: .hugetlb) else {
            return "no hugetlb cgroup controller is reachable, so a tenant's huge pages cannot be limited"
        }
        guard let size = defaultPageBytes else { return "this kernel has no huge pages" }
        let name = HugePagePool.sizeName(size)
        let file = hierarchy.version == .v2 ? "hugetlb.\(name).rsvd.max" : "hugetlb.\(name).rsvd.limit_in_bytes"
        let usage = hierarchy.version == .v2 ? "hugetlb.\(name).max" : "hugetlb.\(name).limit_in_bytes"
        // The first of the daemon's cgroups that has the controller's files says; a root cgroup
        // has none, and before the daemon's first start its subtree does not exist yet.
        let directories = ["", cgroups.groupName, "\(cgroups.groupName)/tenants"].map { hierarchy.directory($0, root: cgroups.root) }
        if let directory = directories.first(where: { FileManager.default.fileExists(atPath: $0 + "/" + usage) }),
           !FileManager.default.fileExists(atPath: directory + "/" + file) {
            return "the hugetlb controller here has no reservation limit (\(file)), so an over-commit would end in SIGBUS"
        }
        return nil
    }
}
