import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldRegistry
import ManifoldTestSupport
import Testing

@testable import ManifoldCoordinator

/// A registry that misbehaves affects only the builds that use it, and only through what it is allowed to say:
/// one that stops answering holds up no other registry's builds, one that answers with a foreign page gets no
/// page into a build's reason.
@Suite struct RegistryIsolationTests {
    @Test func aBlackholedRegistryDoesNotDelayABuildOnAnotherRegistry() async throws {
        let slow = try TestRegistry.start(.http)
        defer { slow.stop() }
        let fast = try TestRegistry.start(.http)
        defer { fast.stop() }
        let link = try TCPFaultProxy.start(backendPort: Int(slow.host.split(separator: ":").last!)!)
        defer { link.stop() }
        let fixture = try await CoordinatorFixture.start { settings in
            settings.insecureRegistries = [slow.host, fast.host, link.host]
        }
        let submitter = try await fixture.token(.submitter)
        let agent = try await fixture.joinAgent("a", platforms: ["linux/amd64"])

        // The first build's registry is reached through a link that swallows every byte from now on.
        let stuck = try await fixture.submit(submitter, image: "\(link.host)/team/stuck", platforms: ["linux/amd64"])
        let first = try #require(try await fixture.poll(agent.secret, platforms: ["linux/amd64"]).decode(PollResponse.self).lease)
        let stuckDigest = try await PublishingRecoveryTests.push(
            first.spec.platform, to: try ImageReference(parsing: "\(slow.host)/team/stuck:\(first.spec.tag)"), text: "stuck")
        try link.setRules([TCPFaultRule(action: .blackhole)])
        #expect(
            try await PublishingTests.complete(
                fixture, agent: agent.secret, lease: first, reference: "\(link.host)/team/stuck:\(first.spec.tag)",
                digest: stuckDigest) == 200)

        // The second build, on another registry, is verified and published while the first still waits.
        let free = try await fixture.submit(submitter, image: "\(fast.host)/team/free", platforms: ["linux/amd64"])
        let second = try #require(
            try await fixture.poll(agent.secret, platforms: ["linux/amd64"]).decode(PollResponse.self).lease)
        let freeDigest = try await PublishingRecoveryTests.push(
            second.spec.platform, to: try ImageReference(parsing: "\(fast.host)/team/free:\(second.spec.tag)"), text: "free")
        #expect(
            try await PublishingTests.complete(
                fixture, agent: agent.secret, lease: second, reference: "\(fast.host)/team/free:\(second.spec.tag)",
                digest: freeDigest) == 200)
        let published = try await fixture.waitForBuild(free.id, token: submitter) { $0.state.isFinal }
        #expect(published.state == .published, "\(published)")
        let waiting = try await fixture.build(stuck.id, token: submitter)
        #expect(!waiting.state.isFinal, "\(waiting)")
        // Its check is still waiting on the registry that does not answer.
        #expect(waiting.jobs.first?.state == .verifying, "\(waiting)")
        await fixture.stop()
    }

    @Test func aForeignErrorPageNeverReachesTheBuildsReason() async throws {
        let scenario = try await ProxiedRegistryScenario.start()
        defer { scenario.stopRegistry() }
        let (registry, proxy, fixture) = (scenario.registry, scenario.proxy, scenario.fixture)
        let (submitter, agent) = (scenario.submitter, scenario.agent)
        let build = try await fixture.submit(submitter, image: "\(proxy.host)/team/app", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent.secret, platforms: ["linux/amd64"]).decode(PollResponse.self).lease)
        let digest = try await PublishingRecoveryTests.push(
            lease.spec.platform, to: try ImageReference(parsing: "\(registry.host)/team/app:\(lease.spec.tag)"), text: "page")
        // The list's push is answered by something in front of the registry with an internal HTML page.
        let page = "<html><body>INTERNAL-SECRET-PAGE " + String(repeating: "x", count: 100_000) + "</body></html>"
        try proxy.setRules([
            FaultRule(
                method: "PUT", pathRegex: #"/manifests/1\.0$"#, status: 400, times: FaultRule.forever, body: page,
                headers: ["Content-Type": "text/html"])
        ])
        #expect(
            try await PublishingTests.complete(
                fixture, agent: agent.secret, lease: lease, reference: "\(proxy.host)/team/app:\(lease.spec.tag)", digest: digest)
                == 200)
        let failed = try await fixture.waitForBuild(build.id, token: submitter) { $0.state.isFinal }
        #expect(failed.state == .failed, "\(failed)")
        let reason = try #require(failed.reason)
        #expect(!reason.contains("INTERNAL-SECRET-PAGE") && !reason.contains("<html"), "\(reason)")
        #expect(reason.contains("HTTP 400") && reason.contains("bytes, not a registry error document"), "\(reason)")
        await fixture.stop()
    }
}
