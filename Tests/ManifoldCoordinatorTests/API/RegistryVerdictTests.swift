import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldRegistry
import ManifoldTestSupport
import Testing

@testable import ManifoldCoordinator

/// A registry hiccup is not a verdict: what the registry says is classified by what it proves, and nothing
/// already in place is pushed again.
@Suite struct RegistryVerdictTests {
    static func refusal(_ status: Int, _ code: String) -> RegistryError {
        let detail = try! JSONDecoder().decode(
            RegistryErrorDetail.self, from: Data(#"{"code": "\#(code)", "message": "test"}"#.utf8))
        return .unexpectedStatus(
            operation: "pushing manifest", url: "http://127.0.0.1:5000/v2/team/app/manifests/1.0", status: status,
            errors: [detail], bodySummary: "")
    }

    @Test func publishingFailuresAreClassifiedByWhatTheyProve() {
        // Outages: retried until the registry is back.
        #expect(Publisher.classify(Self.refusal(503, "UNAVAILABLE")) == (true, nil))
        // A child or blob called unknown or invalid while another push is under way: re-checked a few times.
        #expect(Publisher.classify(Self.refusal(400, "MANIFEST_BLOB_UNKNOWN")) == (true, 6))
        #expect(Publisher.classify(Self.refusal(400, "DIGEST_INVALID")) == (true, 6))
        // A refusal of the credentials or of the content itself: final.
        #expect(Publisher.classify(Self.refusal(403, "DENIED")) == (false, nil))
        #expect(Publisher.classify(Self.refusal(400, "MANIFEST_INVALID")) == (false, nil))
        #expect(Publisher.classify(AssemblyError.noSources) == (false, nil))
    }

    @Test func aRebuiltIdenticalImageIsNotPushedAgainUnderItsChildTag() async throws {
        let scenario = try await ProxiedRegistryScenario.start()
        defer { scenario.stopRegistry() }
        let (registry, proxy, fixture) = (scenario.registry, scenario.proxy, scenario.fixture)
        let (submitter, agent) = (scenario.submitter, scenario.agent)
        let build = try await fixture.submit(submitter, image: "\(proxy.host)/team/app", platforms: ["linux/amd64"])
        let first = try #require(try await fixture.poll(agent.secret, platforms: ["linux/amd64"]).decode(PollResponse.self).lease)
        let image = try ImageReference(parsing: "\(registry.host)/team/app:\(first.spec.tag)")
        let digest = try await PublishingRecoveryTests.push(first.spec.platform, to: image, text: "same bytes")
        #expect(
            try await PublishingTests.complete(
                fixture, agent: agent.secret, lease: first, reference: "\(proxy.host)/team/app:\(first.spec.tag)",
                digest: digest) == 200)
        var view = try await fixture.waitForBuild(build.id, token: submitter) { $0.state.isFinal }
        #expect(view.state == .published)
        let childTagPUTs = { proxy.requestLog().filter { $0.method == "PUT" && $0.path.hasSuffix("/manifests/1.0-linux-amd64") } }
        #expect(childTagPUTs().count == 1)
        // A retry whose build gives the very same image: verified, but the child tag already names it.
        _ = try await fixture.call(
            "POST", "/api/v1/builds/\(build.id)/retry", token: submitter, json: RetryRequest(platform: "linux/amd64"))
        let second = try #require(
            try await fixture.poll(agent.secret, platforms: ["linux/amd64"]).decode(PollResponse.self).lease)
        _ = try await PublishingRecoveryTests.push(
            second.spec.platform, to: try ImageReference(parsing: "\(registry.host)/team/app:\(second.spec.tag)"),
            text: "same bytes")
        #expect(
            try await PublishingTests.complete(
                fixture, agent: agent.secret, lease: second, reference: "\(proxy.host)/team/app:\(second.spec.tag)",
                digest: digest) == 200)
        view = try await fixture.waitForBuild(build.id, token: submitter) { $0.state.isFinal }
        #expect(view.state == .published, "\(view)")
        #expect(childTagPUTs().count == 1, "\(proxy.requestLog().filter { $0.method == "PUT" })")
        await fixture.stop()
    }
}
