import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldTestSupport
import Testing

@testable import ManifoldCoordinator

/// Pools and join tokens: an agent's labels and platforms are fixed at join within its pool, polls may only
/// narrow them, and a join token works for one pool, a limited time and a limited number of agents.
@Suite struct PoolTests {
    static func createPool(
        _ fixture: CoordinatorFixture, _ name: String, labels: [String: String], platforms: [String]
    ) async throws -> PoolView {
        let reply = try await fixture.call(
            "POST", "/api/v1/pools", token: fixture.initialisation.adminToken,
            json: CreatePoolRequest(name: name, labels: labels, platforms: platforms))
        #expect(reply.status == 201, "\(String(decoding: reply.body, as: UTF8.self))")
        return try reply.decode(PoolView.self)
    }

    static func joinToken(
        _ fixture: CoordinatorFixture, pool: String?, uses: Int? = nil, expiresInSeconds: Int? = nil
    ) async throws -> CreatedToken {
        let reply = try await fixture.call(
            "POST", "/api/v1/tokens", token: fixture.initialisation.adminToken,
            json: CreateTokenRequest(
                name: "join \(pool ?? "default")", role: .join, pool: pool, expiresInSeconds: expiresInSeconds, uses: uses))
        #expect(reply.status == 201, "\(String(decoding: reply.body, as: UTF8.self))")
        return try reply.decode(CreatedToken.self)
    }

    static func join(
        _ fixture: CoordinatorFixture, token: String, name: String, platforms: [String], labels: [String: String] = [:]
    ) async throws -> CoordinatorFixture.Reply {
        try await fixture.call(
            "POST", "/api/v1/agent/join", token: token,
            json: JoinRequest(
                name: name, platforms: try platforms.map { try Platform(parsing: $0) }, labels: labels, builders: ["command"],
                version: "test"))
    }

    /// The attack: an agent of another pool claims `pool=release` jobs by naming the label at join or in a poll,
    /// or by offering a platform it did not join with. Each is refused; only the release pool's agent gets the job.
    @Test func anAgentOutsideThePoolCannotClaimItsJobs() async throws {
        let fixture = try await CoordinatorFixture.start { $0.pollTimeoutSeconds = 1 }
        let admin = fixture.initialisation.adminToken
        _ = try await Self.createPool(fixture, "release", labels: ["pool": "release"], platforms: ["linux/amd64"])
        let defaultToken = try await Self.joinToken(fixture, pool: nil, uses: 5)
        let releaseToken = try await Self.joinToken(fixture, pool: "release")
        #expect(defaultToken.token.pool == "default")
        #expect(releaseToken.token.usesLeft == 1)

        // Naming the release pool's label at join is refused, naming the key and the pool that gives it.
        let claim = try await Self.join(
            fixture, token: defaultToken.secret, name: "claimer", platforms: ["linux/amd64"], labels: ["pool": "release"])
        #expect(claim.status == 403)
        #expect(claim.error?.message.contains("label key \"pool\"") == true, "\(claim.error?.message ?? "")")
        #expect(claim.error?.message.contains("release") == true)

        let outsiderJoin = try await Self.join(
            fixture, token: defaultToken.secret, name: "outsider", platforms: ["linux/amd64"], labels: ["gpu": "none"])
        #expect(outsiderJoin.status == 201)
        let outsider = try outsiderJoin.decode(JoinResponse.self)
        #expect(outsider.pool == "default")

        let submitter = try await fixture.token(.submitter)
        let digest = try await fixture.uploadContext(submitter)
        let spec = BuildSpec(
            image: "127.0.0.1:1/team/release-app", tags: ["1.0"],
            platforms: [PlatformSpec(platform: try Platform(parsing: "linux/amd64"), agentLabels: ["pool": "release"])],
            context: .upload(digest: digest))
        let build = try await fixture.call("POST", "/api/v1/builds", token: submitter, json: spec).decode(BuildView.self)

        // Widening labels or platforms in a poll: 403 naming what widens.
        let widerLabels = try await fixture.poll(
            outsider.secret, platforms: ["linux/amd64"], labels: ["gpu": "none", "pool": "release"])
        #expect(widerLabels.status == 403)
        #expect(widerLabels.error?.message.contains("label pool=release") == true, "\(widerLabels.error?.message ?? "")")
        let widerPlatforms = try await fixture.poll(outsider.secret, platforms: ["linux/amd64", "linux/arm64"])
        #expect(widerPlatforms.status == 403)
        #expect(widerPlatforms.error?.message.contains("linux/arm64") == true, "\(widerPlatforms.error?.message ?? "")")
        // Within what it joined with, it gets nothing: the job is the release pool's.
        let honest = try await fixture.poll(outsider.secret, platforms: ["linux/amd64"], labels: ["gpu": "none"])
        #expect(honest.status == 200)
        #expect(try honest.decode(PollResponse.self).lease == nil)

        // The release pool's platforms bound its agents too.
        let arm = try await Self.join(fixture, token: releaseToken.secret, name: "rel-arm", platforms: ["linux/arm64"])
        #expect(arm.status == 403)
        #expect(arm.error?.message.contains("linux/arm64 is not allowed in pool \"release\"") == true)
        let releaseJoin = try await Self.join(fixture, token: releaseToken.secret, name: "rel-1", platforms: ["linux/amd64"])
        #expect(releaseJoin.status == 201, "\(String(decoding: releaseJoin.body, as: UTF8.self))")
        let release = try releaseJoin.decode(JoinResponse.self)
        #expect(release.labels == ["pool": "release"])
        // The pool's label is imposed: the agent need not repeat it in its polls to keep it.
        let lease = try #require(
            try await fixture.poll(release.secret, platforms: ["linux/amd64"]).decode(PollResponse.self).lease)
        #expect(lease.spec.buildId == build.id)

        let agents = try await fixture.call("GET", "/api/v1/agents", token: admin).decode([AgentView].self)
        #expect(agents.first { $0.name == "rel-1" }?.pool == "release")
        #expect(agents.first { $0.name == "outsider" }?.labels == ["gpu": "none"])
        await fixture.stop()
    }

    /// A join token is used up after its uses and refused after its expiry, with 401 saying which.
    @Test func aReusedOrExpiredJoinTokenIsRefused() async throws {
        let fixture = try await CoordinatorFixture.start()
        let once = try await Self.joinToken(fixture, pool: nil)
        #expect(once.token.usesLeft == 1)
        let expiry = try #require(once.token.expiresAt)
        #expect(abs(expiry.timeIntervalSinceNow - 86_400) < 120, "a join token lasts 24 h by default")
        #expect(try await Self.join(fixture, token: once.secret, name: "first", platforms: ["linux/amd64"]).status == 201)
        let reused = try await Self.join(fixture, token: once.secret, name: "second", platforms: ["linux/amd64"])
        #expect(reused.status == 401)
        #expect(reused.error?.message.contains("used up") == true, "\(reused.error?.message ?? "")")

        let brief = try await Self.joinToken(fixture, pool: nil, uses: 5, expiresInSeconds: 1)
        try await Task.sleep(for: .milliseconds(1_500))
        let late = try await Self.join(fixture, token: brief.secret, name: "late", platforms: ["linux/amd64"])
        #expect(late.status == 401)
        #expect(late.error?.message.contains("expired") == true, "\(late.error?.message ?? "")")

        // A refused join leaves nothing behind.
        let agents = try await fixture.call("GET", "/api/v1/agents", token: fixture.initialisation.adminToken)
            .decode([AgentView].self)
        #expect(Set(agents.map(\.name)) == ["first"])
        let tokens = try await fixture.call("GET", "/api/v1/tokens", token: fixture.initialisation.adminToken)
            .decode([TokenView].self)
        #expect(tokens.first { $0.id == once.token.id }?.usesLeft == 0)
        #expect(tokens.first { $0.id == brief.token.id }?.usesLeft == 5)
        await fixture.stop()
    }

    /// Concurrent joins cannot use a one-use token twice.
    @Test func aOneUseTokenJoinsOneAgentUnderConcurrency() async throws {
        let fixture = try await CoordinatorFixture.start()
        let token = try await Self.joinToken(fixture, pool: nil, uses: 1)
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<8 {
                group.addTask {
                    try await Self.join(fixture, token: token.secret, name: "racer-\(index)", platforms: ["linux/amd64"]).status
                }
            }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(statuses.filter { $0 == 201 }.count == 1, "\(statuses)")
        #expect(statuses.filter { $0 == 401 }.count == 7, "\(statuses)")
        await fixture.stop()
    }

    /// A Windows host's cumulative update changes only the revision of its OS version: its polls still count as
    /// narrowing. Another OS build is a different platform and is refused.
    @Test func aWindowsRevisionUpdateIsNotAWidening() async throws {
        let fixture = try await CoordinatorFixture.start { $0.pollTimeoutSeconds = 1 }
        let agent = try await fixture.joinAgent("win", platforms: ["windows/amd64:10.0.17763.1234"])
        #expect(try await fixture.poll(agent.secret, platforms: ["windows/amd64:10.0.17763.5000"]).status == 200)
        let other = try await fixture.poll(agent.secret, platforms: ["windows/amd64:10.0.20348.1"])
        #expect(other.status == 403)
        #expect(other.error?.message.contains("10.0.20348.1") == true)
        await fixture.stop()
    }

    /// The first join token is documented: pool default, 10 agents, 24 hours.
    @Test func theInitialJoinTokenHasTheDocumentedLimits() async throws {
        let fixture = try await CoordinatorFixture.start(joinTokenUses: Coordinator.defaultInitialJoinTokenUses)
        let tokens = try await fixture.call("GET", "/api/v1/tokens", token: fixture.initialisation.adminToken)
            .decode([TokenView].self)
        let join = try #require(tokens.first { $0.role == .join })
        #expect(join.pool == "default")
        #expect(join.usesLeft == 10)
        #expect(abs((join.expiresAt ?? .distantPast).timeIntervalSinceNow - 86_400) < 120)
        let pools = try await fixture.call("GET", "/api/v1/pools", token: fixture.initialisation.adminToken)
            .decode([PoolView].self)
        #expect(pools.map(\.name) == ["default"])
        #expect(pools[0].labels.isEmpty && pools[0].platforms.isEmpty)
        await fixture.stop()
    }

    /// A pool in use is not removed: its agents and working join tokens are named; once gone, it goes.
    @Test func aPoolInUseIsNotRemoved() async throws {
        let fixture = try await CoordinatorFixture.start()
        let admin = fixture.initialisation.adminToken
        _ = try await Self.createPool(fixture, "arm", labels: ["arch": "arm"], platforms: ["linux/arm64"])
        #expect(
            try await fixture.call(
                "POST", "/api/v1/pools", token: admin, json: CreatePoolRequest(name: "arm", labels: [:], platforms: [])
            ).status == 409)
        let bad = try await fixture.call(
            "POST", "/api/v1/pools", token: admin, json: CreatePoolRequest(name: "x", labels: [:], platforms: ["linux/nope"]))
        #expect(bad.status == 400)
        #expect(bad.error?.field == "platforms[0]")
        let token = try await Self.joinToken(fixture, pool: "arm", uses: 2)
        let withToken = try await fixture.call("DELETE", "/api/v1/pools/arm", token: admin)
        #expect(withToken.status == 409)
        #expect(withToken.error?.message.contains(token.token.id) == true)
        let joined = try await Self.join(fixture, token: token.secret, name: "arm-1", platforms: ["linux/arm64"])
        #expect(joined.status == 201)
        #expect(try await fixture.call("DELETE", "/api/v1/tokens/\(token.token.id)", token: admin).status == 204)
        let withAgent = try await fixture.call("DELETE", "/api/v1/pools/arm", token: admin)
        #expect(withAgent.status == 409)
        #expect(withAgent.error?.message.contains("arm-1") == true)
        #expect(try await fixture.call("DELETE", "/api/v1/agents/arm-1", token: admin).status == 200)
        #expect(try await fixture.call("DELETE", "/api/v1/pools/arm", token: admin).status == 204)
        #expect(try await fixture.call("DELETE", "/api/v1/pools/arm", token: admin).status == 404)
        // A join token for a pool that does not exist is refused.
        let missing = try await fixture.call(
            "POST", "/api/v1/tokens", token: admin, json: CreateTokenRequest(name: "j", role: .join, pool: "arm"))
        #expect(missing.status == 404)
        await fixture.stop()
    }
}
