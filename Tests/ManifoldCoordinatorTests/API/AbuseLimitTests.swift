import Foundation
import ManifoldAPI
import ManifoldCore
import ManifoldHTTP
import ManifoldTestSupport
import Synchronization
import Testing

@testable import ManifoldCoordinator

/// Limits against abuse with a valid token or none: failed authentications per address, platforms per build,
/// unfinished builds and open streams per token; a revoked token's open streams end.
@Suite struct AbuseLimitTests {
    /// After the limit of failed authentications from one address, every request from it gets 429 with
    /// Retry-After, before any token is looked up (a valid one too), until the minute is over.
    @Test func failedAuthenticationsFromOneAddressAreLimited() async throws {
        let fixture = try await CoordinatorFixture.start { $0.authFailuresPerMinute = 5 }
        let viewer = try await fixture.token(.viewer)
        for _ in 0..<5 {
            #expect(try await fixture.call("GET", "/api/v1/builds", token: "mfd_viewer_guess").status == 401)
        }
        let blocked = try await fixture.call("GET", "/api/v1/builds", token: "mfd_viewer_guess")
        #expect(blocked.status == 429)
        #expect(blocked.error?.message.contains("auth_failures_per_minute") == true)
        let retryAfter = try #require(blocked.headers["Retry-After"].flatMap { Int($0) })
        #expect((1...60).contains(retryAfter))
        #expect(try await fixture.call("GET", "/api/v1/builds", token: viewer).status == 429)
        #expect(try await fixture.call("GET", "/api/v1/builds", token: nil).status == 429)
        // Health stays open.
        #expect(try await fixture.call("GET", "/healthz", token: nil).status == 200)
        await fixture.stop()
    }

    @Test func theFailureLimiterForgetsAfterItsWindowAndStaysBounded() {
        let limiter = AuthFailureLimiter(limit: 2, window: .seconds(60), capacity: 100)
        let start = ContinuousClock.now
        limiter.recordFailure("192.0.2.1", now: start)
        #expect(limiter.retryAfter("192.0.2.1", now: start) == nil)
        limiter.recordFailure("192.0.2.1", now: start)
        #expect(limiter.retryAfter("192.0.2.1", now: start + .seconds(1)) == 59)
        #expect(limiter.retryAfter("192.0.2.2", now: start) == nil)
        #expect(limiter.retryAfter("192.0.2.1", now: start + .seconds(61)) == nil)
        for index in 0..<10_000 { limiter.recordFailure("2001:db8::\(index)", now: start) }
        #expect(limiter.trackedAddresses <= 100)
    }

    @Test func platformsPerBuildAndUnfinishedBuildsPerTokenAreCapped() async throws {
        let fixture = try await CoordinatorFixture.start { settings in
            settings.maxPlatformsPerBuild = 2
            settings.maxQueuedBuildsPerToken = 2
        }
        let submitter = try await fixture.token(.submitter)
        let digest = try await fixture.uploadContext(submitter)
        let wide = BuildSpec(
            image: "127.0.0.1:1/team/app", tags: ["1.0"],
            platforms: try ["linux/amd64", "linux/arm64", "linux/arm/v7"].map {
                PlatformSpec(platform: try Platform(parsing: $0))
            },
            context: .upload(digest: digest))
        let refused = try await fixture.call("POST", "/api/v1/builds", token: submitter, json: wide)
        #expect(refused.status == 400)
        #expect(
            refused.error?.message.contains("at most 2") == true
                && refused.error?.message.contains("max_platforms_per_build") == true)

        let first = try await fixture.submit(submitter, image: "127.0.0.1:1/team/app", platforms: ["linux/amd64"])
        _ = try await fixture.submit(submitter, image: "127.0.0.1:1/team/app", platforms: ["linux/amd64"])
        let third = try await fixture.call(
            "POST", "/api/v1/builds", token: submitter,
            json: BuildSpec(
                image: "127.0.0.1:1/team/app", tags: ["1.0"],
                platforms: [PlatformSpec(platform: try Platform(parsing: "linux/amd64"))],
                context: .upload(digest: digest)))
        #expect(third.status == 429)
        #expect(third.error?.message.contains("max_queued_builds_per_token = 2") == true, "\(third.error?.message ?? "")")
        // Another token has its own quota; a finished build frees a place.
        _ = try await fixture.submit(
            try await fixture.token(.submitter), image: "127.0.0.1:1/team/app", platforms: ["linux/amd64"])
        #expect(try await fixture.call("POST", "/api/v1/builds/\(first.id)/cancel", token: submitter).status == 200)
        _ = try await fixture.submit(submitter, image: "127.0.0.1:1/team/app", platforms: ["linux/amd64"])
        await fixture.stop()
    }

    /// The attack: filling the cap on unfinished builds with finished ones and retrying them, which reopens them
    /// past it. A retry of a finished build counts like a submission: refused with 429 naming the limit, nothing
    /// changed; within the limit it works, and a build reopened by another token counts against that token.
    @Test func retryingFinishedBuildsCannotPassTheCapOnUnfinishedBuilds() async throws {
        let fixture = try await CoordinatorFixture.start { settings in
            settings.maxQueuedBuildsPerToken = 2
            settings.pollTimeoutSeconds = 1
        }
        let submitter = try await fixture.token(.submitter)
        let agent = try await fixture.joinAgent("failing", platforms: ["linux/amd64"])
        var finished: [BuildView] = []
        for _ in 0..<3 {
            let build = try await fixture.submit(
                submitter, image: "127.0.0.1:1/team/app", platforms: ["linux/amd64"], maxAttempts: 1)
            let lease = try #require(
                try await fixture.poll(agent.secret, platforms: ["linux/amd64"]).decode(PollResponse.self).lease)
            let failed = try await fixture.call(
                "POST", "/api/v1/agent/complete", token: agent.secret,
                json: CompleteRequest(jobId: lease.jobId, epoch: lease.epoch, outcome: .failed, exitCode: 1, reason: "broken"))
            #expect(failed.status == 200)
            finished.append(try await fixture.waitForBuild(build.id, token: submitter) { $0.state.isFinal })
        }
        #expect(finished.allSatisfy { $0.state == .failed }, "\(finished.map(\.state))")
        let retry = RetryRequest(platform: "linux/amd64")
        for build in finished.prefix(2) {
            let reopened = try await fixture.call("POST", "/api/v1/builds/\(build.id)/retry", token: submitter, json: retry)
            #expect(reopened.status == 200)
        }
        let refused = try await fixture.call("POST", "/api/v1/builds/\(finished[2].id)/retry", token: submitter, json: retry)
        #expect(refused.status == 429)
        #expect(
            refused.error?.message.contains("max_queued_builds_per_token = 2") == true, "\(refused.error?.message ?? "")")
        let untouched = try await fixture.build(finished[2].id, token: submitter)
        #expect(untouched.state == .failed && untouched.jobs[0].state == .failed, "\(untouched)")
        #expect(untouched.finishedAt == finished[2].finishedAt)

        // Another token reopens it within its own quota, and is charged for it: one more submission fills its cap.
        let other = try await fixture.token(.submitter)
        #expect(try await fixture.call("POST", "/api/v1/builds/\(finished[2].id)/retry", token: other, json: retry).status == 200)
        _ = try await fixture.submit(other, image: "127.0.0.1:1/team/app", platforms: ["linux/amd64"])
        let overOther = try await fixture.call(
            "POST", "/api/v1/builds", token: other,
            json: BuildSpec(
                image: "127.0.0.1:1/team/app", tags: ["1.0"],
                platforms: [PlatformSpec(platform: try Platform(parsing: "linux/amd64"))],
                context: .upload(digest: try await fixture.uploadContext(other))))
        #expect(overOther.status == 429)
        await fixture.stop()
    }

    /// Reads a stream to its end in the background and remembers that it ended.
    final class StreamWatch: Sendable {
        private let ended = Mutex<ContinuousClock.Instant?>(nil)

        static func start(_ stream: HTTPStreamingResponse) -> StreamWatch {
            let watch = StreamWatch()
            Task {
                do { for try await _ in stream.body {} } catch {}
                watch.ended.withLock { $0 = .now }
            }
            return watch
        }

        var hasEnded: Bool { ended.withLock { $0 != nil } }

        /// Waits up to `limit` for the end; true when it ended.
        func waitForEnd(within limit: Duration) async -> Bool {
            let deadline = ContinuousClock.now + limit
            while ContinuousClock.now < deadline {
                if hasEnded { return true }
                try? await Task.sleep(for: .milliseconds(50))
            }
            return hasEnded
        }
    }

    @Test func openStreamsPerTokenAreCappedAndARevokedTokensStreamsEnd() async throws {
        let fixture = try await CoordinatorFixture.start { $0.maxStreamsPerToken = 2 }
        let submitter = try await fixture.token(.submitter)
        let build = try await fixture.submit(submitter, image: "127.0.0.1:1/team/app", platforms: ["linux/amd64"])
        let created = try await fixture.call(
            "POST", "/api/v1/tokens", token: fixture.initialisation.adminToken,
            json: CreateTokenRequest(name: "dashboard", role: .viewer)
        ).decode(CreatedToken.self)
        let events = try await fixture.openStream("/api/v1/builds/\(build.id)/events", token: created.secret)
        #expect(events.status == 200)
        let logs = try await fixture.openStream(
            "/api/v1/builds/\(build.id)/logs?platform=linux/amd64&follow=true", token: created.secret)
        #expect(logs.status == 200)
        let third = try await fixture.call("GET", "/api/v1/builds/\(build.id)/events", token: created.secret)
        #expect(third.status == 429)
        #expect(third.error?.message.contains("max_streams_per_token") == true)
        // Other tokens are not affected.
        let other = try await fixture.openStream("/api/v1/builds/\(build.id)/events", token: submitter)
        #expect(other.status == 200)

        // Both streams stay open (the build is queued) until the token is revoked; then they end promptly.
        let watches = [StreamWatch.start(events), StreamWatch.start(logs), StreamWatch.start(other)]
        try await Task.sleep(for: .milliseconds(500))
        #expect(!watches.contains { $0.hasEnded })
        #expect(
            try await fixture.call("DELETE", "/api/v1/tokens/\(created.token.id)", token: fixture.initialisation.adminToken)
                .status == 204)
        #expect(await watches[0].waitForEnd(within: .seconds(5)), "the event stream stayed open after the token was revoked")
        #expect(await watches[1].waitForEnd(within: .seconds(5)), "the log follow stayed open after the token was revoked")
        // The other token's stream goes on.
        #expect(!watches[2].hasEnded)
        await fixture.stop()
    }

    /// A slot is given back when its stream ends, so a client that closes streams can open new ones.
    @Test func aClosedStreamGivesItsSlotBack() async throws {
        let registry = StreamRegistry(limit: 1)
        var slot: StreamSlot? = try registry.open(tokenId: "tok_a", expiresAt: nil)
        #expect(throws: APIError.self) { try registry.open(tokenId: "tok_a", expiresAt: nil) }
        #expect(registry.openCount("tok_a") == 1)
        #expect(slot?.isOver == false)
        slot = nil
        #expect(registry.openCount("tok_a") == 0)
        let expired = try registry.open(tokenId: "tok_a", expiresAt: Date(timeIntervalSinceNow: -1))
        #expect(expired.isOver)
    }
}
