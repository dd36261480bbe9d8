import Foundation
import ManifoldCore

/// `docker build` (with BuildKit, for build secrets) then `docker push`; the digest is the one the registry returned, as `docker push` prints it
/// (`TAG: digest: sha256:… size: N`), never computed locally.
struct DockerBuilder: Builder {
    var extraArguments: [String]

    func build(_ request: BuildRequest) async throws -> BuildResult {
        var build = ["build"] + extraArguments + ["--platform", request.platformArgument]
        build += ["-f", try request.dockerfilePath(), "-t", request.imageReference]
        build += buildArguments(request)
        build.append(request.contextDirectory.path)
        // `--secret` needs BuildKit; the classic builder would refuse it.
        var environment = request.environment
        environment["DOCKER_BUILDKIT"] = "1"
        if let stopped = try await step(request, "build", "docker", build, environment: environment) { return stopped }
        let before = request.log.size
        if let stopped = try await step(request, "push", "docker", ["push", request.imageReference]) { return stopped }
        guard let digest = Self.pushedDigest(in: request.log, from: before, tag: request.spec.tag) else {
            return .failed(exitCode: nil, reason: "docker push did not report the pushed digest")
        }
        return .succeeded(imageReference: request.imageReference, digest: digest)
    }

    /// Finds `TAG: digest: sha256:… size:` in the push output.
    static func pushedDigest(in log: LogSpool, from offset: Int64, tag: String) -> Digest? {
        guard let handle = try? FileHandle(forReadingFrom: log.file) else { return nil }
        defer { try? handle.close() }
        try? handle.seek(toOffset: UInt64(offset))
        let text = String(decoding: (try? handle.readToEnd()) ?? Data(), as: UTF8.self)
        for line in text.split(separator: "\n") where line.hasPrefix("\(tag): digest: ") {
            let parts = line.split(separator: " ")
            if parts.count >= 3, let digest = try? Digest(parsing: String(parts[2])) { return digest }
        }
        return nil
    }
}
