import Foundation

/// A user command that builds and pushes by itself. It gets the job in its environment (`MANIFOLD_IMAGE`,
/// `MANIFOLD_TAG`, `MANIFOLD_IMAGE_REFERENCE`, `MANIFOLD_PLATFORM`, `MANIFOLD_CONTEXT_DIR`, `MANIFOLD_DOCKERFILE`,
/// `MANIFOLD_DIGEST_FILE`, `MANIFOLD_BUILD_ARG_<NAME>` per build arg, and `MANIFOLD_SECRETS_DIR`: an owner-only
/// directory with one owner-only file per build secret, named after the secret and holding its value; empty when
/// the build has none, removed when the build ends) and writes the pushed manifest's digest to
/// `MANIFOLD_DIGEST_FILE`. Secret values are never in its environment or arguments.
struct CommandBuilder: Builder {
    var executable: String
    var arguments: [String]

    func build(_ request: BuildRequest) async throws -> BuildResult {
        let digestFile = request.workDirectory.appendingPathComponent("digest")
        var environment = request.environment
        environment["MANIFOLD_IMAGE"] = request.spec.image
        environment["MANIFOLD_TAG"] = request.spec.tag
        environment["MANIFOLD_IMAGE_REFERENCE"] = request.imageReference
        environment["MANIFOLD_PLATFORM"] = request.spec.platform.description
        environment["MANIFOLD_CONTEXT_DIR"] = request.contextDirectory.path
        environment["MANIFOLD_DOCKERFILE"] = try request.dockerfilePath()
        environment["MANIFOLD_DIGEST_FILE"] = digestFile.path
        for (name, value) in request.spec.plainBuildArgs {
            environment["MANIFOLD_BUILD_ARG_\(name)"] = value
        }
        let secrets = try request.secrets ?? BuildSecrets.write([:], in: request.workDirectory)
        environment["MANIFOLD_SECRETS_DIR"] = secrets.directory.path
        if let stopped = try await step(request, "command", executable, arguments, environment: environment) {
            return stopped
        }
        return digest(in: digestFile, request, tool: "the build command")
    }
}
