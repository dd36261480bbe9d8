// swift-tools-version: 6.2
import PackageDescription

// libFuzzer targets for Manifold's parsers of untrusted input, one executable per parser. This package is separate
// from the main one so its sanitizer flags never reach the product build; `deploy/fuzz/run.sh` builds it with
//
//     swift build -c release --package-path Fuzz --scratch-path .build-fuzz \
//         --sanitize=fuzzer --sanitize=address -Xswiftc -enable-testing
//
// and runs each target on a copy of its corpus in `Corpus/<target>/`. README.md says how to run one by hand.
// Each target is one file exporting `LLVMFuzzerTestOneInput`; with `--sanitize=fuzzer` SwiftPM compiles it as a
// library and libFuzzer supplies `main`.
func fuzzer(_ name: String, _ products: [String]) -> Target {
    .executableTarget(name: name, dependencies: ["FuzzSupport"] + products.map { .product(name: $0, package: "Manifold") })
}

let package = Package(
    name: "ManifoldFuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "Manifold", path: "..")],
    targets: [
        .target(name: "FuzzSupport", dependencies: [.product(name: "ManifoldArchive", package: "Manifold")]),
        fuzzer("fuzz-tar", ["ManifoldArchive"]),
        fuzzer("fuzz-gzip", ["ManifoldArchive"]),
        fuzzer("fuzz-unpack", ["ManifoldArchive"]),
        fuzzer("fuzz-image-reference", ["ManifoldCore"]),
        fuzzer("fuzz-platform", ["ManifoldCore"]),
        fuzzer("fuzz-www-authenticate", ["ManifoldRegistry"]),
        fuzzer("fuzz-docker-config", ["ManifoldRegistry"]),
        fuzzer("fuzz-manifest", ["ManifoldCore"]),
        fuzzer("fuzz-build-file", ["ManifoldCLI"]),
        fuzzer("fuzz-api-request", ["ManifoldAPI", "ManifoldCore"]),
    ],
    swiftLanguageModes: [.v6]
)
