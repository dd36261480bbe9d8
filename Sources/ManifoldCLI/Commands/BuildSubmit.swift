import ArgumentParser
import Foundation
import ManifoldAPI
import ManifoldClient
import ManifoldCore

#if canImport(ucrt)
import ucrt
#endif

/// `manifold build submit`.
struct BuildSubmit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "submit",
        abstract: "Submit a build: pack and upload the context, then build every platform on a native agent.",
        discussion: """
            The context directory is packed honouring .dockerignore (the Dockerfiles and .dockerignore are always \
            sent) into a reproducible tar.gz, which is uploaded only if the coordinator does not have it yet. \
            A build file (manifold.yaml in the context, or --config FILE) can hold every setting, including \
            per-platform Dockerfiles and build args; flags override it.

            Secrets (--secret, --secret-file) reach the builder as build secrets, never as build args: a \
            Dockerfile reads them with RUN --mount=type=secret,id=NAME (the file /run/secrets/NAME), so they stay \
            out of the image and its history. The coordinator keeps them encrypted until the build ends, logs mask \
            them, and the API never shows them. Prefer --secret NAME (from the environment) or --secret-file to \
            NAME=VALUE, which other users of this host can see in the process list. --secret-build-arg is \
            deprecated: it is sent as a build secret too.

            Examples:
              manifold build submit registry.example.com/team/app --tag 1.4.2 --tag latest \\
                  --platform linux/amd64 --platform linux/arm64 --context . --watch
              manifold build submit registry.example.com/team/app -t dev -p linux/amd64 \\
                  -p windows/amd64:10.0.20348 --file windows/amd64:10.0.20348=Dockerfile.windows
              manifold build submit --config ci/manifold.yaml --build-arg VERSION=1.4.2 --secret NPM_TOKEN \
                  --secret-file SSH_KEY=ci/deploy_key
              manifold build submit registry.example.com/team/app -t main -p linux/amd64 \\
                  --git https://git.example.com/team/app.git#main --output json
            """)

    @Argument(help: ArgumentHelp("REGISTRY/REPOSITORY to publish (default: `image:` of the build file).", valueName: "image"))
    var image: String?

    @Option(name: .shortAndLong, help: ArgumentHelp("Tag to publish the list under. Repeatable.", valueName: "tag"))
    var tag: [String] = []

    @Option(
        name: .shortAndLong,
        help: ArgumentHelp("Platform to build, os/arch[/variant][:os.version]. Repeatable.", valueName: "platform"))
    var platform: [String] = []

    @Option(help: ArgumentHelp("The build context directory (default: the current directory).", valueName: "dir"))
    var context: String?

    @Option(help: ArgumentHelp("Build from a git repository at a branch, tag or commit.", valueName: "url#ref"))
    var git: String?

    @Option(
        name: .shortAndLong,
        help: ArgumentHelp(
            "Dockerfile (relative to the context), or PLATFORM=Dockerfile for one platform. Repeatable.",
            valueName: "[platform=]path"))
    var file: [String] = []

    @Option(name: .customLong("build-arg"), help: ArgumentHelp("A build argument. Repeatable.", valueName: "name=value"))
    var buildArgs: [String] = []

    @Option(
        name: .customLong("secret"),
        help: ArgumentHelp(
            "A build secret; NAME alone reads $NAME. Dockerfiles use RUN --mount=type=secret,id=NAME. Repeatable.",
            valueName: "name[=value]"))
    var secrets: [String] = []

    @Option(
        name: .customLong("secret-file"),
        help: ArgumentHelp("A build secret read from a file. Repeatable.", valueName: "name=path"))
    var secretFiles: [String] = []

    @Option(
        name: .customLong("secret-build-arg"),
        help: ArgumentHelp(
            "Deprecated: like --secret (sent as a build secret, not a build arg). Repeatable.", valueName: "name[=value]"))
    var secretBuildArgs: [String] = []

    @Option(name: .customLong("label"), help: ArgumentHelp("An image label. Repeatable.", valueName: "key=value"))
    var labels: [String] = []

    @Option(help: ArgumentHelp("Attempts per platform before it fails (1–20).", valueName: "n"))
    var maxAttempts: Int?

    @Flag(help: "Publish a list of the platforms that succeeded when others fail.")
    var allowPartial = false

    @Option(help: ArgumentHelp("Time limit of one attempt, in seconds.", valueName: "seconds"))
    var timeout: Int?

    @Option(help: ArgumentHelp("The build file (default: manifold.yaml in the context directory).", valueName: "file"))
    var config: String?

    @Flag(help: "Watch the build until it is published or fails; the exit code says which.")
    var watch = false

    @Flag(name: .shortAndLong, help: "Print only the build id.")
    var quiet = false

    @Option(help: "Output format: text or json.")
    var output: OutputFormat = .text

    @OptionGroup var coordinator: CoordinatorOptions

    var flags: SubmitFlags {
        SubmitFlags(
            image: image, tags: tag, platforms: platform, context: context, git: git, files: file, buildArgs: buildArgs,
            secretBuildArgs: secretBuildArgs, secrets: secrets, secretFiles: secretFiles, labels: labels,
            maxAttempts: maxAttempts, allowPartial: allowPartial,
            timeoutSeconds: timeout, config: config)
    }

    func run() async throws {
        var plan = try SubmitPlan.make(flags: flags)
        let client = try coordinator.client()
        if let directory = plan.contextDirectory {
            let digest = try await upload(directory, dockerfiles: plan.dockerfiles, client: client)
            plan.spec.context = .upload(digest: digest)
        }
        let build = try await client.submit(plan.spec)
        switch output {
        case .json: print(try APIJSON.line(build))
        case .text where quiet: print(build.id)
        case .text:
            let platforms = build.jobs.map(\.platform.description).joined(separator: ", ")
            print("Submitted build \(build.id): \(build.image) for \(platforms) → \(build.tags.joined(separator: ", "))")
            if !watch { print("Watch it with: manifold build watch \(build.id)") }
        }
        fflush(nil)
        guard watch else { return }
        try await BuildWatch.watch(build.id, client: client, output: output)
    }

    /// Packs `directory` and uploads it unless the coordinator has it; returns its digest.
    func upload(_ directory: URL, dockerfiles: Set<String>, client: CoordinatorClient) async throws -> Digest {
        for path in dockerfiles.sorted() {
            let url = directory.appendingPathComponent(path)
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw CLIError("the Dockerfile \(path) is not in the context \(directory.path)")
            }
        }
        let archive = FileManager.default.temporaryDirectory.appendingPathComponent(
            "manifold-context-\(UUID().uuidString).tar.gz")
        defer { try? FileManager.default.removeItem(at: archive) }
        let packer = ContextPacker(directory: directory, alwaysIncluded: dockerfiles.union([".dockerignore"]))
        let packed = try await Task.detached { try packer.pack(to: archive) }.value
        for path in packed.skipped { note("skipped \(path): not a regular file, directory or symlink") }
        let summary =
            "context \(packed.digest.description.prefix(19))…: \(packed.files) files, \(ByteCountFormatter.string(fromByteCount: packed.size, countStyle: .binary))"
            + (packed.excluded > 0 ? ", \(packed.excluded) excluded by .dockerignore" : "")
        if try await client.hasContext(packed.digest) {
            note(summary + "; the coordinator already has it")
        } else {
            _ = try await client.uploadContext(packed.digest, file: archive.path)
            note(summary + "; uploaded")
        }
        return packed.digest
    }

    func note(_ text: String) {
        guard !quiet else { return }
        Terminal.writeError(text + "\n")
    }
}
