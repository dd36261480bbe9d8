import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldRegistry
import ManifoldTestSupport
import Testing

@testable import ManifoldCoordinator

/// The registry-client SSRF attacks of `RegistrySSRFTests`, performed through a real coordinator build: the build's
/// image is on an allowed registry that turns hostile once the agent reports, and the coordinator's own checks
/// (verifier, copy) are what it tries to send elsewhere. The build fails with the refusal as its reason, and the
/// place the registry pointed at never hears from the coordinator (or never gets its credentials).
@Suite struct RegistrySSRFBuildTests {
    /// A reported digest; the hostile registries never get as far as serving one.
    static let someDigest = Digest.compute(of: Data("an image the agent says it pushed".utf8))

    /// Submits a one-attempt build of `host/team/app`, lets a scripted agent report its image there, and returns
    /// the build once it is final.
    static func buildOnHostileRegistry(_ fixture: CoordinatorFixture, host: String) async throws -> BuildView {
        let submitter = try await fixture.token(.submitter)
        let agent = try await fixture.joinAgent("a", platforms: ["linux/amd64"])
        let build = try await fixture.submit(submitter, image: "\(host)/team/app", platforms: ["linux/amd64"], maxAttempts: 1)
        let lease = try #require(try await fixture.poll(agent.secret, platforms: ["linux/amd64"]).decode(PollResponse.self).lease)
        #expect(
            try await PublishingTests.complete(
                fixture, agent: agent.secret, lease: lease, reference: "\(host)/team/app:\(lease.spec.tag)",
                digest: someDigest) == 200)
        return try await fixture.waitForBuild(build.id, token: submitter) { $0.state.isFinal }
    }

    /// The build failed because its job's check was refused for `why`; the reasons are the coordinator's own words,
    /// with nothing a foreign server sent.
    static func expectRefused(_ build: BuildView, why: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(build.state == .failed, "\(build)", sourceLocation: sourceLocation)
        let job = build.jobs.first
        #expect(job?.state == .failed && job?.attempts == 1, "\(build)", sourceLocation: sourceLocation)
        let reason = job?.reason ?? ""
        #expect(reason.contains("Refused to contact") && reason.contains(why), "\(reason)", sourceLocation: sourceLocation)
        #expect(build.reason?.contains("1 of 1 platform(s) failed") == true, "\(build)", sourceLocation: sourceLocation)
        // The sink's body ({"name":"x",…}) or any other raw document never reaches a reason.
        for text in [reason, build.reason ?? ""] {
            #expect(!text.contains("{") && !text.contains("\"name\""), "\(text)", sourceLocation: sourceLocation)
        }
    }

    @Test func aTokenRealmThatLeavesHTTPSFailsTheBuildBeforeTheCredentialLeaves() async throws {
        let scratch = try ScratchDirectory(prefix: "manifold-ssrf-build")
        defer { scratch.remove() }
        let certificates = try TestCertificates.generate(in: scratch.file("certs"))
        let sink = try HostileRegistry.start(.sink, logDirectory: scratch.url)
        defer { sink.stop() }
        let registry = try HostileRegistry.start(
            .realm, target: sink.url("/token"), tls: certificates, logDirectory: scratch.url)
        defer { registry.stop() }
        let fixture = try await CoordinatorFixture.start { settings in
            settings.registryCAs = [registry.host: certificates.caCertificate.path]
        }
        // The coordinator holds a credential for the registry: the token request would carry it to the realm.
        _ = ManifoldRegistryDockerConfig.write(
            directory: fixture.state.dockerConfigDirectory, host: registry.host, username: "manifold", password: "secret")

        let build = try await Self.buildOnHostileRegistry(fixture, host: registry.host)
        Self.expectRefused(build, why: "it is not HTTPS")
        #expect(build.jobs.first?.reason?.contains(sink.url("/token")) == true, "\(build)")
        // The registry was asked (the verifier's manifest GET); the realm never was.
        #expect(!registry.requests().isEmpty)
        #expect(sink.requests().isEmpty, "\(sink.requests())")
        await fixture.stop()
    }

    /// `http://0.0.0.0:PORT` reaches this machine's own listeners on Linux: a registry may not aim a client there.
    @Test func aTokenRealmOnTheUnspecifiedAddressIsNeverContacted() async throws {
        let scratch = try ScratchDirectory(prefix: "manifold-ssrf-build")
        defer { scratch.remove() }
        let sink = try HostileRegistry.start(.sink, logDirectory: scratch.url)
        defer { sink.stop() }
        let registry = try HostileRegistry.start(
            .realm, target: "http://0.0.0.0:\(sink.port)/token", logDirectory: scratch.url)
        defer { registry.stop() }
        let fixture = try await CoordinatorFixture.start { settings in
            // A plain-HTTP registry: its realm may be plain HTTP too, but not on an address that is never contacted.
            settings.insecureRegistries = [registry.host]
        }
        _ = ManifoldRegistryDockerConfig.write(
            directory: fixture.state.dockerConfigDirectory, host: registry.host, username: "manifold", password: "secret")

        let build = try await Self.buildOnHostileRegistry(fixture, host: registry.host)
        Self.expectRefused(build, why: "0.0.0.0, a unspecified address, which is never contacted")
        #expect(!registry.requests().isEmpty)
        #expect(sink.requests().isEmpty, "\(sink.requests())")
        await fixture.stop()
    }

    @Test func aManifestRedirectToPlainHTTPFailsTheBuildAndIsNotFollowed() async throws {
        let scratch = try ScratchDirectory(prefix: "manifold-ssrf-build")
        defer { scratch.remove() }
        let certificates = try TestCertificates.generate(in: scratch.file("certs"))
        let sink = try HostileRegistry.start(.sink, logDirectory: scratch.url)
        defer { sink.stop() }
        let registry = try HostileRegistry.start(.redirect, target: sink.url(""), tls: certificates, logDirectory: scratch.url)
        defer { registry.stop() }
        let fixture = try await CoordinatorFixture.start { settings in
            settings.registryCAs = [registry.host: certificates.caCertificate.path]
        }

        let build = try await Self.buildOnHostileRegistry(fixture, host: registry.host)
        Self.expectRefused(build, why: "it is not HTTPS")
        // The verifier asked for the reported manifest and was sent to the sink; it did not go.
        #expect(registry.requests().contains { $0.method == "GET" && $0.path.contains("/manifests/\(Self.someDigest)") })
        #expect(sink.requests().isEmpty, "\(sink.requests())")
        await fixture.stop()
    }

    /// A registry that demands Basic authentication hands out upload locations on another host. The coordinator
    /// copies an image from a staging repository into the build's repository there: the blobs go to the other host
    /// (that is how registries with separate blob storage work), the credential does not.
    @Test func anUploadLocationOnAnotherHostGetsTheBlobsButNoCredential() async throws {
        let registry = try TestRegistry.start(.http)
        defer { registry.stop() }
        // The other host: forwards to the same registry (so the upload completes) and logs what arrived.
        let elsewhere = try registry.withFaultProxy()
        defer { elsewhere.stop() }
        let hostile = try registry.withFaultProxy()
        defer { hostile.stop() }
        try hostile.setRules([
            FaultRule(
                status: 401, times: FaultRule.forever,
                body: #"{"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}"#,
                headers: ["WWW-Authenticate": #"Basic realm="hostile""#], absentHeader: "Authorization"),
            FaultRule(
                method: "POST", pathRegex: "/blobs/uploads/", times: FaultRule.forever,
                locationBase: elsewhere.baseURL.absoluteString),
        ])
        let fixture = try await CoordinatorFixture.start(registry: registry) { settings in
            settings.insecureRegistries = [registry.host, hostile.host]
            settings.stagingRepositories = [try! RepositoryPattern(parsing: "\(registry.host)/ci/*")]
        }
        _ = ManifoldRegistryDockerConfig.write(
            directory: fixture.state.dockerConfigDirectory, host: hostile.host, username: "manifold", password: "secret")
        let submitter = try await fixture.token(.submitter)
        let agent = try await fixture.joinAgent("a", platforms: ["linux/amd64"])
        let build = try await fixture.submit(submitter, image: "\(hostile.host)/team/app", platforms: ["linux/amd64"])
        let lease = try #require(try await fixture.poll(agent.secret, platforms: ["linux/amd64"]).decode(PollResponse.self).lease)
        // The agent pushed to the staging repository; the coordinator copies the image into team/app on `hostile`.
        let staged = try ImageReference(parsing: "\(registry.host)/ci/app:\(lease.spec.tag)")
        let digest = try await PublishingRecoveryTests.push(lease.spec.platform, to: staged, text: "staged")
        #expect(
            try await PublishingTests.complete(
                fixture, agent: agent.secret, lease: lease, reference: staged.description, digest: digest) == 200)
        let published = try await fixture.waitForBuild(build.id, token: submitter) { $0.state.isFinal }
        #expect(published.state == .published, "\(published)")

        // The registry got the credential with the upload's start…
        let starts = hostile.requestLog().filter { $0.method == "POST" && $0.path.contains("/blobs/uploads/") }
        #expect(!starts.isEmpty && starts.allSatisfy { $0.authorization == true }, "\(hostile.requestLog())")
        // …and the other host got the blobs (config and layer), never the credential.
        let arrived = elsewhere.requestLog()
        #expect(arrived.filter { $0.method == "PUT" && $0.path.contains("/blobs/uploads/") }.count >= 2, "\(arrived)")
        #expect(!arrived.isEmpty && arrived.allSatisfy { $0.authorization == false }, "\(arrived)")
        await fixture.stop()
    }

    @Test func aSubmissionOutsideAllowedRegistriesIsRefusedAndNothingIsContacted() async throws {
        let scratch = try ScratchDirectory(prefix: "manifold-ssrf-build")
        defer { scratch.remove() }
        // 127.0.0.2 is loopback too, but not in this coordinator's allowed_registries (127.0.0.1, localhost).
        let sink = try HostileRegistry.start(.sink, address: "127.0.0.2", logDirectory: scratch.url)
        defer { sink.stop() }
        let fixture = try await CoordinatorFixture.start { settings in
            settings.insecureRegistries = [sink.host]
            settings.pollTimeoutSeconds = 1
        }
        let submitter = try await fixture.token(.submitter)
        let agent = try await fixture.joinAgent("a", platforms: ["linux/amd64"])
        let context = try await fixture.uploadContext(submitter)
        let reply = try await fixture.call(
            "POST", "/api/v1/builds", token: submitter,
            json: BuildSpec(
                image: "\(sink.host)/team/app", tags: ["1.0"],
                platforms: [PlatformSpec(platform: try Platform(parsing: "linux/amd64"))], context: .upload(digest: context)))
        #expect(reply.status == 403)
        #expect(reply.error?.code == "REGISTRY_NOT_ALLOWED")
        let message = reply.error?.message ?? ""
        #expect(
            message.contains("registry \(sink.host)") && message.contains("not in allowed_registries")
                && message.contains("127.0.0.1, localhost"), "\(message)")
        // No build, no job for an agent, and not a byte sent to the registry.
        let builds = try await fixture.call("GET", "/api/v1/builds", token: fixture.initialisation.adminToken)
            .decode(BuildList.self)
        #expect(builds.builds.isEmpty)
        let poll = try await fixture.poll(agent.secret, platforms: ["linux/amd64"], timeout: .seconds(30))
        #expect(poll.status == 200)
        #expect(try poll.decode(PollResponse.self).lease == nil)
        #expect(sink.requests().isEmpty, "\(sink.requests())")
        await fixture.stop()
    }
}
