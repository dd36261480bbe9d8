import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldRegistry
import ManifoldTestSupport
import Testing

@testable import ManifoldCoordinator

/// A registry hiccup is not a verdict (issue 9, point 9d), shown through real builds: a fault proxy in front of a
/// real registry gives one wrong answer that a HEAD contradicts, and the build still publishes without a failed
/// attempt, with one event saying what was retried.
@Suite struct RegistryHiccupTests {
    /// The event types of a final build, oldest first.
    static func eventTypes(_ fixture: CoordinatorFixture, build: String, token: String) async throws -> [String] {
        let reply = try await fixture.call("GET", "/api/v1/builds/\(build)/events", token: token)
        return String(decoding: reply.body, as: UTF8.self).split(separator: "\n").compactMap { line in
            line.hasPrefix("event: ") ? String(line.dropFirst("event: ".count)) : nil
        }
    }

    /// While both children exist, the registry refuses PUTs of the list, as distribution does when another push
    /// rewrites a child while the list is validated. The publisher re-checks the children with HEADs and pushes again
    /// in the same run, twice at most (no `list.retrying`); a third refusal ends the run, and the outbox's next run
    /// (one `list.retrying`) publishes.
    @Test(arguments: ["MANIFEST_BLOB_UNKNOWN", "DIGEST_INVALID"], [1, 3])
    func aRefusedListPushIsRetriedWhileEveryChildExists(code: String, refusals: Int) async throws {
        let registry = try TestRegistry.start(.http)
        defer { registry.stop() }
        let proxy = try registry.withFaultProxy()
        defer { proxy.stop() }
        let fixture = try await CoordinatorFixture.start(registry: registry) { settings in
            settings.insecureRegistries = [registry.host, proxy.host]
            settings.retryBackoffSeconds = 1
            settings.maxRetryBackoffSeconds = 1
        }
        let submitter = try await fixture.token(.submitter)
        let platforms = ["linux/amd64", "linux/arm64"]
        let build = try await fixture.submit(submitter, image: "\(proxy.host)/team/app", platforms: platforms, maxAttempts: 1)
        // The list's push under its tag (children get theirs, `1.0-linux-amd64`, from the verifier): refuse it.
        try proxy.setRules([
            FaultRule(
                method: "PUT", pathRegex: #"/manifests/1\.0$"#, status: 400, times: refusals,
                body: FaultRule.registryError(code, "refused while another push is under way"))
        ])
        var children: [Digest] = []
        for platform in platforms {
            let agent = try await fixture.joinAgent(
                "agent-\(platform.replacingOccurrences(of: "/", with: "-"))", platforms: [platform])
            let lease = try #require(try await fixture.poll(agent.secret, platforms: [platform]).decode(PollResponse.self).lease)
            // The agent pushes straight to the registry; the coordinator reaches it through the proxy.
            let digest = try await PublishingRecoveryTests.push(
                lease.spec.platform, to: try ImageReference(parsing: "\(registry.host)/team/app:\(lease.spec.tag)"),
                text: platform)
            children.append(digest)
            #expect(
                try await PublishingTests.complete(
                    fixture, agent: agent.secret, lease: lease, reference: "\(proxy.host)/team/app:\(lease.spec.tag)",
                    digest: digest) == 200)
        }

        let published = try await fixture.waitForBuild(build.id, token: submitter) { $0.state.isFinal }
        #expect(published.state == .published, "\(published)")
        #expect(published.jobs.allSatisfy { $0.state == .succeeded && $0.attempts == 1 }, "\(published)")
        let listDigest = try #require(published.listDigest)

        // The refused PUTs of the list under its tag and the retry that the registry took; none by digest.
        let log = proxy.requestLog()
        let listPUTs = log.enumerated().filter {
            $0.element.method == "PUT" && $0.element.path.hasSuffix("/manifests/1.0")
        }
        #expect(listPUTs.map { $0.element.status } == Array(repeating: 400, count: refusals) + [201], "\(log)")
        #expect(listPUTs.dropLast().allSatisfy { $0.element.injected == true })
        #expect(!log.contains { $0.method == "PUT" && $0.path.hasSuffix("/manifests/\(listDigest)") }, "\(log)")
        for (refused, next) in zip(listPUTs, listPUTs.dropFirst()) {
            // After each refusal, each child was looked up by a HEAD (and found), which is why it proved nothing.
            let checks = log[refused.offset..<next.offset].filter { $0.method == "HEAD" && $0.status == 200 }.map(\.path)
            for child in children {
                #expect(checks.contains { $0.hasSuffix("/manifests/\(child)") }, "\(log)")
            }
        }

        // A retry event only when the run gave up, no failed or retried attempt, no failure of the build.
        let events = try await Self.eventTypes(fixture, build: build.id, token: submitter)
        #expect(events.filter { $0 == "list.retrying" }.count == (refusals > 1 ? 1 : 0), "\(events)")
        #expect(events.filter { $0 == "list.published" }.count == 1, "\(events)")
        #expect(
            !events.contains { ["job.failed", "job.retrying", "build.failed", "job.verification_postponed"].contains($0) },
            "\(events)")
        await fixture.stop()
    }

    /// The verifier's read of a reported manifest gets a 404 although the image is there (a HEAD finds it): the
    /// check is postponed and made again, and the build publishes with its single attempt.
    @Test func aManifestCalledMissingThatAHeadFindsIsVerifiedLater() async throws {
        let scenario = try await ProxiedRegistryScenario.start()
        defer { scenario.stopRegistry() }
        let (registry, proxy, fixture) = (scenario.registry, scenario.proxy, scenario.fixture)
        let (submitter, agent) = (scenario.submitter, scenario.agent)
        // One attempt only: a 404 taken as a verdict would fail the build.
        let build = try await fixture.submit(
            submitter, image: "\(proxy.host)/team/app", platforms: ["linux/amd64"], maxAttempts: 1)
        let lease = try #require(try await fixture.poll(agent.secret, platforms: ["linux/amd64"]).decode(PollResponse.self).lease)
        let digest = try await PublishingRecoveryTests.push(
            lease.spec.platform, to: try ImageReference(parsing: "\(registry.host)/team/app:\(lease.spec.tag)"), text: "present")
        try proxy.setRules([
            FaultRule(
                method: "GET", pathRegex: "/manifests/\(digest)$", status: 404,
                body: FaultRule.registryError("MANIFEST_UNKNOWN", "manifest unknown"))
        ])
        #expect(
            try await PublishingTests.complete(
                fixture, agent: agent.secret, lease: lease, reference: "\(proxy.host)/team/app:\(lease.spec.tag)", digest: digest)
                == 200)

        let published = try await fixture.waitForBuild(build.id, token: submitter) { $0.state.isFinal }
        #expect(published.state == .published, "\(published)")
        #expect(published.jobs.first?.state == .succeeded && published.jobs.first?.attempts == 1, "\(published)")

        // The refused GET, then the HEAD that found the image, then a GET the registry answered.
        let log = proxy.requestLog().filter { $0.path.hasSuffix("/manifests/\(digest)") }
        let refused = try #require(log.firstIndex { $0.method == "GET" && $0.injected }, "\(log)")
        let found = try #require(log[refused...].firstIndex { $0.method == "HEAD" && $0.status == 200 }, "\(log)")
        #expect(log[found...].contains { $0.method == "GET" && $0.status == 200 }, "\(log)")

        let events = try await Self.eventTypes(fixture, build: build.id, token: submitter)
        #expect(events.filter { $0 == "job.verification_postponed" }.count == 1, "\(events)")
        #expect(!events.contains { ["job.failed", "job.retrying", "build.failed"].contains($0) }, "\(events)")
        #expect(events.last == "list.published", "\(events)")
        await fixture.stop()
    }
}
