import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldHTTP
import ManifoldRegistry
import ManifoldTestSupport
import Testing

@testable import ManifoldCoordinator

/// The coordinator recovering from what goes wrong around a build: images pushed elsewhere, a registry outage
/// while publishing, an agent that vanishes mid-job.
@Suite struct PublishingRecoveryTests {
    /// Pushes a test image of `platform` to `reference` (plain HTTP) and returns its digest.
    static func push(_ platform: Platform, to reference: ImageReference, text: String) async throws -> Digest {
        try await pushImage(platform, to: reference, text: text).digest
    }

    /// Pushes a test image of `platform` to `reference` (plain HTTP) and returns its manifest.
    static func pushImage(_ platform: Platform, to reference: ImageReference, text: String) async throws -> RawManifest {
        let image = try TestImage.make(
            os: platform.os, architecture: platform.architecture, variant: platform.variant, osVersion: platform.osVersion,
            format: .oci, layerText: text)
        return try await withPlainClient(reference.registry) { client in
            for blob in [image.config] + image.layers {
                try await client.uploadBlob(
                    repository: reference.repository, digest: try Digest(parsing: blob.digest), data: blob.bytes)
            }
            let manifest = try RawManifest(bytes: image.manifest, mediaType: image.manifestMediaType)
            try await client.pushManifest(
                repository: reference.repository, reference: reference.tag ?? "latest", manifest: manifest)
            return manifest
        }
    }

    /// Runs `body` with a client of `registry` over plain HTTP, as an agent pushing there would have.
    static func withPlainClient<T: Sendable>(
        _ registry: String, _ body: (RegistryClient) async throws -> T
    ) async throws -> T {
        var configuration = RegistryConfiguration(certsDirectories: [], credentials: StaticCredentials())
        configuration.plainHTTPHosts = [registry]
        let pool = RegistryClientPool(configuration: configuration)
        defer { pool.shutdown() }
        return try await body(try pool.client(for: registry))
    }

    /// An image reported from a staging repository (`staging_repositories`) is copied into the build's own.
    @Test func anImagePushedToAnotherRepositoryIsCopiedAndGetsItsChildTag() async throws {
        let registry = try TestRegistry.start(.http)
        defer { registry.stop() }
        let fixture = try await CoordinatorFixture.start(registry: registry) { settings in
            settings.stagingRepositories = [try! RepositoryPattern(parsing: "\(registry.host)/ci/*")]
        }
        let submitter = try await fixture.token(.submitter)
        let agent = try await fixture.joinAgent("elsewhere", platforms: ["linux/arm64/v8"])
        let build = try await fixture.submit(
            submitter, image: "\(registry.host)/team/app", platforms: ["linux/arm64/v8"], tags: ["2.0"])
        let lease = try #require(
            try await fixture.poll(agent.secret, platforms: ["linux/arm64/v8"]).decode(PollResponse.self).lease)
        let scratch = try ImageReference(parsing: "\(registry.host)/ci/scratch:build-7")
        let digest = try await Self.push(lease.spec.platform, to: scratch, text: "built elsewhere")
        #expect(
            try await PublishingTests.complete(
                fixture, agent: agent.secret, lease: lease, reference: scratch.description, digest: digest) == 200)
        let published = try await fixture.waitForBuild(build.id, token: submitter) { $0.state.isFinal }
        #expect(published.state == .published, "\(published)")
        #expect(published.jobs[0].imageReference == "\(registry.host)/team/app:2.0-linux-arm64")
        // The child exists in the build's repository under its own tag, so retention keeps it.
        let child = try await runChecked(
            "skopeo", ["inspect", "--raw", "--tls-verify=false", "docker://\(registry.host)/team/app:2.0-linux-arm64"])
        #expect(Digest.compute(of: Data(child.utf8)) == digest)
        let list = try await runChecked(
            "skopeo", ["inspect", "--raw", "--tls-verify=false", "docker://\(registry.host)/team/app:2.0"])
        #expect(list.contains(digest.description))
        await fixture.stop()
    }

    @Test func publishingOutlastsARegistryOutage() async throws {
        let scenario = try await ProxiedRegistryScenario.start { settings in
            settings.retryBackoffSeconds = 1
            settings.maxRetryBackoffSeconds = 1
        }
        defer { scenario.stopRegistry() }
        let (registry, proxy, fixture) = (scenario.registry, scenario.proxy, scenario.fixture)
        let (submitter, agent) = (scenario.submitter, scenario.agent)
        let build = try await fixture.submit(submitter, image: "\(proxy.host)/team/app", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent.secret, platforms: ["linux/amd64"]).decode(PollResponse.self).lease)
        // The agent pushes straight to the registry; the coordinator reaches it through the failing proxy.
        let digest = try await Self.push(
            lease.spec.platform, to: try ImageReference(parsing: "\(registry.host)/team/app:\(lease.spec.tag)"), text: "outage")
        // The list's PUTs fail (under its tag, and by digest were one tried); the verifier's child tag goes through.
        try proxy.setRules([
            FaultRule(method: "PUT", pathRegex: "/manifests/(sha256:|1\\.0$)", status: 503, times: FaultRule.forever)
        ])
        #expect(
            try await PublishingTests.complete(
                fixture, agent: agent.secret, lease: lease, reference: "\(proxy.host)/team/app:\(lease.spec.tag)", digest: digest)
                == 200)
        // More failed publishing runs than the old give-up limit of five (each run is four tries by the registry client).
        let deadline = ContinuousClock.now + .seconds(60)
        while proxy.requestLog().filter({ $0.injected && $0.method == "PUT" }).count < 24, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(200))
        }
        var view = try await fixture.build(build.id, token: submitter)
        #expect(view.state == .publishing, "\(view)")
        try proxy.clearRules()
        view = try await fixture.waitForBuild(build.id, token: submitter) { $0.state.isFinal }
        #expect(view.state == .published, "\(view)")
        let list = try await runChecked(
            "skopeo", ["inspect", "--raw", "--tls-verify=false", "docker://\(registry.host)/team/app:1.0"])
        #expect(Digest.compute(of: Data(list.utf8)) == view.listDigest)
        await fixture.stop()
    }

    /// Lists of one image that move different tags publish side by side: a push that hangs holds up only the rows
    /// that move its tags (once every list of an image waited for the one before).
    @Test func aHangingTagPushHoldsUpNoListWithOtherTags() async throws {
        let scenario = try await ProxiedRegistryScenario.start()
        defer { scenario.stopRegistry() }
        let (registry, proxy, fixture) = (scenario.registry, scenario.proxy, scenario.fixture)
        let (submitter, agent) = (scenario.submitter, scenario.agent)
        // The proxy holds the first PUT of tag 1.0 for 40 s before passing it on (the proxy logs a request once it
        // has been answered).
        try proxy.setRules([FaultRule(method: "PUT", pathRegex: "/manifests/1\\.0$", times: 1, delay: 40)])
        let held = try await fixture.submit(submitter, image: "\(proxy.host)/team/app", platforms: ["linux/amd64"], tags: ["1.0"])
        let other = try await fixture.submit(
            submitter, image: "\(proxy.host)/team/app", platforms: ["linux/amd64"], tags: ["2.0"])
        for text in ["held", "other"] {
            let lease = try #require(
                try await fixture.poll(agent.secret, platforms: ["linux/amd64"]).decode(PollResponse.self).lease)
            let digest = try await Self.push(
                lease.spec.platform, to: try ImageReference(parsing: "\(registry.host)/team/app:\(lease.spec.tag)"), text: text)
            #expect(
                try await PublishingTests.complete(
                    fixture, agent: agent.secret, lease: lease, reference: "\(proxy.host)/team/app:\(lease.spec.tag)",
                    digest: digest) == 200)
        }
        let published = try await fixture.waitForBuild(other.id, token: submitter) { $0.state.isFinal }
        #expect(published.state == .published, "\(published)")
        // Published while the other list's tag PUT was still held by the proxy.
        let tagPuts = proxy.requestLog().filter { $0.method == "PUT" && $0.path.hasSuffix("/manifests/1.0") }
        #expect(tagPuts.isEmpty, "\(tagPuts)")
        #expect(try await fixture.build(held.id, token: submitter).state == .publishing)
        let later = try await fixture.waitForBuild(held.id, token: submitter) { $0.state.isFinal }
        #expect(later.state == .published, "\(later)")
        for (tag, view) in [("1.0", later), ("2.0", published)] {
            let list = try await runChecked(
                "skopeo", ["inspect", "--raw", "--tls-verify=false", "docker://\(registry.host)/team/app:\(tag)"])
            #expect(Digest.compute(of: Data(list.utf8)) == view.listDigest)
        }
        await fixture.stop()
    }

    @Test func aHeldPollIsWokenWhenALostJobComesBack() async throws {
        let fixture = try await CoordinatorFixture.start { settings in
            settings.leaseTTLSeconds = 5
            settings.heartbeatIntervalSeconds = 1
            settings.retryBackoffSeconds = 1
            settings.pollTimeoutSeconds = 150
        }
        let submitter = try await fixture.token(.submitter)
        let vanishing = try await fixture.joinAgent("vanishing", platforms: ["linux/amd64"])
        let waiting = try await fixture.joinAgent("waiting", platforms: ["linux/amd64"])
        let build = try await fixture.submit(submitter, image: "127.0.0.1:1/team/app", platforms: ["linux/amd64"])
        let lost = try #require(
            try await fixture.poll(vanishing.secret, platforms: ["linux/amd64"], confirm: false).decode(PollResponse.self).lease)
        // The first agent never confirms its lease. The second one's poll is held until the grant expires (no
        // backoff follows a lost lease), then answered at once: seconds on an idle machine. Unwoken, it would be
        // answered only when its 150 s window closes. The bound between the two leaves room for the library phase's
        // starved process, in which the reaper also sees its own stalls as pauses and extends running leases by a TTL
        // each time (a CI run once took more than 40 s here).
        let started = ContinuousClock.now
        let reply = try await fixture.poll(waiting.secret, platforms: ["linux/amd64"], timeout: .seconds(180))
        let waited = ContinuousClock.now - started
        let lease = try #require(try reply.decode(PollResponse.self).lease)
        #expect(lease.jobId == lost.jobId)
        #expect(lease.attempt == 2)
        #expect(waited < .seconds(120), "the poll waited \(waited)")
        let view = try await fixture.build(build.id, token: submitter)
        #expect(view.jobs[0].agent == "waiting")
        await fixture.stop()
    }
}
