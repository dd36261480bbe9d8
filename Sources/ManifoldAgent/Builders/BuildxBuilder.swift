import Foundation
import ManifoldCore

/// `docker buildx build --push --metadata-file`; the digest is `containerimage.digest` from the metadata file.
struct BuildxBuilder: Builder {
    var extraArguments: [String]

    func build(_ request: BuildRequest) async throws -> BuildResult {
        let metadata = request.workDirectory.appendingPathComponent("metadata.json")
        var build = ["buildx", "build"] + extraArguments + ["--platform", request.platformArgument, "--push"]
        build += ["--metadata-file", metadata.path, "-f", try request.dockerfilePath(), "-t", request.imageReference]
        build += buildArguments(request)
        build.append(request.contextDirectory.path)
        if let stopped = try await step(request, "buildx build", "docker", build) { return stopped }
        guard let data = FileManager.default.contents(atPath: metadata.path),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let text = object["containerimage.digest"] as? String, let digest = try? Digest(parsing: text)
        else {
            return .failed(exitCode: nil, reason: "docker buildx wrote no containerimage.digest to its metadata file")
        }
        return .succeeded(imageReference: request.imageReference, digest: digest)
    }
}
