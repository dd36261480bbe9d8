import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs the built `manifold` binary, with its Docker and Manifold configuration kept out of the user's home.
public func manifold(
    _ arguments: [String], input: String? = nil, environment: [String: String] = [:]
) throws -> (status: Int32, stdout: String, stderr: String) {
    var environment = environment
    if environment["DOCKER_CONFIG"] == nil {
        environment["DOCKER_CONFIG"] =
            FileManager.default.temporaryDirectory.appendingPathComponent("manifold-e2e-empty-docker-config").path
    }
    // `manifold init` stores an admin context: keep tests out of the real ~/.config/manifold.
    if environment["XDG_CONFIG_HOME"] == nil {
        environment["XDG_CONFIG_HOME"] =
            FileManager.default.temporaryDirectory.appendingPathComponent("manifold-e2e-config-\(getpid())").path
    }
    return try runCommand(try manifoldBinary(), arguments, input: input.map { Data($0.utf8) }, environment: environment)
}

/// `MANIFOLD_BIN`, else the `manifold` built next to this test bundle.
public func manifoldBinary() throws -> String {
    if let explicit = ProcessInfo.processInfo.environment["MANIFOLD_BIN"] { return explicit }
    guard let built = builtBinary("manifold") else {
        throw TestEnvironmentError(
            "the manifold binary was not found next to \(CommandLine.arguments[0]); run `swift build` first or set MANIFOLD_BIN")
    }
    return built
}

/// The executable `name` that SwiftPM built next to this test bundle (in its directory or up to three above), if any.
public func builtBinary(_ name: String) -> String? {
    var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for _ in 0..<4 {
        let candidate = directory.appendingPathComponent(name)
        if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate.path }
        directory = directory.deletingLastPathComponent()
    }
    return nil
}

/// `MANIFOLD_AGENT_BIN`, else the `manifold-agent` built next to this test bundle.
public func manifoldAgentBinary() throws -> String {
    if let explicit = ProcessInfo.processInfo.environment["MANIFOLD_AGENT_BIN"] { return explicit }
    return URL(fileURLWithPath: try manifoldBinary()).deletingLastPathComponent().appendingPathComponent("manifold-agent")
        .path
}
