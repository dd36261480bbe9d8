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
        let (registry, proxy, fixture) = (scenario.registry, scenario.proxy, scenario.fixture)
        let (submitter, agent) = (scenario.submitter, scenario.agent)
        // The pushes of the list (under its tag) are refused as naming an unknown child, after the verifier's reads:
        // three times, so that the first publishing run gives up (it pushes again twice itself) and a later run
        // publishes. That is a refusal the publisher tries again, not one the HTTP client retries.
        try proxy.setRules([
            FaultRule(
                method: "PUT", pathRegex: #"/manifests/1\.0$"#, status: 400, times: 3,
                body: FaultRule.registryError("MANIFEST_BLOB_UNKNOWN", "blob unknown to registry"),
                headers: ["Content-Type": "application/json"])
        ])
        let build = try await fixture.submit(submitter, image: "\(proxy.host)/team/reads", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent.secret, platforms: ["linux/amd64"]).decode(PollResponse.self).lease)
        let image = try ImageReference(parsing: "\(registry.host)/team/reads:\(lease.spec.tag)")
        let digest = try await PublishingRecoveryTests.push(lease.spec.platform, to: image, text: "read once")
        #expect(
            try await PublishingTests.complete(
                fixture, agent: agent.secret, lease: lease, reference: "\(proxy.host)/team/reads:\(lease.spec.tag)",
                digest: digest) == 200)
        let view = try await fixture.waitForBuild(build.id, token: submitter) { $0.state.isFinal }
        #expect(view.state == .published, "\(view)")

        let log = proxy.requestLog()
        let listPUTs = log.filter { $0.method == "PUT" && $0.path.hasSuffix("/manifests/1.0") }
        #expect(listPUTs.map(\.status) == [400, 400, 400, 201], "\(listPUTs)")
        // The verifier reads the child by digest; the first publishing run plans from that, the run after the
        // failed push reads it again. Without the hand-over the count would be three.
        let childReads = log.filter { $0.method == "GET" && $0.path.hasSuffix("/manifests/\(digest)") }
        #expect(childReads.count == 2, "\(log.map { "\($0.method) \($0.path) \($0.status)" })")
        await fixture.stop()
    }
}
