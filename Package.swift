// swift-tools-version: 6.2
import PackageDescription

// The agent and the CLI must build on Windows: `ManifoldCore`, `ManifoldAPI`, `ManifoldHTTP`,
// `ManifoldRegistry`, `ManifoldClient`, `ManifoldArchive`, `ManifoldLogging`, `ManifoldAgent` and `ManifoldCLI` depend only on
// Foundation, swift-argument-parser, swift-log, swift-subprocess, libcurl, zlib, swift-crypto (SHA-2; BoringSSL on
// Windows) and Yams (the CLI's build file; Yams supports Windows). SwiftNIO-based packages (Hummingbird, postgres-nio, swift-certificates, swift-prometheus, swift-otel)
// belong to the coordinator's targets; of the shipped executables only `manifold-coordinator` links them (Linux, macOS). The
// `manifold` CLI declares `init` and `serve` and hands them over to it (ManifoldCLI's CoordinatorExecutable).
let package = Package(
    name: "Manifold",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "manifold", targets: ["manifold"]),
        .executable(name: "manifold-coordinator", targets: ["manifold-coordinator"]),
        .executable(name: "manifold-agent", targets: ["manifold-agent"]),
        .library(name: "ManifoldCore", targets: ["ManifoldCore"]),
        .library(name: "ManifoldHTTP", targets: ["ManifoldHTTP"]),
        .library(name: "ManifoldRegistry", targets: ["ManifoldRegistry"]),
        // For the libFuzzer targets in Fuzz/, a package of its own that depends on this one.
        .library(name: "ManifoldArchive", targets: ["ManifoldArchive"]),
        .library(name: "ManifoldAPI", targets: ["ManifoldAPI"]),
        .library(name: "ManifoldCLI", targets: ["ManifoldCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.0"..<"5.0.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.81.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.7.0"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
        .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.1.0"),
        // The OTLP/HTTP exporter only: the gRPC trait would add grpc-swift and its transports to the coordinator.
        .package(url: "https://github.com/swift-otel/swift-otel", from: "1.6.0", traits: ["OTLPHTTP"]),
    ],
    targets: [
        .systemLibrary(
            name: "CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .target(name: "ManifoldCore", dependencies: [.product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "ManifoldArchive", dependencies: ["CZlib", "ManifoldCore"]),
        .target(
            name: "ManifoldHTTP",
            dependencies: ["CCurl", .product(name: "Logging", package: "swift-log")]
        ),
        .target(
            name: "ManifoldRegistry",
            dependencies: [
                "ManifoldCore", "ManifoldHTTP", .product(name: "Logging", package: "swift-log"),
                .product(name: "Subprocess", package: "swift-subprocess"),
            ]
        ),
        .target(name: "ManifoldAPI", dependencies: ["ManifoldCore"]),
        .target(
            name: "ManifoldClient",
            dependencies: ["ManifoldCore", "ManifoldAPI", "ManifoldHTTP", .product(name: "Logging", package: "swift-log")]
        ),
        .target(name: "ManifoldLogging", dependencies: [.product(name: "Logging", package: "swift-log")]),
        .target(
            name: "ManifoldAgent",
            dependencies: [
                "ManifoldCore", "ManifoldAPI", "ManifoldHTTP", "ManifoldClient", "ManifoldArchive", "ManifoldLogging",
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(name: "manifold-agent", dependencies: ["ManifoldAgent"]),
        .executableTarget(
            name: "manifold-bench",
            dependencies: [
                "ManifoldCore", "ManifoldAPI", "ManifoldArchive", "ManifoldStore", "ManifoldClient", "ManifoldHTTP",
                "ManifoldRegistry", .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "ManifoldStore",
            dependencies: [
                "ManifoldCore", "ManifoldAPI", .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),
        .target(
            name: "ManifoldCoordinator",
            dependencies: [
                "ManifoldCore", "ManifoldAPI", "ManifoldStore", "ManifoldRegistry",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Yams", package: "Yams"),
                "ManifoldLogging", .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "OTel", package: "swift-otel"),
            ]
        ),
        .target(
            name: "ManifoldServerCommands",
            dependencies: [
                "ManifoldCoordinator", "ManifoldCLI", "ManifoldLogging",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .target(
            name: "ManifoldCLI",
            dependencies: [
                "ManifoldCore", "ManifoldAPI", "ManifoldHTTP", "ManifoldRegistry", "ManifoldClient", "ManifoldArchive",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .executableTarget(
            name: "manifold",
            dependencies: ["ManifoldCLI", "ManifoldHTTP", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "manifold-coordinator",
            dependencies: [
                "ManifoldServerCommands", "ManifoldCLI", "ManifoldHTTP",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        .target(
            name: "ManifoldTestSupport",
            dependencies: ["ManifoldCore", "ManifoldAPI", "ManifoldHTTP"],
            path: "Tests/ManifoldTestSupport"
        ),
        .testTarget(name: "ManifoldCoreTests", dependencies: ["ManifoldCore", "ManifoldTestSupport"]),
        .testTarget(name: "ManifoldHTTPTests", dependencies: ["ManifoldHTTP", "ManifoldTestSupport"]),
        // A process that exits with HTTP clients open and released, run by ManifoldHTTPTests' exit test.
        .executableTarget(
            name: "manifold-http-exit-probe",
            dependencies: ["ManifoldHTTP"],
            path: "Tests/ManifoldHTTPExitProbe"
        ),
        // Test stores on the real PostgreSQL server of `ManifoldTestSupport` (a fresh schema each).
        .target(
            name: "ManifoldStoreTestSupport",
            dependencies: ["ManifoldStore", "ManifoldTestSupport", .product(name: "Logging", package: "swift-log")],
            path: "Tests/ManifoldStoreTestSupport"
        ),
        .testTarget(
            name: "ManifoldStoreTests",
            dependencies: [
                "ManifoldStore", "ManifoldTestSupport", "ManifoldStoreTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ]
        ),
        .testTarget(
            name: "ManifoldCoordinatorTests",
            dependencies: [
                "ManifoldCoordinator", "ManifoldClient", "ManifoldRegistry", "ManifoldTestSupport", "ManifoldStoreTestSupport",
                "ManifoldLogging", .product(name: "Yams", package: "Yams"),
            ]
        ),
        .testTarget(
            name: "ManifoldRegistryTests",
            dependencies: ["ManifoldRegistry", "ManifoldTestSupport"]
        ),
        .testTarget(name: "ManifoldArchiveTests", dependencies: ["ManifoldArchive", "ManifoldTestSupport"]),
        .testTarget(name: "ManifoldClientTests", dependencies: ["ManifoldClient", "ManifoldTestSupport"]),
        .testTarget(
            name: "ManifoldAgentTests", dependencies: ["ManifoldAgent", "ManifoldClient", "ManifoldHTTP", "ManifoldTestSupport"]),
        .testTarget(name: "ManifoldCLITests", dependencies: ["ManifoldCLI", "ManifoldClient", "ManifoldTestSupport"]),
        .testTarget(
            name: "EndToEndTests",
            dependencies: [
                "ManifoldCore", "ManifoldAPI", "ManifoldHTTP", "ManifoldRegistry", "ManifoldClient", "ManifoldTestSupport",
            ]
        ),
        // Real processes under faults (kill -9, SIGSTOP, a TCP fault proxy, a registry that goes away, a full disk);
        // deploy/chaos/README.md says what each scenario proves.
        .testTarget(
            name: "ChaosTests",
            dependencies: [
                "ManifoldCore", "ManifoldAPI", "ManifoldHTTP", "ManifoldRegistry", "ManifoldClient", "ManifoldTestSupport",
                "ManifoldCoordinator",
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
