import Foundation

/// `buildah` or `podman`: `build`, then `push --digestfile`, the digest coming from the registry's answer.
///
/// `globalArguments` go before the subcommand of both steps (e.g. `--root DIR --storage-driver vfs`),
/// `buildArguments` after `build` (e.g. `--isolation chroot`), `pushArguments` after `push`
/// (e.g. `--cert-dir DIR`).
struct OCIToolBuilder: Builder {
    var executable: String
    var globalArguments: [String]
    var buildArguments: [String]
    var pushArguments: [String]

    func build(_ request: BuildRequest) async throws -> BuildResult {
        var build = globalArguments + ["build"] + buildArguments
        build += ["--platform", request.platformArgument]
        if let osVersion = request.spec.platform.osVersion { build += ["--os-version", osVersion] }
        build += ["-f", try request.dockerfilePath(), "-t", request.imageReference]
        build += self.buildArguments(request)
        build.append(request.contextDirectory.path)
        if let stopped = try await step(request, "build", executable, build) { return stopped }
        let digestFile = request.workDirectory.appendingPathComponent("digest")
        let push =
            globalArguments + ["push"] + pushArguments
            + ["--digestfile", digestFile.path, request.imageReference, "docker://\(request.imageReference)"]
        if let stopped = try await step(request, "push", executable, push) { return stopped }
        return digest(in: digestFile, request, tool: "\(executable) push")
    }
}
