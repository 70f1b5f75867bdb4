// swift-tools-version:6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "pgfleet",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "pgfleet", targets: ["pgfleet"]),
        .library(name: "PGWire", targets: ["PGWire"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
    ],
    targets: [
        // Pure value types and decisions: names, DTOs, the supervision state machine. No I/O.
        .target(name: "FleetCore", swiftSettings: swiftSettings),
        // fork/exec with credentials, pidfd: the few things Swift must not do between fork and exec.
        .target(name: "CFleetSys"),
        // The OS edge: child processes, users, files, procfs.
        .target(
            name: "FleetSystem",
            dependencies: [
                "FleetCore", "CFleetSys",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The host beneath each tenant: cgroups (v1 and v2), disk quotas, the sandbox, the
        // readings of /proc and /sys. Decides and writes; the C launcher only executes it.
        .target(
            name: "FleetHost",
            dependencies: [
                "FleetCore", "FleetSystem",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // PostgreSQL bundles: import, manifest, verification.
        .target(
            name: "FleetBundles",
            dependencies: [
                "FleetCore", "FleetSystem",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The embedded SQLite catalog.
        .target(
            name: "FleetCatalog",
            dependencies: ["FleetCore", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
        // Tenants: provisioning, supervision, re-adoption.
        .target(
            name: "FleetSupervisor",
            dependencies: [
                "FleetCore", "FleetSystem", "FleetHost", "FleetBundles", "FleetCatalog", "PGWire",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The PostgreSQL wire codec: framing with hard bounds, the few messages a proxy decodes or sends.
        .target(
            name: "PGWire",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),
        // The routing proxy: one port, TLS termination, SCRAM pass-through, cancel mapping.
        .target(
            name: "FleetProxy",
            dependencies: [
                "FleetCore", "PGWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The HTTP API served on the daemon's unix socket.
        .target(
            name: "FleetAPI",
            dependencies: [
                "FleetCore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The CLI's side of the API: HTTP/1.1 over the unix socket, on a plain blocking socket
        // (NIOCore and NIOHTTP1 only for the ByteBuffer and HTTPMethod in its interface).
        .target(
            name: "FleetClient",
            dependencies: [
                "FleetCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // The CLI's presentation: tables, key-value lines and `--json` renderings (pure; FleetClient only for its JSON coders).
        .target(name: "FleetCLI", dependencies: ["FleetCore", "FleetClient"], swiftSettings: swiftSettings),
        .executableTarget(
            name: "pgfleet",
            dependencies: [
                "FleetCore", "FleetSystem", "FleetHost", "FleetBundles", "FleetCatalog", "FleetSupervisor", "FleetAPI", "FleetClient", "FleetCLI",
                "FleetProxy",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "FleetCoreTests", dependencies: ["FleetCore"], swiftSettings: swiftSettings),
        .testTarget(
            name: "PGWireTests",
            dependencies: [
                "PGWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FleetProxyTests",
            dependencies: [
                "FleetCore", "FleetProxy", "PGWire",
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "FleetSupervisorTests", dependencies: ["FleetCore", "FleetSystem", "FleetSupervisor", "FleetBundles", "FleetHost"], swiftSettings: swiftSettings),
        .testTarget(
            name: "FleetCatalogTests",
            dependencies: ["FleetCore", "FleetCatalog", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "FleetHostTests", dependencies: ["FleetCore", "FleetSystem", "FleetHost"], swiftSettings: swiftSettings),
        .testTarget(name: "FleetBundlesTests", dependencies: ["FleetCore", "FleetSystem", "FleetBundles"], swiftSettings: swiftSettings),
        .testTarget(
            name: "FleetAPITests",
            dependencies: [
                "FleetCore", "FleetAPI", "FleetClient", "FleetCLI",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["FleetCore", "FleetSystem", "FleetHost", "pgfleet"],
            exclude: ["proxy_checks.py", "driver_checks.py", "descriptor_checks.py"],
            swiftSettings: swiftSettings
        ),
    ]
)
