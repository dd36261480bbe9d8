import Foundation
import ManifoldCore
import ManifoldTestSupport
import Synchronization
import Testing

@testable import ManifoldRegistry

/// What a publication writes to the registry, in which order: the re-check (`beforeTagging`) comes before the list's
/// first PUT, the list goes up under its tags (never a separate PUT by digest when a tag is pushed), and by digest only
/// when no tag is left to push.
@Suite struct PublishOrderTests {
    struct Setup {
        let fixture: RegistryFixture
        let proxy: FaultProxy
        let pool: RegistryClientPool
        let plan: AssemblyPlan

        init(_ repository: String, tags: [String]) async throws {
            fixture = try RegistryFixture(.http)
            proxy = try fixture.registry.withFaultProxy()
            pool = fixture.pool(through: proxy)
            _ = try await fixture.pushPlatformImages(to: repository, format: .oci)
            let host = proxy.host
            let sources = try ["1.0-linux-amd64", "1.0-linux-arm64"].map {
                AssemblySource(reference: try ImageReference(registry: host, repository: repository, tag: $0))
            }
            plan = try await ManifestListAssembler(registries: pool).plan(
                AssemblyRequest(target: try ImageReference(registry: host, repository: repository), tags: tags, sources: sources))
        }

        /// The manifest PUTs that reached the registry after its first `since` requests, as `PUT reference`.
        func manifestPUTs(since: Int) -> [String] {
            proxy.requestLog().dropFirst(since).filter { $0.method == "PUT" && $0.path.contains("/manifests/") }.map {
                "PUT " + ($0.path.components(separatedBy: "/manifests/").last ?? "")
            }
        }

        func stop() {
            pool.shutdown()
            proxy.stop()
        }
    }

    @Test func theListGoesUpUnderItsTagsOnlyAfterTheRecheck() async throws {
        let setup = try await Setup("ordered", tags: ["2.0", "latest"])
        defer { setup.stop() }
        let before = setup.proxy.requestLog().count
        let putsAtRecheck = Mutex<[String]?>(nil)
        let result = try await ManifestListAssembler(registries: setup.pool).publish(setup.plan) { tags in
            putsAtRecheck.withLock { $0 = setup.manifestPUTs(since: before) }
            return tags
        }
        #expect(putsAtRecheck.withLock { $0 } == [], "a manifest was pushed before the re-check")
        #expect(setup.manifestPUTs(since: before) == ["PUT 2.0", "PUT latest"])
        #expect(result.tags == ["2.0", "latest"])
        let client = try setup.pool.client(for: setup.proxy.host)
        for reference in ["2.0", "latest", setup.plan.list.digest.description] {
            let stored = try await client.fetchManifest(repository: "ordered", reference: reference)
            #expect(stored.bytes == setup.plan.list.bytes, "\(reference)")
        }
    }

    @Test func aRecheckThatSaysStopLeavesNothingInTheRegistry() async throws {
        struct Stop: Error {}
        let setup = try await Setup("stopped", tags: ["2.0"])
        defer { setup.stop() }
        let before = setup.proxy.requestLog().count
        await #expect(throws: Stop.self) {
            _ = try await ManifestListAssembler(registries: setup.pool).publish(setup.plan) { _ in throw Stop() }
        }
        #expect(setup.manifestPUTs(since: before) == [])
        let client = try setup.pool.client(for: setup.proxy.host)
        #expect(try await client.headManifest(repository: "stopped", reference: setup.plan.list.digest.description) == nil)
        #expect(try await client.headManifest(repository: "stopped", reference: "2.0") == nil)
    }

    @Test func withNoTagLeftTheListExistsByDigest() async throws {
        let setup = try await Setup("untagged", tags: ["2.0"])
        defer { setup.stop() }
        let before = setup.proxy.requestLog().count
        let result = try await ManifestListAssembler(registries: setup.pool).publish(setup.plan) { _ in [] }
        #expect(setup.manifestPUTs(since: before) == ["PUT \(setup.plan.list.digest)"])
        #expect(result.tags.isEmpty)
        #expect(result.reference.digest == setup.plan.list.digest)
        let client = try setup.pool.client(for: setup.proxy.host)
        #expect(try await client.headManifest(repository: "untagged", reference: "2.0") == nil)
        let stored = try await client.fetchManifest(repository: "untagged", reference: setup.plan.list.digest.description)
        #expect(stored.bytes == setup.plan.list.bytes)
    }
}
