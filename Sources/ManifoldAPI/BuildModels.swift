import Foundation
import ManifoldCore

/// Where a build's context comes from.
public enum ContextSource: Sendable, Hashable, Codable {
    /// A gzip'd tar uploaded to the coordinator, addressed by its digest.
    case upload(digest: Digest)
    /// A git repository cloned at `ref` (branch, tag or commit).
    case git(url: String, ref: String)

    enum CodingKeys: String, CodingKey { case type, digest, url, ref }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        switch try container.decode(String.self, forKey: .type) {
        case "upload": self = .upload(digest: try container.decode(Digest.self, forKey: .digest))
        case "git":
            self = .git(
                url: try container.decode(String.self, forKey: .url), ref: try container.decode(String.self, forKey: .ref))
        case let other:
            throw DecodingError.dataCorruptedError(
                forKey: .type, in: container, debugDescription: "context.type \"\(other)\" is not one of upload, git")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .upload(let digest):
            try container.encode("upload", forKey: .type)
            try container.encode(digest, forKey: .digest)
        case .git(let url, let ref):
            try container.encode("git", forKey: .type)
            try container.encode(url, forKey: .url)
            try container.encode(ref, forKey: .ref)
        }
    }
}

/// One platform of a build and how to build it there.
public struct PlatformSpec: Sendable, Hashable, Codable {
    public var platform: Platform
    /// Dockerfile path inside the context for this platform; nil uses the build's.
    public var dockerfile: String?
    /// Build arguments for this platform only, merged over the build's.
    public var buildArgs: [String: String]?
    /// Agent labels this platform's job requires (all must match).
    public var agentLabels: [String: String]?

    public init(
        platform: Platform, dockerfile: String? = nil, buildArgs: [String: String]? = nil, agentLabels: [String: String]? = nil
    ) {
        self.platform = platform
        self.dockerfile = dockerfile
        self.buildArgs = buildArgs
        self.agentLabels = agentLabels
    }
}

/// What a user submits: one image, published under `tags`, built natively for each platform.
public struct BuildSpec: Sendable, Hashable, Codable {
    /// `registry/repository` the list and the per-platform images are pushed to.
    public var image: String
    public var tags: [String]
    public var platforms: [PlatformSpec]
    public var context: ContextSource
    public var dockerfile: String
    public var buildArgs: [String: String]
    /// Build secrets, `NAME: value`. Builders get them as build secrets (`RUN --mount=type=secret,id=NAME` reads
    /// `/run/secrets/NAME`), never as build args or on a command line, so they stay out of the image and its
    /// history. The coordinator keeps them encrypted until the build is final, agents mask them in logs, and the
    /// API never returns them.
    public var secrets: [String: String]
    /// Deprecated: names of build args that are secret. The coordinator moves them into ``secrets`` (their
    /// values leave `buildArgs`), so they reach the builder as build secrets, not as `--build-arg`.
    public var secretBuildArgs: [String]
    /// Image labels.
    public var labels: [String: String]
    public var timeoutSeconds: Int
    public var maxAttempts: Int?
    /// Publish a list of the platforms that succeeded when others exhausted their attempts.
    public var allowPartial: Bool
    /// Per-platform tag template; nil uses the coordinator's.
    public var childTagTemplate: String?

    public init(
        image: String, tags: [String], platforms: [PlatformSpec], context: ContextSource, dockerfile: String = "Dockerfile",
        buildArgs: [String: String] = [:], secrets: [String: String] = [:], secretBuildArgs: [String] = [],
        labels: [String: String] = [:], timeoutSeconds: Int = 3600, maxAttempts: Int? = nil, allowPartial: Bool = false,
        childTagTemplate: String? = nil
    ) {
        self.image = image
        self.tags = tags
        self.platforms = platforms
        self.context = context
        self.dockerfile = dockerfile
        self.buildArgs = buildArgs
        self.secrets = secrets
        self.secretBuildArgs = secretBuildArgs
        self.labels = labels
        self.timeoutSeconds = timeoutSeconds
        self.maxAttempts = maxAttempts
        self.allowPartial = allowPartial
        self.childTagTemplate = childTagTemplate
    }

    enum CodingKeys: String, CodingKey {
        case image, tags, platforms, context, dockerfile, buildArgs, secrets, secretBuildArgs, labels, timeoutSeconds
        case maxAttempts, allowPartial, childTagTemplate
    }

    /// `secrets` is left out when empty, so a spec without secrets reads as it did before the field existed.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(image, forKey: .image)
        try c.encode(tags, forKey: .tags)
        try c.encode(platforms, forKey: .platforms)
        try c.encode(context, forKey: .context)
        try c.encode(dockerfile, forKey: .dockerfile)
        try c.encode(buildArgs, forKey: .buildArgs)
        if !secrets.isEmpty { try c.encode(secrets, forKey: .secrets) }
        try c.encode(secretBuildArgs, forKey: .secretBuildArgs)
        try c.encode(labels, forKey: .labels)
        try c.encode(timeoutSeconds, forKey: .timeoutSeconds)
        try c.encodeIfPresent(maxAttempts, forKey: .maxAttempts)
        try c.encode(allowPartial, forKey: .allowPartial)
        try c.encodeIfPresent(childTagTemplate, forKey: .childTagTemplate)
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        image = try c.decode(String.self, forKey: .image)
        tags = try c.decode([String].self, forKey: .tags)
        platforms = try c.decode([PlatformSpec].self, forKey: .platforms)
        context = try c.decode(ContextSource.self, forKey: .context)
        dockerfile = try c.decodeIfPresent(String.self, forKey: .dockerfile) ?? "Dockerfile"
        buildArgs = try c.decodeIfPresent([String: String].self, forKey: .buildArgs) ?? [:]
        secrets = try c.decodeIfPresent([String: String].self, forKey: .secrets) ?? [:]
        secretBuildArgs = try c.decodeIfPresent([String].self, forKey: .secretBuildArgs) ?? []
        labels = try c.decodeIfPresent([String: String].self, forKey: .labels) ?? [:]
        timeoutSeconds = try c.decodeIfPresent(Int.self, forKey: .timeoutSeconds) ?? 3600
        maxAttempts = try c.decodeIfPresent(Int.self, forKey: .maxAttempts)
        allowPartial = try c.decodeIfPresent(Bool.self, forKey: .allowPartial) ?? false
        childTagTemplate = try c.decodeIfPresent(String.self, forKey: .childTagTemplate)
    }

    /// Checks every field and names the first bad one; the coordinator answers 400 with this.
    public func validate() throws(APIValidationError) {
        do {
            let reference = try ImageReference(parsing: image)
            guard reference.tag == nil, reference.digest == nil else {
                throw APIValidationError(
                    field: "image",
                    message: "\"\(image)\" must be REGISTRY/REPOSITORY without a tag or digest; put tags in \"tags\"")
            }
        } catch let error as ImageReferenceError {
            throw APIValidationError(field: "image", message: error.description)
        } catch let error as APIValidationError {
            throw error
        } catch {
            throw APIValidationError(field: "image", message: "\(error)")
        }
        guard !tags.isEmpty else { throw APIValidationError(field: "tags", message: "give at least one tag") }
        for (index, tag) in tags.enumerated() {
            do { try ImageReference.validateTag(tag) } catch {
                throw APIValidationError(field: "tags[\(index)]", message: error.description)
            }
        }
        guard !platforms.isEmpty else {
            throw APIValidationError(field: "platforms", message: "give at least one platform, e.g. linux/amd64")
        }
        var seen = Set<String>()
        for (index, spec) in platforms.enumerated() {
            let normalized = spec.platform.normalized()
            guard Platform.knownOperatingSystems.contains(normalized.os) else {
                throw APIValidationError(field: "platforms[\(index)].os", message: "unknown os \"\(spec.platform.os)\"")
            }
            guard Platform.knownArchitectures.contains(normalized.architecture) else {
                throw APIValidationError(
                    field: "platforms[\(index)].architecture", message: "unknown architecture \"\(spec.platform.architecture)\"")
            }
            if normalized.os == "windows", let version = normalized.osVersion, Platform.windowsBuild(version) == nil {
                throw APIValidationError(
                    field: "platforms[\(index)].os.version", message: "\"\(version)\" is not a Windows version like 10.0.20348")
            }
            guard seen.insert(normalized.key + "|" + (normalized.osVersion.flatMap(Platform.windowsBuild) ?? "")).inserted else {
                throw APIValidationError(field: "platforms[\(index)]", message: "\(spec.platform) is listed twice")
            }
            if let dockerfile = spec.dockerfile { try Self.validatePath(dockerfile, field: "platforms[\(index)].dockerfile") }
        }
        try Self.validatePath(dockerfile, field: "dockerfile")
        switch context {
        case .upload: break
        case .git(let url, let ref):
            // Local paths (file://, /path) would read the agent's own disk; `ext::` and friends run commands.
            guard url.hasPrefix("https://") || url.hasPrefix("http://") || url.hasPrefix("ssh://") || url.hasPrefix("git@"),
                !url.contains("::"), !url.hasPrefix("-"), !url.contains(where: \.isWhitespace)
            else {
                throw APIValidationError(
                    field: "context.url",
                    message: "\"\(url)\" is not a remote git URL; use https://, http://, ssh:// or git@host:path")
            }
            guard !ref.isEmpty, !ref.hasPrefix("-") else {
                throw APIValidationError(field: "context.ref", message: "give a branch, tag or commit, not \"\(ref)\"")
            }
        }
        try validateSecretsAndBuildArgs()
        guard (1...604_800).contains(timeoutSeconds) else {
            throw APIValidationError(field: "timeoutSeconds", message: "\(timeoutSeconds) is outside 1…604800 (one week)")
        }
        if let maxAttempts, !(1...20).contains(maxAttempts) {
            throw APIValidationError(field: "maxAttempts", message: "\(maxAttempts) is outside 1…20")
        }
    }

    static func validatePath(_ path: String, field: String) throws(APIValidationError) {
        guard !path.isEmpty, !path.hasPrefix("/"), !path.split(separator: "/").contains("..") else {
            throw APIValidationError(
                field: field, message: "\"\(path)\" must be a relative path inside the context without \"..\"")
        }
    }
}

/// A request body that names a bad field.
public struct APIValidationError: Error, CustomStringConvertible, Sendable, Equatable {
    public var field: String
    public var message: String
    public init(field: String, message: String) {
        self.field = field
        self.message = message
    }
    public var description: String { "\(field): \(message)" }
}
