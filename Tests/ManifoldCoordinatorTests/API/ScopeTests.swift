import Foundation
import ManifoldAPI
import ManifoldClient
import ManifoldCore
import ManifoldHTTP
import ManifoldTestSupport
import Testing

@testable import ManifoldCoordinator

/// Repository scopes and report rules: a submitter builds only into its repositories and registries the admin
/// allowed, sees and touches only builds its scopes cover, and an agent can only report images in the build's
/// own repository.
@Suite struct ScopeTests {
    static func scopedToken(_ fixture: CoordinatorFixture, _ role: Role, _ repositories: [String]) async throws -> String {
        let reply = try await fixture.call(
            "POST", "/api/v1/tokens", token: fixture.initialisation.adminToken,
            json: CreateTokenRequest(name: "\(role.rawValue) \(repositories)", role: role, repositories: repositories))
        #expect(reply.status == 201, "\(String(decoding: reply.body, as: UTF8.self))")
        let created = try reply.decode(CreatedToken.self)
        #expect(created.token.repositories == repositories)
        return created.secret
    }

    static func spec(_ fixture: CoordinatorFixture, _ token: String, image: String) async throws -> BuildSpec {
        BuildSpec(
            image: image, tags: ["1.0"], platforms: [PlatformSpec(platform: try Platform(parsing: "linux/amd64"))],
            context: .upload(digest: try await fixture.uploadContext(token)))
    }

    /// The attack: a submitter writes outside its repositories or to a registry nobody allowed. Both 403, naming
    /// the scopes or the allowed registries; nothing is recorded.
    @Test func aSubmissionOutsideTheScopesOrAllowedRegistriesIsRefused() async throws {
        let fixture = try await CoordinatorFixture.start()
        let team = try await Self.scopedToken(fixture, .submitter, ["127.0.0.1/team/*"])
        let inside = try await fixture.call(
            "POST", "/api/v1/builds", token: team, json: try await Self.spec(fixture, team, image: "127.0.0.1:1/team/app"))
        #expect(inside.status == 201)

        let outside = try await fixture.call(
            "POST", "/api/v1/builds", token: team, json: try await Self.spec(fixture, team, image: "127.0.0.1:1/other/app"))
        #expect(outside.status == 403)
        #expect(outside.error?.code == "OUT_OF_SCOPE")
        #expect(outside.error?.message.contains("127.0.0.1/team/*") == true, "\(outside.error?.message ?? "")")
        // A deeper path is not within `team/*`.
        let deeper = try await fixture.call(
            "POST", "/api/v1/builds", token: team, json: try await Self.spec(fixture, team, image: "127.0.0.1:1/team/sub/app"))
        #expect(deeper.status == 403)

        // Even an unscoped submitter and the admin stay within allowed_registries.
        for token in [try await fixture.token(.submitter), fixture.initialisation.adminToken] {
            let foreign = try await fixture.call(
                "POST", "/api/v1/builds", token: token,
                json: try await Self.spec(fixture, token, image: "registry.example.com/team/app"))
            #expect(foreign.status == 403)
            #expect(foreign.error?.code == "REGISTRY_NOT_ALLOWED")
            #expect(foreign.error?.message.contains("127.0.0.1, localhost") == true, "\(foreign.error?.message ?? "")")
        }
        let all = try await fixture.call("GET", "/api/v1/builds", token: fixture.initialisation.adminToken)
            .decode(BuildList.self)
        #expect(all.builds.map(\.image) == ["127.0.0.1:1/team/app"])
        await fixture.stop()
    }

    /// The attack: a scoped submitter cancels or retries another team's build, a scoped viewer reads it. Every
    /// request answers 404 as if the build did not exist, and the list leaves it out; the admin still can.
    @Test func buildsOutsideTheScopesAreInvisibleAndUntouchable() async throws {
        let fixture = try await CoordinatorFixture.start { $0.pollTimeoutSeconds = 1 }
        let admin = fixture.initialisation.adminToken
        let otherTeam = try await Self.scopedToken(fixture, .submitter, ["127.0.0.1/other/**"])
        let foreign = try await fixture.submit(otherTeam, image: "127.0.0.1:1/other/deep/app", platforms: ["linux/amd64"])
        let team = try await Self.scopedToken(fixture, .submitter, ["127.0.0.1/team/*"])
        let own = try await fixture.submit(team, image: "127.0.0.1:1/team/app", platforms: ["linux/amd64"])
        let viewer = try await Self.scopedToken(fixture, .viewer, ["127.0.0.1/team/*", "localhost/team/*"])

        for token in [team, viewer] {
            for (method, path) in [
                ("GET", "/api/v1/builds/\(foreign.id)"), ("GET", "/api/v1/builds/\(foreign.id)/events"),
                ("GET", "/api/v1/builds/\(foreign.id)/logs?platform=linux/amd64"),
            ] {
                let reply = try await fixture.call(method, path, token: token)
                #expect(reply.status == 404, "\(method) \(path): \(reply.status)")
            }
            let list = try await fixture.call("GET", "/api/v1/builds", token: token).decode(BuildList.self)
            #expect(list.builds.map(\.id) == [own.id])
            #expect(try await fixture.call("GET", "/api/v1/builds/\(own.id)", token: token).status == 200)
        }
        let cancel = try await fixture.call("POST", "/api/v1/builds/\(foreign.id)/cancel", token: team)
        #expect(cancel.status == 404)
        let retry = try await fixture.call(
            "POST", "/api/v1/builds/\(foreign.id)/retry", token: team, json: RetryRequest(platform: "linux/amd64"))
        #expect(retry.status == 404)
        #expect(try await fixture.build(foreign.id, token: admin).state == .queued)
        // The unscoped viewer sees both; the owning team and the admin may cancel.
        let everyone = try await fixture.token(.viewer)
        #expect(try await fixture.call("GET", "/api/v1/builds", token: everyone).decode(BuildList.self).builds.count == 2)
        #expect(try await fixture.call("POST", "/api/v1/builds/\(own.id)/cancel", token: team).status == 200)
        #expect(try await fixture.call("POST", "/api/v1/builds/\(foreign.id)/cancel", token: admin).status == 200)
        await fixture.stop()
    }

    /// The attack: team B reads team A's source, or learns that it exists, by its digest (contexts are content
    /// addressed), or names it in a build of its own to get at it. Every request answers 404 (the build 400, "upload
    /// it first"), as if there were no such context; team A's viewer reads it once a team A build uses it. Uploading
    /// the same bytes itself — what the CLI does after its HEAD answered 404 — works and lets team B read them; a PUT
    /// without the bytes does not.
    @Test func anotherTeamsContextIsInvisibleUntilItUploadsTheSameBytes() async throws {
        let fixture = try await CoordinatorFixture.start()
        let teamA = try await Self.scopedToken(fixture, .submitter, ["127.0.0.1/team-a/*"])
        let teamB = try await Self.scopedToken(fixture, .submitter, ["127.0.0.1/team-b/*"])
        let viewerA = try await Self.scopedToken(fixture, .viewer, ["127.0.0.1/team-a/*"])
        let viewerB = try await Self.scopedToken(fixture, .viewer, ["127.0.0.1/team-b/*"])
        let source = "FROM scratch\nCOPY team-a-only /\n"
        let digest = try await fixture.uploadContext(teamA, content: source)
        let path = "/api/v1/contexts/\(digest)"
        func status(_ method: String, _ token: String) async throws -> Int {
            try await fixture.call(method, path, token: token).status
        }
        #expect(try await status("GET", teamA) == 200)
        #expect(try await status("HEAD", teamA) == 200)
        #expect(try await status("GET", fixture.initialisation.adminToken) == 200)
        for token in [teamB, viewerA, viewerB] { #expect(try await status("GET", token) == 404) }
        #expect(try await status("HEAD", teamB) == 404)
        let missing = try await fixture.call("GET", path, token: teamB)
        #expect(missing.error?.message == "no context with digest \(digest)")

        let named = BuildSpec(
            image: "127.0.0.1:1/team-b/app", tags: ["1.0"],
            platforms: [PlatformSpec(platform: try Platform(parsing: "linux/amd64"))], context: .upload(digest: digest))
        let stolen = try await fixture.call("POST", "/api/v1/builds", token: teamB, json: named)
        #expect(stolen.status == 400)
        #expect(stolen.error?.field == "context.digest" && stolen.error?.message.contains("upload it first") == true)

        // Team A builds with it: team A's viewer may read it now; team B still may not.
        var own = named
        own.image = "127.0.0.1:1/team-a/app"
        #expect(try await fixture.call("POST", "/api/v1/builds", token: teamA, json: own).status == 201)
        #expect(try await status("GET", viewerA) == 200)
        #expect(try await status("GET", viewerB) == 404)

        // A PUT without the bytes proves nothing.
        let guess = try await fixture.call("PUT", path, token: teamB, body: Data("a guess".utf8))
        #expect(guess.status == 400 && guess.error?.code == "DIGEST_MISMATCH")
        #expect(try await status("GET", teamB) == 404)

        // The CLI's flow with team B's token: HEAD says absent, the upload of the same bytes is taken.
        let client = CoordinatorClient(
            baseURL: fixture.baseURL, token: teamB, tls: TLSConfiguration(caFile: fixture.state.caCertificate.path))
        let file = fixture.scratch.url.appendingPathComponent("context.tar.gz")
        try Data(source.utf8).write(to: file)
        #expect(try await client.hasContext(digest) == false)
        let uploaded = try await client.uploadContext(digest, file: file.path)
        #expect(uploaded.existed && uploaded.size == Int64(source.utf8.count))
        #expect(try await client.hasContext(digest))
        let read = try await fixture.call("GET", path, token: teamB)
        #expect(read.status == 200 && read.body == Data(source.utf8))
        #expect(try await fixture.call("POST", "/api/v1/builds", token: teamB, json: named).status == 201)
        #expect(try await status("GET", viewerB) == 200)
        await fixture.stop()
    }

    /// Scopes are for submitters and viewers, and must parse.
    @Test func badScopesAreRefusedAtCreation() async throws {
        let fixture = try await CoordinatorFixture.start()
        let admin = fixture.initialisation.adminToken
        let unparsable = try await fixture.call(
            "POST", "/api/v1/tokens", token: admin,
            json: CreateTokenRequest(name: "x", role: .submitter, repositories: ["no-path"]))
        #expect(unparsable.status == 400)
        #expect(unparsable.error?.field == "repositories[0]")
        let onJoin = try await fixture.call(
            "POST", "/api/v1/tokens", token: admin,
            json: CreateTokenRequest(name: "x", role: .join, repositories: ["127.0.0.1/team/*"]))
        #expect(onJoin.status == 400)
        let usesOnSubmitter = try await fixture.call(
            "POST", "/api/v1/tokens", token: admin, json: CreateTokenRequest(name: "x", role: .submitter, uses: 3))
        #expect(usesOnSubmitter.status == 400)
        await fixture.stop()
    }

    /// The attack: an agent reports an image from another repository so the coordinator copies it, with its own
    /// credentials, into the build's repository. The report is refused (422) with the rule, the attempt fails with
    /// it, and nothing reaches the build's repository. A configured staging repository is accepted.
    @Test func aReportNamingAnotherRepositoryIsRefusedAndNothingIsCopied() async throws {
        let registry = try TestRegistry.start(.http)
        defer { registry.stop() }
        let fixture = try await CoordinatorFixture.start(registry: registry) { settings in
            settings.stagingRepositories = [try! RepositoryPattern(parsing: "\(registry.host)/staging/*")]
            settings.retryBackoffSeconds = 1
        }
        let submitter = try await fixture.token(.submitter)
        let agent = try await fixture.joinAgent("thief", platforms: ["linux/amd64"])
        let build = try await fixture.submit(
            submitter, image: "\(registry.host)/team/app", platforms: ["linux/amd64"], maxAttempts: 2)
        let lease = try #require(try await fixture.poll(agent.secret, platforms: ["linux/amd64"]).decode(PollResponse.self).lease)
        let secretImage = try ImageReference(parsing: "\(registry.host)/secret/vault:prod")
        let digest = try await PublishingRecoveryTests.push(lease.spec.platform, to: secretImage, text: "other team's secret")
        let reply = try await fixture.call(
            "POST", "/api/v1/agent/complete", token: agent.secret,
            json: CompleteRequest(
                jobId: lease.jobId, epoch: lease.epoch, outcome: .succeeded, imageReference: "\(registry.host)/secret/vault:prod",
                digest: digest))
        #expect(reply.status == 422)
        #expect(reply.error?.code == "REPORT_REFUSED")
        let message = reply.error?.message ?? ""
        #expect(message.contains("build's own repository") && message.contains("\(registry.host)/staging/*"), "\(message)")
        let view = try await fixture.build(build.id, token: submitter)
        #expect(view.jobs[0].state == .queued, "the attempt failed and the job waits for its next attempt: \(view)")
        #expect(view.jobs[0].reason?.contains("outside the build's repository") == true, "\(view)")
        // Nothing was copied: the build's repository does not exist in the registry.
        let tags = try await fixture.client.execute(
            HTTPRequest(url: registry.baseURL.appendingPathComponent("v2/team/app/tags/list")))
        #expect(tags.status == 404, "\(String(decoding: tags.body, as: UTF8.self))")

        // A staging repository is allowed: the next attempt's report is accepted and verified (the poll waits out
        // the failed attempt's backoff).
        let next = try #require(try await fixture.poll(agent.secret, platforms: ["linux/amd64"]).decode(PollResponse.self).lease)
        let staged = try ImageReference(parsing: "\(registry.host)/staging/app:\(next.spec.tag)")
        let stagedDigest = try await PublishingRecoveryTests.push(next.spec.platform, to: staged, text: "staged")
        #expect(
            try await PublishingTests.complete(
                fixture, agent: agent.secret, lease: next, reference: staged.description, digest: stagedDigest) == 200)
        let done = try await fixture.waitForBuild(build.id, token: submitter) { $0.state.isFinal }
        #expect(done.state == .published, "\(done)")
        await fixture.stop()
    }
}
