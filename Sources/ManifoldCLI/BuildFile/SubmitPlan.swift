import Foundation
import ManifoldAPI
import ManifoldCore

/// What `build submit` was told on its command line, before the build file is merged in.
struct SubmitFlags: Sendable, Equatable {
    var image: String?
    var tags: [String] = []
    var platforms: [String] = []
    var context: String?
    var git: String?
    /// `Dockerfile` for every platform, or `PLATFORM=Dockerfile` for one.
    var files: [String] = []
    var buildArgs: [String] = []
    /// `NAME=VALUE`, or `NAME` to read the value from the environment.
    var secretBuildArgs: [String] = []
    /// `NAME` (the value from the environment variable NAME) or `NAME=VALUE`.
    var secrets: [String] = []
    /// `NAME=PATH`: the value is the file's content.
    var secretFiles: [String] = []
    var labels: [String] = []
    var maxAttempts: Int?
    var allowPartial = false
    var timeoutSeconds: Int?
    var config: String?
}

/// A build spec from the flags over the build file, and where its context comes from.
struct SubmitPlan: Sendable {
    /// The spec; for an uploaded context its digest is filled in after packing.
    var spec: BuildSpec
    /// The directory to pack, nil for a git context.
    var contextDirectory: URL?
    /// The build file that was read, if any.
    var buildFile: URL?

    /// Every Dockerfile path the build uses (relative to the context).
    var dockerfiles: Set<String> {
        Set([spec.dockerfile] + spec.platforms.compactMap(\.dockerfile))
    }

    /// Merges `flags` over the build file (`--config`, else `manifold.yaml` in the context directory).
    /// Flags win: `--tag` and `--platform` replace the file's lists (a listed platform keeps the file's
    /// per-platform settings), `--build-arg` and `--label` are merged over the file's.
    static func make(
        flags: SubmitFlags, environment: [String: String] = ProcessInfo.processInfo.environment,
        currentDirectory: URL = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
    ) throws -> SubmitPlan {
        if flags.context != nil && flags.git != nil { throw SubmitError("give --context or --git, not both") }
        let flagContext = flags.context.map { resolve($0, against: currentDirectory) }
        var buildFileURL: URL? = flags.config.map { resolve($0, against: currentDirectory) }
        if buildFileURL == nil {
            let directory = flagContext ?? currentDirectory
            buildFileURL = BuildFile.defaultNames.map { directory.appendingPathComponent($0) }
                .first { FileManager.default.fileExists(atPath: $0.path) }
        }
        let file = try buildFileURL.map(BuildFile.load) ?? BuildFile()
        let fileDirectory = buildFileURL?.deletingLastPathComponent() ?? currentDirectory

        guard let image = flags.image ?? file.image else {
            throw SubmitError("give the image (REGISTRY/REPOSITORY) as an argument or as `image:` in the build file")
        }
        let tags = flags.tags.isEmpty ? (file.tags ?? []) : flags.tags
        guard !tags.isEmpty else { throw SubmitError("give at least one --tag (or `tags:` in the build file)") }

        var platforms: [PlatformSpec]
        if flags.platforms.isEmpty {
            guard let listed = file.platforms, !listed.isEmpty else {
                throw SubmitError("give at least one --platform, e.g. linux/amd64 (or `platforms:` in the build file)")
            }
            platforms = listed
        } else {
            platforms = []
            for text in flags.platforms {
                let platform = try parsePlatform(text, flag: "--platform")
                let fromFile = file.platforms?.first { $0.platform == platform }
                platforms.append(fromFile ?? PlatformSpec(platform: platform))
            }
        }

        var dockerfile = file.dockerfile ?? "Dockerfile"
        for value in flags.files {
            if let equals = value.firstIndex(of: "="), let platform = try? Platform(parsing: String(value[..<equals])) {
                let path = String(value[value.index(after: equals)...])
                guard let index = platforms.firstIndex(where: { $0.platform == platform }) else {
                    throw SubmitError(
                        "--file \(value): \(platform) is not one of the build's platforms "
                            + "(\(platforms.map(\.platform.description).joined(separator: ", ")))")
                }
                platforms[index].dockerfile = path
            } else {
                dockerfile = value
            }
        }

        var buildArgs = file.buildArgs
        var secretNames: [String] = []
        for name in file.secretBuildArgs {
            guard let value = environment[name] else {
                throw SubmitError(
                    "the build file's secret_build_args names \(name), but the environment has no \(name); export it")
            }
            buildArgs[name] = value
            secretNames.append(name)
        }
        for value in flags.buildArgs {
            let (key, text) = try pair(value, flag: "--build-arg")
            buildArgs[key] = text
        }
        for value in flags.secretBuildArgs {
            if value.contains("=") {
                let (key, text) = try pair(value, flag: "--secret-build-arg")
                buildArgs[key] = text
                secretNames.append(key)
            } else {
                guard let text = environment[value] else {
                    throw SubmitError(
                        "--secret-build-arg \(value): the environment has no \(value); give NAME=VALUE or export it")
                }
                buildArgs[value] = text
                secretNames.append(value)
            }
        }
        var secrets: [String: String] = [:]
        for name in file.secrets {
            guard let value = environment[name] else {
                throw SubmitError("the build file's secrets names \(name), but the environment has no \(name); export it")
            }
            secrets[name] = value
        }
        for (name, path) in file.secretFiles.sorted(by: { $0.key < $1.key }) {
            secrets[name] = try readSecretFile(resolve(path, against: fileDirectory), name: name, origin: "secret_files")
        }
        secrets.merge(
            try Self.secrets(
                flags.secrets, files: flags.secretFiles, environment: environment, currentDirectory: currentDirectory)
        ) { $1 }
        var labels = file.labels
        for value in flags.labels {
            let (key, text) = try pair(value, flag: "--label")
            labels[key] = text
        }

        let context: ContextSource
        var contextDirectory: URL? = nil
        if let git = flags.git ?? (flagContext == nil ? file.git : nil) {
            context = try parseGit(git)
        } else {
            contextDirectory = flagContext ?? file.context.map { resolve($0, against: fileDirectory) } ?? fileDirectory
            // Filled in once the context is packed.
            context = .upload(digest: try Digest(parsing: "sha256:" + String(repeating: "0", count: 64)))
        }

        let spec = BuildSpec(
            image: image, tags: tags, platforms: platforms, context: context, dockerfile: dockerfile, buildArgs: buildArgs,
            secrets: secrets, secretBuildArgs: Array(Set(secretNames)).sorted(), labels: labels,
            timeoutSeconds: flags.timeoutSeconds ?? file.timeoutSeconds ?? 3600,
            maxAttempts: flags.maxAttempts ?? file.maxAttempts,
            allowPartial: flags.allowPartial || (file.allowPartial ?? false), childTagTemplate: file.childTagTemplate)
        do {
            try spec.validate()
        } catch {
            throw SubmitError(error.description)
        }
        return SubmitPlan(spec: spec, contextDirectory: contextDirectory, buildFile: buildFileURL)
    }

    /// Secrets from `--secret NAME` (value from the environment variable NAME), `--secret NAME=VALUE` and
    /// `--secret-file NAME=PATH`.
    static func secrets(
        _ values: [String], files: [String], environment: [String: String], currentDirectory: URL
    ) throws -> [String: String] {
        var secrets: [String: String] = [:]
        for value in values {
            if value.contains("=") {
                let (name, text) = try pair(value, flag: "--secret")
                secrets[name] = text
            } else {
                guard let text = environment[value] else {
                    throw SubmitError(
                        "--secret \(value): the environment has no \(value); export it, or use --secret-file \(value)=PATH")
                }
                secrets[value] = text
            }
        }
        for value in files {
            let (name, path) = try pair(value, flag: "--secret-file")
            secrets[name] = try readSecretFile(resolve(path, against: currentDirectory), name: name, origin: "--secret-file")
        }
        return secrets
    }

    static func readSecretFile(_ url: URL, name: String, origin: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw SubmitError("\(origin) \(name): cannot read \(url.path)")
        }
        guard data.count <= BuildLimits.maxSecretBytes else {
            throw SubmitError(
                "\(origin) \(name): \(url.path) has \(data.count) bytes, over the limit of \(BuildLimits.maxSecretBytes) bytes per secret"
            )
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw SubmitError("\(origin) \(name): \(url.path) is not UTF-8 text; secrets are text (base64-encode binary ones)")
        }
        return text
    }

    static func resolve(_ path: String, against base: URL) -> URL {
        (path.hasPrefix("/") ? URL(fileURLWithPath: path) : base.appendingPathComponent(path)).standardizedFileURL
    }

    static func parsePlatform(_ text: String, flag: String) throws -> Platform {
        do {
            return try Platform(parsing: text)
        } catch {
            throw SubmitError("\(flag): \(error.description)")
        }
    }

    static func pair(_ text: String, flag: String) throws -> (String, String) {
        guard let equals = text.firstIndex(of: "="), equals != text.startIndex else {
            throw SubmitError("\(flag) \"\(text)\" must be NAME=VALUE")
        }
        return (String(text[..<equals]), String(text[text.index(after: equals)...]))
    }

    /// `URL#REF`, e.g. `https://git.example.com/team/app.git#v1.4.2`.
    static func parseGit(_ text: String) throws -> ContextSource {
        guard let hash = text.lastIndex(of: "#"), hash != text.startIndex, text.index(after: hash) != text.endIndex else {
            throw SubmitError("--git \"\(text)\" must be URL#REF, e.g. https://git.example.com/team/app.git#main")
        }
        return .git(url: String(text[..<hash]), ref: String(text[text.index(after: hash)...]))
    }
}

/// A submit setting that is wrong before anything was sent (exit code 2).
struct SubmitError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
