import Foundation
import ManifoldCore
import Testing

@Suite struct PlatformTests {
    static let parsed: [(String, String)] = [
        ("linux/amd64", "linux/amd64"),
        ("linux/x86_64", "linux/amd64"),
        ("linux/x86-64", "linux/amd64"),
        ("Linux/AMD64", "linux/amd64"),
        ("linux/arm64", "linux/arm64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("linux/aarch64", "linux/arm64"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/arm/7", "linux/arm/v7"),
        ("linux/arm/v6", "linux/arm/v6"),
        ("linux/armhf", "linux/arm/v7"),
        ("linux/armel", "linux/arm/v6"),
        ("linux/i386", "linux/386"),
        ("linux/x86", "linux/386"),
        ("linux/386", "linux/386"),
        ("linux/riscv64", "linux/riscv64"),
        ("linux/ppc64le", "linux/ppc64le"),
        ("linux/s390x", "linux/s390x"),
        ("macos/arm64", "darwin/arm64"),
        ("windows/amd64", "windows/amd64"),
        ("windows/amd64:10.0.20348.2227", "windows/amd64:10.0.20348.2227"),
        ("wasip1/wasm", "wasip1/wasm"),
    ]

    @Test(arguments: parsed)
    func parsesAndNormalises(input: String, expected: String) throws {
        let platform = try Platform(parsing: input)
        #expect(platform.description == expected)
        #expect(try Platform(parsing: platform.description) == platform)
    }

    @Test func parsedWindowsKeepsTheVersionOutOfTheKey() throws {
        let platform = try Platform(parsing: "windows/amd64:10.0.20348.2227")
        #expect(platform.os == "windows")
        #expect(platform.architecture == "amd64")
        #expect(platform.variant == nil)
        #expect(platform.osVersion == "10.0.20348.2227")
        #expect(platform.key == "windows/amd64")
    }

    static let invalid: [(String, String)] = [
        ("linux", "expected os/arch[/variant][:os.version], e.g. linux/amd64 or windows/amd64:10.0.20348"),
        ("", "expected os/arch"),
        ("linux/", "expected os/arch"),
        ("/amd64", "expected os/arch"),
        ("linux/arm//", "expected os/arch"),
        ("linux/arm/v7/x", "expected os/arch"),
        ("beos/amd64", "unknown operating system \"beos\"; known: linux, windows, darwin"),
        ("linux/sparc", "unknown architecture \"sparc\"; known: amd64, arm64, arm, 386"),
        ("linux/amd64:5.15", "only allowed for windows"),
        ("windows/amd64:", "os.version after \":\" is empty"),
    ]

    @Test(arguments: invalid)
    func rejectsWithAReason(input: String, mentions: String) {
        #expect {
            try Platform(parsing: input)
        } throws: { error in
            guard let error = error as? PlatformError else { return false }
            return error.input == input && error.description.hasPrefix("invalid platform \"\(input)\": ")
                && error.description.contains(mentions)
        }
    }

    @Test func errorDescriptionForAMissingArchitecture() {
        let error = PlatformError(input: "linux", reason: "x")
        #expect(error.description == "invalid platform \"linux\": x")
        #expect {
            try Platform(parsing: "linux")
        } throws: { error in
            "\(error)"
                == "invalid platform \"linux\": expected os/arch[/variant][:os.version], e.g. linux/amd64 or windows/amd64:10.0.20348"
        }
    }

    static let normalisation: [(Platform, Platform)] = [
        (Platform(os: "linux", architecture: "amd64", variant: "v1"), Platform(os: "linux", architecture: "amd64")),
        (
            Platform(os: "linux", architecture: "amd64", variant: "v3"),
            Platform(os: "linux", architecture: "amd64", variant: "v3")
        ),
        (Platform(os: "linux", architecture: "arm64", variant: "8"), Platform(os: "linux", architecture: "arm64")),
        (Platform(os: "linux", architecture: "arm64", variant: "v8.0"), Platform(os: "linux", architecture: "arm64")),
        (
            Platform(os: "linux", architecture: "arm64", variant: "v9"),
            Platform(os: "linux", architecture: "arm64", variant: "v9")
        ),
        (Platform(os: "linux", architecture: "arm", variant: ""), Platform(os: "linux", architecture: "arm", variant: "v7")),
        (Platform(os: "linux", architecture: "arm", variant: "5"), Platform(os: "linux", architecture: "arm", variant: "v5")),
        (Platform(os: "MacOS", architecture: "ARM64"), Platform(os: "darwin", architecture: "arm64")),
        (
            Platform(os: "Windows", architecture: "x86_64", osVersion: "10.0.17763.1", osFeatures: ["win32k"]),
            Platform(os: "windows", architecture: "amd64", osVersion: "10.0.17763.1", osFeatures: ["win32k"])
        ),
    ]

    @Test(arguments: normalisation)
    func normalizedMatchesContainerd(input: Platform, expected: Platform) {
        #expect(input.normalized() == expected)
        #expect(input.normalized().normalized() == expected, "normalisation is idempotent")
        #expect(input.key == expected.key)
    }

    static let satisfaction: [(String, String, Bool)] = [
        ("linux/amd64", "linux/amd64", true),
        ("linux/amd64", "linux/arm64", false),
        ("linux/arm64", "linux/arm64/v8", true),
        ("linux/arm/v7", "linux/arm/v6", false),
        ("linux/arm", "linux/arm/v7", true),
        ("windows/amd64", "windows/amd64:10.0.20348.2227", true),
        ("windows/amd64:10.0.20348.2227", "windows/amd64:10.0.20348.1", true),
        ("windows/amd64:10.0.20348", "windows/amd64:10.0.20348.2227", true),
        ("windows/amd64:10.0.20348.2227", "windows/amd64:10.0.17763.2227", false),
        ("windows/amd64:10.0.20348.2227", "windows/amd64", false),
        ("windows/amd64:10.0.20348.2227", "linux/amd64", false),
    ]

    @Test(arguments: satisfaction)
    func isSatisfiedBy(job: String, host: String, expected: Bool) throws {
        #expect(try Platform(parsing: job).isSatisfied(by: try Platform(parsing: host)) == expected)
    }

    @Test func isSatisfiedNormalisesUnparsedPlatforms() {
        let job = Platform(os: "linux", architecture: "aarch64")
        #expect(job.isSatisfied(by: Platform(os: "Linux", architecture: "arm64", variant: "v8")))
        let malformed = Platform(os: "windows", architecture: "amd64", osVersion: "ltsc2022")
        #expect(malformed.isSatisfied(by: Platform(os: "windows", architecture: "amd64", osVersion: "ltsc2022")))
        #expect(!malformed.isSatisfied(by: Platform(os: "windows", architecture: "amd64", osVersion: "10.0.20348.1")))
    }

    static let builds: [(String, String?)] = [
        ("10.0.20348.2227", "10.0.20348"),
        ("10.0.17763", "10.0.17763"),
        ("10.0", nil),
        ("10.0.x.1", nil),
        ("10..20348.1", nil),
        ("", nil),
        ("ltsc2022", nil),
    ]

    @Test(arguments: builds)
    func windowsBuild(version: String, expected: String?) {
        #expect(Platform.windowsBuild(version) == expected)
    }

    @Test func codableUsesDottedKeysAndOmitsNil() throws {
        let platform = Platform(os: "windows", architecture: "amd64", osVersion: "10.0.20348.2227", osFeatures: ["win32k"])
        let json = String(decoding: try CanonicalJSON.encode(platform), as: UTF8.self)
        #expect(json == #"{"architecture":"amd64","os":"windows","os.features":["win32k"],"os.version":"10.0.20348.2227"}"#)
        #expect(try JSONDecoder().decode(Platform.self, from: Data(json.utf8)) == platform)
        #expect(
            String(decoding: try CanonicalJSON.encode(Platform(os: "linux", architecture: "arm64")), as: UTF8.self)
                == #"{"architecture":"arm64","os":"linux"}"#)
    }
}
