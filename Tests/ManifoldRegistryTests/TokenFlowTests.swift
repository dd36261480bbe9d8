import Foundation
import Logging
import ManifoldCore
import ManifoldHTTP
import ManifoldTestSupport
import Synchronization
import Testing

@testable import ManifoldRegistry

/// The bearer-token flow against the project's token server and the real registry.
@Suite struct TokenFlowTests {
    @Test func aTokenIsFetchedOncePerScopeAndReused() async throws {
        let fixture = try RegistryFixture(.token)
        let client = try fixture.client()
        try await fixture.push(
            try TestImage.make(os: "linux", architecture: "amd64", format: .oci, layerText: "c"), to: "cache", tag: "t")
        let before = fixture.registry.tokenRequests()
        for _ in 0..<5 {
            #expect(try await client.headManifest(repository: "cache", reference: "t") != nil)
        }
        let after = fixture.registry.tokenRequests()
        // The push fetched one pull token (for its blob checks) and one push token; the HEADs reuse the first.
        #expect(after == before)
        #expect(after.map(\.scopes) == [["repository:cache:pull"], ["repository:cache:pull,push"]])
    }

    @Test func mountsAskForThePushScopeFirst() async throws {
        let fixture = try RegistryFixture(.token)
        let sources = try await fixture.pushPlatformImages(to: "src/app", format: .docker)
        _ = try await ManifestListAssembler(registries: fixture.pool).assemble(
            AssemblyRequest(target: try fixture.reference("dst/app"), tags: ["1"], sources: sources.map { .init(reference: $0) }))
        let scopes = fixture.registry.tokenRequests().map(\.scopes)
        #expect(scopes.contains(["repository:dst/app:pull,push", "repository:src/app:pull"]))
    }

    @Test func aTokenWithoutExpiresInLivesSixtySeconds() async throws {
        let scratch = try ScratchDirectory(prefix: "token-expiry")
        defer { scratch.remove() }
        let port = try Loopback.freePort()
        let server = try TokenServer.start(
            port: port, signingKey: try TokenSigningKey.generate(in: scratch.url), users: [("u", "p")], expiresIn: 0,
            logDirectory: scratch.url)
        defer { server.stop() }

        let clock = Mutex(ContinuousClock.now)
        let http = HTTPClient()
        defer { http.shutdown() }
        let authenticator = Authenticator(
            registry: "r", credential: { .basic(username: "u", password: "p") }, logger: Logger(label: "test"),
            now: { clock.withLock { $0 } }, tokenClient: { _ in http })
        let challenge = AuthChallenge(scheme: "Bearer", parameters: ["realm": "http://127.0.0.1:\(port)/token", "service": "s"])
        let first = try #require(try await authenticator.respond(toChallenges: [challenge], status: 401, scopes: [.pull("a")]))
        #expect(try await authenticator.authorization(for: [.pull("a")]) == first)
        clock.withLock { $0 = $0 + .seconds(45) }
        #expect(try await authenticator.authorization(for: [.pull("a")]) == first)
        #expect(TokenServer.requests(in: server).count == 1)
        clock.withLock { $0 = $0 + .seconds(20) }
        _ = try await authenticator.authorization(for: [.pull("a")])
        #expect(TokenServer.requests(in: server).count == 2)
        // Another scope set is another token.
        _ = try await authenticator.authorization(for: [.push("b")])
        #expect(TokenServer.requests(in: server).count == 3)
    }
}

/// Token requests under load and under failure.
@Suite struct TokenRequestSharingTests {
    @Test func concurrentRequestsForOneScopeShareOneTokenRequest() async throws {
        let fixture = try RegistryFixture(.token)
        try await fixture.push(
            try TestImage.make(os: "linux", architecture: "amd64", format: .oci, layerText: "shared"), to: "seed", tag: "t")
        // A fresh client that has never seen a challenge: all eight requests are refused at first.
        let pool = RegistryClientPool(configuration: RegistryFixture.configuration(for: fixture.registry))
        defer { pool.shutdown() }
        let client = try pool.client(for: fixture.host)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask { _ = try await client.headManifest(repository: "fresh/repo", reference: "t") }
            }
            try await group.waitForAll()
        }
        let requests = fixture.registry.tokenRequests().filter { $0.scopes.contains { $0.contains("fresh/repo") } }
        #expect(requests.count == 1)
        #expect(requests.first?.scopes == ["repository:fresh/repo:pull"])
    }

    @Test func aTokenRequestIsRetriedAfterA503WithRetryAfter() async throws {
        let scratch = try ScratchDirectory(prefix: "token-retry")
        defer { scratch.remove() }
        let port = try Loopback.freePort()
        let server = try TokenServer.start(
            port: port, signingKey: try TokenSigningKey.generate(in: scratch.url), users: [("u", "p")],
            logDirectory: scratch.url)
        defer { server.stop() }
        let proxy = try FaultProxy.start(backend: URL(string: "http://127.0.0.1:\(port)")!)
        defer { proxy.stop() }
        try proxy.setRules([FaultRule(method: "GET", pathRegex: "^/token", status: 503, times: 1, retryAfter: "2")])

        let delays = Mutex<[Duration]>([])
        let retry = RetryPolicy(maxAttempts: 3, sleep: { delay in delays.withLock { $0.append(delay) } })
        let http = HTTPClient()
        defer { http.shutdown() }
        let authenticator = Authenticator(
            registry: "r", credential: { .basic(username: "u", password: "p") }, retry: retry, logger: Logger(label: "test"),
            tokenClient: { _ in http })
        let challenge = AuthChallenge(
            scheme: "Bearer", parameters: ["realm": "\(proxy.baseURL.absoluteString)/token", "service": "s"])
        let authorization = try await authenticator.respond(toChallenges: [challenge], status: 401, scopes: [.pull("a")])
        #expect(authorization?.hasPrefix("Bearer ") == true)
        #expect(delays.withLock { $0 } == [.seconds(2)])
        #expect(proxy.requestLog().map(\.status) == [503, 200])
        #expect(TokenServer.requests(in: server).count == 1)
    }
}
