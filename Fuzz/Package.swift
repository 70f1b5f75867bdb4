// swift-tools-version:6.1
import PackageDescription

// A package of its own so that only the fuzz build links libFuzzer. Build and run it with scripts/fuzz.sh:
// the sanitizer flags go on the command line so that PGWire itself, not just this harness, is instrumented.
let package = Package(
    name: "PGWireFuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "pgfleet", path: ".."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        .executableTarget(
            name: "PGWireFuzz",
            dependencies: [
                .product(name: "PGWire", package: "pgfleet"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: [.enableUpcomingFeature("ExistentialAny")]
        ),
    ]
)
