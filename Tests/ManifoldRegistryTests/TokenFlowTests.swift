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
            registry: "r", credential: .basic(username: "u", password: "p"), logger: Logger(label: "test"),
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
