import FleetHost
import Testing

@Test func realRootResolvesAbsolutePaths() {
    #expect(HostRoot.real.resolve("proc/self/cgroup") == "/proc/self/cgroup")
    #expect(HostRoot.real.resolve("/sys/fs/cgroup") == "/sys/fs/cgroup")
}

@Test func fakeRootResolvesBeneathItself() {
    #expect(HostRoot("/tmp/fake").resolve("/sys/fs/cgroup/memory") == "/tmp/fake/sys/fs/cgroup/memory")
    #expect(HostRoot("/tmp/fake/").resolve("proc/self/mountinfo") == "/tmp/fake/proc/self/mountinfo")
}
