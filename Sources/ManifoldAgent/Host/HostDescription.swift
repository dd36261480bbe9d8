import Foundation
import ManifoldCore

/// What this host offers: its platforms and the builders found on it.
public struct HostDescription: Sendable, Hashable {
    public var platforms: [Platform]
    public var builders: [String]

    /// The host's own platform: os, architecture, arm variant and, on Windows, the full OS build.
    public static func detectPlatform() -> Platform {
        let system = HostSystem.detect()
        return Platform(
            os: system.os, architecture: system.architecture, variant: system.variant, osVersion: system.osVersion)
    }

    /// The builders whose executables are on `PATH` (`buildx` when `docker buildx version` works).
    public static func detectBuilders() async -> [String] {
        var found: [String] = []
        if ExecutableLocator.find("docker") != nil {
            found.append("docker")
            if await ProcessRunner.succeeds("docker", ["buildx", "version"]) { found.append("buildx") }
        }
        for name in ["buildah", "podman"] where ExecutableLocator.find(name) != nil { found.append(name) }
        found.append("command")
        return found
    }

    /// Resolves `--platform` values, or the detected platform when there are none.
    public static func platforms(from values: [String]) throws -> [Platform] {
        if values.isEmpty { return [detectPlatform()] }
        return try values.map { value in
            do {
                return try Platform(parsing: value).normalized()
            } catch {
                throw AgentError("--platform \(value): \(error)")
            }
        }
    }
}

/// Finds an executable on `PATH` the way a shell would, without running one.
enum ExecutableLocator {
    static func find(_ name: String, environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        if name.contains("/") || name.contains("\\") {
            return FileManager.default.isExecutableFile(atPath: name) ? name : nil
        }
        #if os(Windows)
        let separator: Character = ";"
        let suffixes = ["", ".exe", ".cmd", ".bat"]
        let path = environment["Path"] ?? environment["PATH"] ?? ""
        #else
        let separator: Character = ":"
        let suffixes = [""]
        let path = environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        #endif
        for directory in path.split(separator: separator) {
            for suffix in suffixes {
                let candidate = URL(fileURLWithPath: String(directory)).appendingPathComponent(name + suffix).path
                if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            }
        }
        return nil
    }
}
