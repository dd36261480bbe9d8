import Foundation

/// The operating system and CPU an image runs on, as it appears in an image index entry or image config.
///
/// ```swift
/// let platform = try Platform(parsing: "linux/arm64/v8")   // linux/arm64
/// let windows = try Platform(parsing: "windows/amd64:10.0.20348.2227")
/// windows.isSatisfied(by: try Platform(parsing: "windows/amd64:10.0.20348.1"))  // true
/// ```
public struct Platform: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The operating system, e.g. `linux` or `windows`.
    public var os: String
    /// The CPU architecture, e.g. `amd64` or `arm64`.
    public var architecture: String
    /// The CPU variant, e.g. `v7` for `arm`.
    public var variant: String?
    /// The OS version, used by Windows images (`10.0.20348.2227`); JSON key `os.version`.
    public var osVersion: String?
    /// Required OS features, e.g. `win32k`; JSON key `os.features`.
    public var osFeatures: [String]?

    /// Operating systems Go (and hence the OCI ecosystem) knows, accepted by ``init(parsing:)``.
    public static let knownOperatingSystems = [
        "linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "solaris", "illumos", "aix", "plan9", "android",
        "ios", "js", "wasip1",
    ]
    /// Architectures Go (and hence the OCI ecosystem) knows, accepted by ``init(parsing:)``.
    public static let knownArchitectures = [
        "amd64", "arm64", "arm", "386", "ppc64le", "ppc64", "s390x", "riscv64", "mips", "mipsle", "mips64", "mips64le",
        "loong64", "wasm",
    ]

    private enum CodingKeys: String, CodingKey {
        case os, architecture, variant
        case osVersion = "os.version"
        case osFeatures = "os.features"
    }

    /// Creates a platform from its fields as given, without normalising them.
    public init(
        os: String, architecture: String, variant: String? = nil, osVersion: String? = nil, osFeatures: [String]? = nil
    ) {
        self.os = os
        self.architecture = architecture
        self.variant = variant
        self.osVersion = osVersion
        self.osFeatures = osFeatures
    }

    /// Parses `os/arch[/variant][:os.version]`, e.g. `linux/arm64/v8` or `windows/amd64:10.0.20348.2227`,
    /// and returns it ``normalized()``. Unknown operating systems and architectures are rejected.
    public init(parsing string: String) throws(PlatformError) {
        let format = "expected os/arch[/variant][:os.version], e.g. linux/amd64 or windows/amd64:10.0.20348"
        var path = Substring(string)
        var osVersion: String?
        if let colon = string.firstIndex(of: ":") {
            path = string[..<colon]
            osVersion = String(string[string.index(after: colon)...])
            if osVersion!.isEmpty {
                throw PlatformError(input: string, reason: "the os.version after \":\" is empty; \(format)")
            }
        }
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard (2...3).contains(parts.count), !parts.contains(where: \.isEmpty) else {
            throw PlatformError(input: string, reason: format)
        }
        let parsed = Platform(
            os: String(parts[0]), architecture: String(parts[1]), variant: parts.count == 3 ? String(parts[2]) : nil,
            osVersion: osVersion
        ).normalized()
        guard Self.knownOperatingSystems.contains(parsed.os) else {
            throw PlatformError(
                input: string,
                reason: "unknown operating system \"\(parts[0])\"; known: \(Self.knownOperatingSystems.joined(separator: ", "))")
        }
        guard Self.knownArchitectures.contains(parsed.architecture) else {
            throw PlatformError(
                input: string,
                reason: "unknown architecture \"\(parts[1])\"; known: \(Self.knownArchitectures.joined(separator: ", "))")
        }
        if osVersion != nil, parsed.os != "windows" {
            throw PlatformError(
                input: string,
                reason:
                    "an os.version (\":\(osVersion!)\") is only allowed for windows; remove it or use windows/<arch>:<version>")
        }
        self = parsed
    }

    /// The platform in containerd's canonical spelling, so equal platforms compare equal:
    /// `x86_64`→`amd64`, `aarch64`→`arm64` (variant `v8` dropped), `armhf`→`arm/v7`, `armel`→`arm/v6`,
    /// bare `arm`→`arm/v7`, `i386`/`x86`→`386`, `macos`→`darwin`, everything lowercased.
    public func normalized() -> Platform {
        var result = self
        result.os = os.lowercased()
        if result.os == "macos" { result.os = "darwin" }
        var arch = architecture.lowercased()
        var variant = variant?.lowercased()
        if variant?.isEmpty == true { variant = nil }
        switch arch {
        case "x86_64", "x86-64", "amd64":
            arch = "amd64"
            if variant == "v1" { variant = nil }
        case "aarch64", "arm64":
            arch = "arm64"
            if variant == "8" || variant == "v8" || variant == "v8.0" { variant = nil }
        case "armhf":
            arch = "arm"
            variant = "v7"
        case "armel":
            arch = "arm"
            variant = "v6"
        case "arm":
            switch variant {
            case nil, "7": variant = "v7"
            case "5", "6", "8": variant = "v" + variant!
            default: break
            }
        case "i386", "386", "x86":
            arch = "386"
        default:
            break
        }
        result.architecture = arch
        result.variant = variant
        return result
    }

    /// `os/arch[/variant]`, followed by `:os.version` when set.
    public var description: String {
        var result = os + "/" + architecture
        if let variant { result += "/" + variant }
        if let osVersion { result += ":" + osVersion }
        return result
    }

    /// The normalised `os/arch[/variant]` without the OS version: the identity used to find duplicate platforms.
    public var key: String {
        let normal = normalized()
        var result = normal.os + "/" + normal.architecture
        if let variant = normal.variant { result += "/" + variant }
        return result
    }

    /// True when a job asking for `self` can run on a host that offers `host`: same os/arch/variant after
    /// normalisation; if `self.osVersion` is set (Windows), the host must have an `osVersion` with the same
    /// major.minor.build (first three dot-separated numbers); if `self` has no `osVersion`, any host version matches.
    public func isSatisfied(by host: Platform) -> Bool {
        guard key == host.key else { return false }
        guard let wanted = osVersion else { return true }
        guard let offered = host.osVersion else { return false }
        if let wantedBuild = Self.windowsBuild(wanted), let offeredBuild = Self.windowsBuild(offered) {
            return wantedBuild == offeredBuild
        }
        return wanted == offered
    }

    /// True when an agent offering `platforms` and `labels` may take a job asking for `self` with `requiredLabels`:
    /// one offered platform satisfies it and every required label is offered with the same value. The rule leases
    /// follow, and the one that decides which held polls a new job wakes.
    public func isTakeable(
        requiring requiredLabels: [String: String], byOffer platforms: [Platform], labels: [String: String]
    )
        -> Bool
    {
        platforms.contains { isSatisfied(by: $0) } && requiredLabels.allSatisfy { labels[$0.key] == $0.value }
    }

    /// The `major.minor.build` prefix of a Windows OS version that decides container compatibility:
    /// `10.0.20348.2227` → `10.0.20348`; nil unless the version starts with three dot-separated numbers.
    public static func windowsBuild(_ osVersion: String) -> String? {
        let parts = osVersion.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 3,
            parts.allSatisfy({ !$0.isEmpty && $0.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) } })
        else { return nil }
        return parts.prefix(3).joined(separator: ".")
    }
}

/// A string that is not a valid ``Platform``.
public struct PlatformError: Error, CustomStringConvertible, Equatable {
    /// The rejected string.
    public let input: String
    /// What is wrong with it and what a valid platform looks like.
    public let reason: String

    /// Creates an error for `input`.
    public init(input: String, reason: String) {
        self.input = input
        self.reason = reason
    }

    /// `invalid platform "<input>": <reason>`.
    public var description: String { "invalid platform \"\(input)\": \(reason)" }
}
