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

    /// A registry error naming a child, as distribution answers a list PUT while another push rewrites that child.
    static func refusal(_ code: String, times: Int) -> FaultRule {
        FaultRule(
            method: "PUT", pathRegex: #"/manifests/2\.0$"#, status: 400, times: times,
            body: FaultRule.registryError(code, "refused while another push is under way"),
            headers: ["Content-Type": "application/json"])
    }

    /// A refusal that the children's HEADs disprove is pushed again within the publication, each time after a new
    /// re-check: the caller may stop there, or push fewer tags.
    @Test(arguments: ["MANIFEST_BLOB_UNKNOWN", "DIGEST_INVALID"])
    func aRefusalTheChildrenDisproveIsPushedAgainAfterAnotherRecheck(code: String) async throws {
        let setup = try await Setup("raced-\(code.lowercased())", tags: ["2.0", "latest"])
        defer { setup.stop() }
        try setup.proxy.setRules([Self.refusal(code, times: 2)])
        let before = setup.proxy.requestLog().count
        let putsAtRechecks = Mutex<[Int]>([])
        let result = try await ManifestListAssembler(registries: setup.pool).publish(setup.plan) { tags in
            putsAtRechecks.withLock { $0.append(setup.manifestPUTs(since: before).count) }
            return tags
        }
        #expect(putsAtRechecks.withLock { $0 } == [0, 1, 2], "each push after a refusal follows its own re-check")
        #expect(setup.manifestPUTs(since: before) == ["PUT 2.0", "PUT 2.0", "PUT 2.0", "PUT latest"])
        #expect(result.tags == ["2.0", "latest"])
        // After each refusal, every child was asked for (and found) before the next push.
        let log = Array(setup.proxy.requestLog().dropFirst(before))
        let puts = log.indices.filter { log[$0].method == "PUT" && log[$0].path.hasSuffix("/manifests/2.0") }
        #expect(puts.count == 3)
        for (refused, next) in zip(puts, puts.dropFirst()) {
            let heads = log[refused..<next].filter { $0.method == "HEAD" && $0.status == 200 }.map(\.path)
            for child in setup.plan.children {
                #expect(heads.contains { $0.hasSuffix("/manifests/\(child.descriptor.digest)") }, "\(heads)")
            }
        }
        let stored = try await setup.pool.client(for: setup.proxy.host).fetchManifest(
            repository: "raced-\(code.lowercased())", reference: "2.0")
        #expect(stored.bytes == setup.plan.list.bytes)
    }

    @Test func aRecheckAfterARefusalThatSaysStopPushesNoMore() async throws {
        struct Stop: Error {}
        let setup = try await Setup("raced-stop", tags: ["2.0"])
        defer { setup.stop() }
        try setup.proxy.setRules([Self.refusal("MANIFEST_BLOB_UNKNOWN", times: 1)])
        let before = setup.proxy.requestLog().count
        let rechecks = Mutex(0)
        await #expect(throws: Stop.self) {
            _ = try await ManifestListAssembler(registries: setup.pool).publish(setup.plan) { tags in
                let count = rechecks.withLock { count in
                    count += 1
                    return count
                }
                if count > 1 { throw Stop() }
                return tags
            }
        }
        #expect(setup.manifestPUTs(since: before) == ["PUT 2.0"])
        #expect(
            try await setup.pool.client(for: setup.proxy.host).headManifest(repository: "raced-stop", reference: "2.0") == nil)
    }

    /// Two pushes again at most: the third refusal is the registry's error, for the caller's own retry policy.
    @Test func aThirdRefusalEndsThePublicationWithTheRegistrysError() async throws {
        let setup = try await Setup("raced-thrice", tags: ["2.0"])
        defer { setup.stop() }
        try setup.proxy.setRules([Self.refusal("DIGEST_INVALID", times: 3)])
        let before = setup.proxy.requestLog().count
        await #expect {
            _ = try await ManifestListAssembler(registries: setup.pool).publish(setup.plan)
        } throws: { error in
            (error as? RegistryError)?.registryCodes == ["DIGEST_INVALID"]
        }
        #expect(setup.manifestPUTs(since: before) == ["PUT 2.0", "PUT 2.0", "PUT 2.0"])
    }

    /// A refusal that a HEAD confirms is not pushed again: for `MANIFEST_BLOB_UNKNOWN` it names the missing child; for
    /// `DIGEST_INVALID` (which says nothing of a child being missing) it stays the registry's error.
    @Test(arguments: ["MANIFEST_BLOB_UNKNOWN", "DIGEST_INVALID"])
    func aRefusalAHeadConfirmsIsNotPushedAgain(code: String) async throws {
        let repository = "confirmed-\(code.lowercased())"
        let setup = try await Setup(repository, tags: ["2.0"])
        defer { setup.stop() }
        let missing = try #require(setup.plan.children.first).descriptor.digest
        try setup.proxy.setRules([
            Self.refusal(code, times: 1),
            FaultRule(method: "HEAD", pathRegex: "/manifests/\(missing)$", status: 404, times: FaultRule.forever),
        ])
        let before = setup.proxy.requestLog().count
        await #expect {
            _ = try await ManifestListAssembler(registries: setup.pool).publish(setup.plan)
        } throws: { error in
            switch (code, error) {
            case ("MANIFEST_BLOB_UNKNOWN", AssemblyError.childMissing(let child, _, _)): child.contains("\(missing)")
            case ("DIGEST_INVALID", let refusal as RegistryError): refusal.registryCodes == ["DIGEST_INVALID"]
            default: false
            }
        }
        #expect(setup.manifestPUTs(since: before) == ["PUT 2.0"])
    }
}
