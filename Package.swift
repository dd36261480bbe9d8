// swift-tools-version: 6.2
import PackageDescription

// The agent and the CLI must build on Windows: everything below `ManifoldRegistry`
// depends only on Foundation, swift-argument-parser, swift-log and libcurl.
// SwiftNIO-based packages belong to the coordinator's targets only.
let package = Package(
    name: "Manifold",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "manifold", targets: ["manifold"]),
        .library(name: "ManifoldCore", targets: ["ManifoldCore"]),
        .library(name: "ManifoldHTTP", targets: ["ManifoldHTTP"]),
        .library(name: "ManifoldRegistry", targets: ["ManifoldRegistry"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        .target(name: "ManifoldCore"),
        .target(
            name: "ManifoldHTTP",
            dependencies: ["CCurl", .product(name: "Logging", package: "swift-log")]
        ),
        .target(
            name: "ManifoldRegistry",
            dependencies: ["ManifoldCore", "ManifoldHTTP", .product(name: "Logging", package: "swift-log")]
        ),
        .target(
            name: "ManifoldCLI",
            dependencies: [
                "ManifoldCore", "ManifoldHTTP", "ManifoldRegistry",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(name: "manifold", dependencies: ["ManifoldCLI"]),

        .target(
            name: "ManifoldTestSupport",
            dependencies: ["ManifoldCore", "ManifoldHTTP"],
            path: "Tests/ManifoldTestSupport"
        ),
        .testTarget(name: "ManifoldCoreTests", dependencies: ["ManifoldCore"]),
        .testTarget(name: "ManifoldHTTPTests", dependencies: ["ManifoldHTTP", "ManifoldTestSupport"]),
        .testTarget(
            name: "ManifoldRegistryTests",
            dependencies: ["ManifoldRegistry", "ManifoldTestSupport"]
        ),
        .testTarget(
            name: "EndToEndTests",
            dependencies: ["ManifoldCore", "ManifoldRegistry", "ManifoldTestSupport"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
