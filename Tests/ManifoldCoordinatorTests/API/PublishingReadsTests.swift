import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldRegistry
import ManifoldTestSupport
import Testing

@testable import ManifoldCoordinator

/// What the coordinator reads from the registry to publish: the verifier reads each reported image once, and the
/// publisher plans the list from what it read instead of reading every child manifest and config again.
@Suite struct PublishingReadsTests {
    @Test func theListIsPlannedFromWhatVerificationReadAndAFailedPushReadsAgain() async throws {
        let scenario = try await ProxiedRegistryScenario.start { $0.retryBackoffSeconds = 1 }
        defer { scenario.stopRegistry() }
        // The pushes of the list (under its tag) are refused as naming an unknown child, after the verifier's reads:
        // three times, so that the first publishing run gives up (it pushes again twice itself) and a later run
        // publishes. That is a refusal the publisher tries again, not one the HTTP client retries.
        try scenario.proxy.setRules([
            FaultRule(
                method: "PUT", pathRegex: #"/manifests/1\.0$"#, status: 400, times: 3,
                body: FaultRule.registryError("MANIFEST_BLOB_UNKNOWN", "blob unknown to registry"),
                headers: ["Content-Type": "application/json"])
        ])
        let (digest, log) = try await publishThroughProxy(scenario, repository: "team/reads") { platform, image in
            try await PublishingRecoveryTests.push(platform, to: image, text: "read once")
        }
        let listPUTs = log.filter { $0.method == "PUT" && $0.path.hasSuffix("/manifests/1.0") }
        #expect(listPUTs.map(\.status) == [400, 400, 400, 201], "\(listPUTs)")
        // The verifier reads the child by digest; the first publishing run plans from that, the run after the
        // failed push reads it again. Without the hand-over the count would be three.
        let childReads = log.filter { $0.method == "GET" && $0.path.hasSuffix("/manifests/\(digest)") }
        #expect(childReads.count == 2, "\(log.map { "\($0.method) \($0.path) \($0.status)" })")
        await scenario.fixture.stop()
    }

    /// An agent that reports an index (buildx with provenance pushes one) has it read once: the verifier takes the
    /// index's bytes from the read that found its image, rather than reading it again.
    @Test func aReportedIndexIsReadOnce() async throws {
        let scenario = try await ProxiedRegistryScenario.start()
        defer { scenario.stopRegistry() }
        let (index, log) = try await publishThroughProxy(scenario, repository: "team/indexed", push: Self.pushIndex)
        let indexReads = log.filter { $0.method == "GET" && $0.path.hasSuffix("/manifests/\(index)") }
        #expect(indexReads.count == 1, "\(log.map { "\($0.method) \($0.path) \($0.status)" })")
        await scenario.fixture.stop()
    }

    /// Submits a one-platform build of `REPOSITORY` behind the scenario's proxy; the agent pushes with `push` (to the
    /// registry itself, under the attempt's tag) and reports that through the proxy. Waits for the build to be
    /// published and returns the reported digest and the proxy's log.
    private func publishThroughProxy(
        _ scenario: ProxiedRegistryScenario, repository: String,
        push: (Platform, ImageReference) async throws -> Digest
    ) async throws -> (digest: Digest, log: [FaultProxy.Request]) {
        let (registry, proxy, fixture) = (scenario.registry, scenario.proxy, scenario.fixture)
        let (submitter, agent) = (scenario.submitter, scenario.agent)
        let build = try await fixture.submit(submitter, image: "\(proxy.host)/\(repository)", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent.secret, platforms: ["linux/amd64"]).decode(PollResponse.self).lease)
        let digest = try await push(
            lease.spec.platform, try ImageReference(parsing: "\(registry.host)/\(repository):\(lease.spec.tag)"))
        #expect(
            try await PublishingTests.complete(
                fixture, agent: agent.secret, lease: lease, reference: "\(proxy.host)/\(repository):\(lease.spec.tag)",
                digest: digest) == 200)
        let view = try await fixture.waitForBuild(build.id, token: submitter) { $0.state.isFinal }
        #expect(view.state == .published, "\(view)")
        return (digest, proxy.requestLog())
    }

    /// Pushes an image of `platform` and an OCI index naming it (with its platform) under `reference`'s tag; returns the
    /// index's digest.
    static func pushIndex(_ platform: Platform, to reference: ImageReference) async throws -> Digest {
        var entry = try await PublishingRecoveryTests.pushImage(platform, to: reference, text: "indexed").descriptor
        entry.platform = platform
        let index = try RawManifest(
            bytes: try CanonicalJSON.encode(ImageIndex(schemaVersion: 2, mediaType: MediaType.ociImageIndex, manifests: [entry])),
            mediaType: MediaType.ociImageIndex)
        try await PublishingRecoveryTests.withPlainClient(reference.registry) { client in
            try await client.pushManifest(repository: reference.repository, reference: reference.tag ?? "latest", manifest: index)
        }
        return index.digest
    }
}
