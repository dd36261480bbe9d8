import Foundation
import ManifoldCore
import ManifoldTestSupport
import Testing

@testable import ManifoldRegistry

/// Caps that keep one list from costing unbounded work, against the real `docker-registry`.
@Suite struct AssemblyLimitTests {
    @Test func anIndexWithTooManyEntriesIsNotFlattened() async throws {
        let fixture = try RegistryFixture(.http)
        let images = try await fixture.pushPlatformImages(to: "many/app", format: .oci)
        let client = try fixture.client()
        var entries: [Descriptor] = []
        for image in images {
            entries.append(try #require(try await client.headManifest(repository: "many/app", reference: image.tagOrDigest)))
        }
        let index = ImageIndex(schemaVersion: 2, mediaType: MediaType.ociImageIndex, manifests: entries)
        let bytes = try CanonicalJSON.encode(index)
        try await client.pushManifest(
            repository: "many/app", reference: "all", manifest: try RawManifest(bytes: bytes, mediaType: MediaType.ociImageIndex))

        var configuration = RegistryFixture.configuration(for: fixture.registry)
        configuration.limits.maxIndexEntries = entries.count - 1
        let pool = RegistryClientPool(configuration: configuration)
        defer { pool.shutdown() }
        let request = AssemblyRequest(
            target: try fixture.reference("many/app"), tags: ["list"],
            sources: [.init(reference: try fixture.reference("many/app", tag: "all"))])
        await #expect {
            _ = try await ManifestListAssembler(registries: pool).plan(request)
        } throws: { error in
            "\(error)".contains("is an index of \(entries.count) entries; Manifold flattens at most \(entries.count - 1)")
        }
        // At the limit it is flattened as before.
        #expect(try await ManifestListAssembler(registries: fixture.pool).plan(request).children.count == entries.count)
    }

    @Test func aCopyAcrossRegistriesStopsAtTheByteLimit() async throws {
        let source = try RegistryFixture(.http)
        let target = try RegistryFixture(.http)
        let images = try await source.pushPlatformImages(to: "upstream/app", format: .oci)
        var configuration = RegistryFixture.configuration(for: target.registry)
        configuration.plainHTTPHosts.insert(source.host)
        configuration.limits.maxCopiedBytes = 64
        let pool = RegistryClientPool(configuration: configuration)
        defer { pool.shutdown() }
        let request = AssemblyRequest(
            target: try target.reference("mirror/app"), tags: ["1"], sources: images.map { .init(reference: $0) })
        await #expect {
            _ = try await ManifestListAssembler(registries: pool).assemble(request)
        } throws: { error in
            let text = "\(error)"
            return text.contains("across registries, over the 64-byte limit for one build") && text.contains(source.host)
        }
        // Nothing was published under the tag.
        #expect(try await target.client().headManifest(repository: "mirror/app", reference: "1") == nil)

        configuration.limits.maxCopiedBytes = 10 << 20
        let roomy = RegistryClientPool(configuration: configuration)
        defer { roomy.shutdown() }
        #expect(try await ManifestListAssembler(registries: roomy).assemble(request).copiedChildren == images.count)
    }

    @Test func aManifestOverTheDocumentLimitIsCutOffWhileItArrives() async throws {
        let fixture = try RegistryFixture(.http)
        let images = try await fixture.pushPlatformImages(to: "big/app", format: .oci)
        var configuration = RegistryFixture.configuration(for: fixture.registry)
        configuration.maxDocumentSize = 128
        let pool = RegistryClientPool(configuration: configuration)
        defer { pool.shutdown() }
        await #expect {
            _ = try await pool.client(for: fixture.host).fetchManifest(repository: "big/app", reference: images[0].tagOrDigest)
        } throws: { error in
            guard case RegistryError.transport(.responseTooLarge(_, let limit), _) = error else { return false }
            return limit == 128
        }
    }
}
