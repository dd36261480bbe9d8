import ArgumentParser
import Foundation
import ManifoldCore
import ManifoldRegistry

struct ManifestInspect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show a manifest list or image: platforms, digests, sizes.",
        discussion: """
            Examples:
              manifold manifest inspect registry.local/app:1.0
              manifold manifest inspect --raw registry.local/app:1.0 | jq .
              manifold manifest inspect --output json registry.local/app@sha256:…
            """
    )

    @Argument(help: ArgumentHelp("Image or list reference.", valueName: "reference"))
    var reference: String

    @Flag(help: "Print the manifest exactly as the registry stores it.")
    var raw = false

    @Option(help: "Output format: text or json.")
    var output: OutputFormat = .text

    @OptionGroup var registryOptions: RegistryOptions
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        do { _ = try ImageReference(parsing: reference) } catch { throw ValidationError("\(error)") }
    }

    func run() async throws {
        let reference = try ImageReference(parsing: reference)
        let registries = RegistryClientPool(
            configuration: try registryOptions.configuration(targetRegistry: reference.registry),
            logger: global.makeLogger("manifold.registry"))
        defer { registries.shutdown() }
        let registry = try registries.client(for: reference.registry)
        let manifest = try await registry.fetchManifest(repository: reference.repository, reference: reference.tagOrDigest)
        if raw {
            FileHandle.standardOutput.write(manifest.bytes)
            return
        }
        var summary = InspectSummary(
            name: reference.description, digest: manifest.digest.description, mediaType: manifest.mediaType,
            size: manifest.bytes.count, manifests: [], annotations: nil, platform: nil, layers: nil)
        switch try manifest.decoded() {
        case .index(let index):
            summary.annotations = index.annotations
            summary.manifests = index.manifests.map { entry in
                let attestationOf =
                    entry.annotations?[Annotation.dockerReferenceType] == Annotation.attestationManifestType
                    ? entry.annotations?[Annotation.dockerReferenceDigest] : nil
                return .init(
                    digest: entry.digest.description, mediaType: entry.mediaType, size: entry.size,
                    platform: entry.platform, attestationFor: attestationOf, annotations: entry.annotations)
            }
        case .image(let image):
            let config = try await registry.fetchBlob(repository: reference.repository, digest: image.config.digest)
            summary.platform = (try? JSONDecoder().decode(ImageConfig.self, from: config))?.platform
            summary.layers = image.layers.count
            summary.annotations = image.annotations
        }
        switch output {
        case .json:
            print(String(decoding: try JSONOutput.encode(summary), as: UTF8.self))
        case .text:
            print(summary.text)
        }
    }
}

struct InspectSummary: Encodable {
    struct Entry: Encodable {
        var digest: String
        var mediaType: String
        var size: Int64
        var platform: Platform?
        var attestationFor: String?
        var annotations: [String: String]?
    }
    var name: String
    var digest: String
    var mediaType: String
    var size: Int
    var manifests: [Entry]
    var annotations: [String: String]?
    var platform: Platform?
    var layers: Int?

    var text: String {
        var lines = [
            "Name:       \(name)",
            "Media type: \(mediaType)",
            "Digest:     \(digest)",
            "Size:       \(size) bytes",
        ]
        if let platform { lines.append("Platform:   \(platform)") }
        if let layers { lines.append("Layers:     \(layers)") }
        for (key, value) in (annotations ?? [:]).sorted(by: { $0.key < $1.key }) { lines.append("Annotation: \(key)=\(value)") }
        if !manifests.isEmpty {
            let rows = manifests.map { entry -> [String] in
                let platform: String
                if let target = entry.attestationFor {
                    platform = "attestation for \(target.prefix(19))…"
                } else {
                    platform =
                        entry.platform.map { p in
                            let base = Platform(os: p.os, architecture: p.architecture, variant: p.variant).description
                            return p.osVersion.map { "\(base) (\($0))" } ?? base
                        } ?? "-"
                }
                return [platform, entry.digest, "\(entry.size)", entry.mediaType]
            }
            lines.append("")
            lines.append(contentsOf: Table(header: ["PLATFORM", "DIGEST", "SIZE", "MEDIA TYPE"], rows: rows).lines)
        }
        return lines.joined(separator: "\n")
    }
}

/// Left-aligned columns separated by two spaces.
struct Table {
    var header: [String]
    var rows: [[String]]

    var lines: [String] {
        let all = [header] + rows
        let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
    }
}
