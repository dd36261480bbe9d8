import Foundation
import ManifoldCore
import ManifoldTestSupport
import Testing

@testable import ManifoldRegistry

/// Sources pinned by digest are resolved once per cache; tags, other expected platforms and forgotten sources are
/// read from the registry again, and the cache stays within its bounds.
@Suite struct ResolvedSourceCacheTests {
    /// Three images by tag and by digest, the pool through a fault proxy whose log counts what reached the registry.
    struct Setup {
        let fixture: RegistryFixture
        let proxy: FaultProxy
        let pool: RegistryClientPool
        let target: ImageReference
        let byTag: [AssemblySource]
        let byDigest: [AssemblySource]

        init(_ repository: String) async throws {
            fixture = try RegistryFixture(.http)
            proxy = try fixture.registry.withFaultProxy()
            pool = fixture.pool(through: proxy)
            _ = try await fixture.pushPlatformImages(to: repository, format: .oci)
            let host = proxy.host
            target = try ImageReference(registry: host, repository: repository)
            byTag = try ["1.0-linux-amd64", "1.0-linux-arm64", "1.0-windows-amd64"].map {
                AssemblySource(reference: try ImageReference(registry: host, repository: repository, tag: $0))
            }
            let plan = try await ManifestListAssembler(registries: pool).plan(
                AssemblyRequest(target: target, tags: ["t"], sources: byTag))
            byDigest = plan.children.map { AssemblySource(reference: $0.source) }
        }

        func stop() {
            pool.shutdown()
            proxy.stop()
        }
    }

    @Test func aSourceByDigestIsReadOncePerCache() async throws {
        let setup = try await Setup("cached")
        defer { setup.stop() }
        let cache = ResolvedSourceCache()
        let assembler = ManifestListAssembler(registries: setup.pool, resolvedSources: cache)
        let request = AssemblyRequest(target: setup.target, tags: ["t"], sources: setup.byDigest)
        let first = try await assembler.plan(request)
        let afterFirst = setup.proxy.requestLog().count
        let second = try await assembler.plan(request)
        #expect(setup.proxy.requestLog().count == afterFirst, "the second plan reached the registry")
        #expect(second.list.bytes == first.list.bytes)
        #expect(second.children == first.children)
        #expect(cache.statistics.entries == 3)

        // Tags can move: never answered from the cache.
        _ = try await assembler.plan(AssemblyRequest(target: setup.target, tags: ["t"], sources: setup.byTag))
        #expect(setup.proxy.requestLog().count > afterFirst)

        // Another expected platform is another question: read again, and refused by the image's config.
        var otherPlatform = setup.byDigest[0]
        otherPlatform.expectedPlatform = try Platform(parsing: "linux/arm64")
        await #expect(throws: AssemblyError.self) {
            _ = try await assembler.plan(AssemblyRequest(target: setup.target, tags: ["t"], sources: [otherPlatform]))
        }

        // A forgotten source is read from the registry again: a registry that refuses the read fails the plan.
        cache.forget(setup.byDigest[1])
        try setup.proxy.setRules([FaultRule(method: "GET", pathRegex: "/manifests/", status: 404, times: FaultRule.forever)])
        await #expect(throws: RegistryError.self) { _ = try await assembler.plan(request) }
        let remembered = AssemblyRequest(target: setup.target, tags: ["t"], sources: [setup.byDigest[0], setup.byDigest[2]])
        #expect(try await assembler.plan(remembered).children.count == 2)
    }

    @Test func theLeastRecentlyUsedGoesFirstWithinEntriesAndBytes() async throws {
        let setup = try await Setup("bounded")
        defer { setup.stop() }
        let plan = try await ManifestListAssembler(registries: setup.pool).plan(
            AssemblyRequest(target: setup.target, tags: ["t"], sources: setup.byDigest))
        let (a, b, c) = (setup.byDigest[0], setup.byDigest[1], setup.byDigest[2])
        let children = Dictionary(uniqueKeysWithValues: zip(setup.byDigest, plan.children.map { [$0] }))

        let byEntries = ResolvedSourceCache(maxEntries: 2)
        byEntries.remember(children[a]!, for: a)
        byEntries.remember(children[b]!, for: b)
        #expect(byEntries.children(of: a) == children[a])  // a is now the most recently used
        byEntries.remember(children[c]!, for: c)
        #expect(byEntries.children(of: b) == nil)
        #expect(byEntries.children(of: a) == children[a])
        #expect(byEntries.children(of: c) == children[c])
        #expect(byEntries.statistics.entries == 2)

        let sizes = plan.children.map(\.manifest.bytes.count)
        let byBytes = ResolvedSourceCache(maxBytes: sizes[0] + sizes[1] + sizes[2] - 1)
        for source in [a, b, c] { byBytes.remember(children[source]!, for: source) }
        #expect(byBytes.children(of: a) == nil)
        #expect(byBytes.statistics.bytes == sizes[1] + sizes[2])
        // An entry larger than the whole cache is not kept, and evicts nothing.
        let tiny = ResolvedSourceCache(maxBytes: sizes[0] - 1)
        tiny.remember(children[a]!, for: a)
        #expect(tiny.statistics.entries == 0)

        // A source by tag is never kept.
        let cache = ResolvedSourceCache()
        cache.remember(children[a]!, for: setup.byTag[0])
        #expect(cache.statistics.entries == 0)
        #expect(cache.children(of: setup.byTag[0]) == nil)
    }
}
