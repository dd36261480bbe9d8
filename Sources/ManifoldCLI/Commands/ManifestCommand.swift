import ArgumentParser
import Foundation
import ManifoldCore
import ManifoldRegistry

struct ManifestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "manifest",
        abstract: "Create and inspect manifest lists (OCI image indexes).",
        subcommands: [ManifestCreate.self, ManifestInspect.self]
    )
}

struct ManifestCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Publish a manifest list of images that are already in a registry.",
        discussion: """
            Each SOURCE is an image reference by tag or digest. Its platform is read from its config \
            (including Windows os.version); --platform only states what you expect, and a mismatch is an error. \
            A SOURCE that is itself a list is flattened, keeping attestation manifests. Images in another \
            repository or registry are copied into TARGET's repository first.

            Examples:
              manifold manifest create registry.local/app --tag 1.0 --tag latest \\
                  registry.local/app:1.0-linux-amd64 registry.local/app:1.0-linux-arm64
              manifold manifest create registry.local/app:1.0 \\
                  registry.local/app@sha256:4b1f… registry.local/win/app:ltsc2022 \\
                  --platform registry.local/win/app:ltsc2022=windows/amd64:10.0.20348
            """
    )

    @Argument(help: ArgumentHelp("Registry and repository of the list; a tag on it is published too.", valueName: "target"))
    var target: String

    @Argument(help: ArgumentHelp("Images to list, by tag or digest.", valueName: "source"))
    var sources: [String] = []

    @Option(name: .shortAndLong, help: ArgumentHelp("Tag to publish the list under. Repeatable.", valueName: "tag"))
    var tag: [String] = []

    @Option(
        help: ArgumentHelp(
            "Expected platform of a source: SOURCE=os/arch[/variant][:os.version]. Repeatable.",
            valueName: "source=platform"))
    var platform: [String] = []

    @Option(help: ArgumentHelp("Annotation on the index (OCI output). Repeatable.", valueName: "key=value"))
    var annotation: [String] = []

    @Option(help: "List type: automatic (Docker list when every child is a Docker image), oci or docker.")
    var format: ListFormat = .automatic

    @Flag(help: "Resolve and verify everything and print the list, but push nothing.")
    var dryRun = false

    @Option(help: "Output format: text or json.")
    var output: OutputFormat = .text

    @OptionGroup var registryOptions: RegistryOptions
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        if sources.isEmpty { throw ValidationError("name at least one source image after the target") }
        _ = try parsedRequest()
    }

    func parsedRequest() throws -> AssemblyRequest {
        let targetReference: ImageReference
        do { targetReference = try ImageReference(parsing: target) } catch { throw ValidationError("target: \(error)") }
        if targetReference.digest != nil {
            throw ValidationError(
                "target \"\(target)\" has a digest; a list is published under tags, so give REGISTRY/REPOSITORY[:TAG]")
        }
        for value in tag {
            do { try ImageReference.validateTag(value) } catch { throw ValidationError("--tag: \(error)") }
        }
        if targetReference.tag == nil && tag.isEmpty {
            throw ValidationError("give at least one --tag (or a tag on the target, e.g. \(target):latest)")
        }
        var expected: [String: Platform] = [:]
        for value in platform {
            guard let equals = value.lastIndex(of: "="), equals != value.startIndex else {
                throw ValidationError("--platform \"\(value)\": expected SOURCE=os/arch[/variant][:os.version]")
            }
            let source = String(value[..<equals])
            guard sources.contains(source) else {
                throw ValidationError(
                    "--platform \"\(value)\": \(source) is not one of the sources (\(sources.joined(separator: ", ")))")
            }
            do { expected[source] = try Platform(parsing: String(value[value.index(after: equals)...])) } catch {
                throw ValidationError("--platform \"\(value)\": \(error)")
            }
        }
        var annotations: [String: String] = [:]
        for value in annotation {
            guard let equals = value.firstIndex(of: "="), equals != value.startIndex else {
                throw ValidationError("--annotation \"\(value)\": expected KEY=VALUE")
            }
            annotations[String(value[..<equals])] = String(value[value.index(after: equals)...])
        }
        let assemblySources = try sources.map { source in
            do {
                return AssemblySource(reference: try ImageReference(parsing: source), expectedPlatform: expected[source])
            } catch {
                throw ValidationError("source: \(error)")
            }
        }
        return AssemblyRequest(
            target: targetReference, tags: tag, sources: assemblySources, annotations: annotations, format: format)
    }

    func run() async throws {
        let request = try parsedRequest()
        let configuration = try registryOptions.configuration(targetRegistry: request.target.registry)
        let registries = RegistryClientPool(configuration: configuration, logger: global.makeLogger("manifold.registry"))
        defer { registries.shutdown() }
        let verbose = global.verbose
        let assembler = ManifestListAssembler(registries: registries, logger: global.makeLogger("manifold.assembler")) { step in
            if verbose { FileHandle.standardError.write(Data("\(step)\n".utf8)) }
        }
        let plan = try await assembler.plan(request)
        for warning in plan.warnings { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
        if dryRun {
            FileHandle.standardOutput.write(plan.list.bytes)
            print()
            return
        }
        let result = try await assembler.publish(plan)
        switch output {
        case .json:
            let summary = CreateSummary(
                reference: result.reference.description, digest: result.digest.description, mediaType: plan.list.mediaType,
                size: plan.list.bytes.count, tags: result.tags,
                manifests: plan.children.map {
                    .init(
                        digest: $0.descriptor.digest.description, platform: $0.descriptor.platform?.description,
                        role: $0.role.rawValue, source: $0.source.description)
                })
            print(String(decoding: try JSONOutput.encode(summary), as: UTF8.self))
        case .text:
            let kind = plan.list.mediaType == MediaType.dockerManifestList ? "Docker manifest list" : "OCI image index"
            print("Published \(kind) \(result.digest)")
            for child in plan.children {
                let label = child.role == .attestation ? "attestation" : (child.descriptor.platform?.description ?? "?")
                print("  \(label.padding(toLength: 34, withPad: " ", startingAt: 0)) \(child.descriptor.digest)")
            }
            for tag in result.tags { print("  → \(request.target.name):\(tag)") }
            if result.copiedChildren > 0 { print("Copied \(result.copiedChildren) image(s) into \(request.target.name)") }
        }
    }

    struct CreateSummary: Encodable {
        struct Entry: Encodable {
            var digest: String
            var platform: String?
            var role: String
            var source: String
        }
        var reference: String
        var digest: String
        var mediaType: String
        var size: Int
        var tags: [String]
        var manifests: [Entry]
    }
}

extension ListFormat: ExpressibleByArgument {}

enum JSONOutput {
    static func encode(_ value: some Encodable) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(value)
    }
}
