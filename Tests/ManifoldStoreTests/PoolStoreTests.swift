import Foundation
import GRDB
import ManifoldAPI
import ManifoldCore
import Testing

@testable import ManifoldStore

/// Pools, token limits and the v5 migration at the store level, with a hand-moved clock.
@Suite struct PoolStoreTests {
    /// A database from before pools: its join tokens belong to `default` and keep working without a use limit,
    /// its agents keep the labels and platforms they had as fixed, and a poll may not widen them.
    @Test func theMigrationPutsExistingTokensAndAgentsIntoTheDefaultPool() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "manifold-v4-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("manifold.db").path
        do {
            let old = try DatabaseQueue(path: path)
            try SQLiteSchema.migrator.migrate(old, upTo: "v4")
            try await old.write { db in
                try db.execute(
                    sql: """
                        INSERT INTO token (id, name, role, hash, createdAt) VALUES ('tok_old', 'old join', 'join', 'h-join', 1);
                        INSERT INTO token (id, name, role, hash, createdAt) VALUES ('tok_sub', 'old ci', 'submitter', 'h-sub', 1);
                        INSERT INTO agent (id, name, secretHash, platforms, labels, builders, state, joinedAt)
                        VALUES ('agt_old', 'old-agent', 'h-agent', '[{"architecture":"amd64","os":"linux"}]', '{"gpu":"yes"}',
                            '["buildah"]', 'active', 1);
                        """)
            }
        }
        let clock = TestClock()
        let store = try Store(path: path, now: { clock.now })
        let tokens = try await store.listTokens()
        #expect(tokens.first { $0.id == "tok_old" }?.pool == "default")
        #expect(tokens.first { $0.id == "tok_old" }?.usesLeft == nil)
        #expect(tokens.first { $0.id == "tok_sub" }?.repositories == nil)
        guard case .user(let grant) = try await store.principal(forSecretHash: "h-join") else {
            Issue.record("the old join token no longer works")
            return
        }
        #expect(grant.pool == "default")
        let agent = try await store.agent(id: "agt_old")
        #expect(agent.pool == "default")
        #expect(agent.labels == ["gpu": "yes"])
        let narrow = PollRequest(
            platforms: [try Platform(parsing: "linux/amd64")], labels: ["gpu": "yes"], builders: ["buildah"], version: "t")
        #expect(try await store.lease(agentId: "agt_old", poll: narrow) == nil)
        var wider = narrow
        wider.labels["pool"] = "release"
        await #expect { try await store.lease(agentId: "agt_old", poll: wider) } throws: {
            "\($0)".contains("label pool=release")
        }
        // The old join token joins into the default pool.
        let joined = try await store.joinAgent(
            JoinRequest(name: "new", platforms: [try Platform(parsing: "linux/arm64")], labels: [:], builders: [], version: "t"),
            secretHash: "h-new", joinTokenId: "tok_old")
        #expect(joined.pool == "default")
    }

    @Test func tokensExpireAndJoinTokensAreUsedUp() async throws {
        let fixture = try await StoreFixture()
        let store = fixture.store
        try await store.createPool(name: "release", labels: ["pool": "release"], platforms: [])
        let token = try await store.createToken(
            name: "j", role: .join, secretHash: "h-j",
            options: TokenOptions(pool: "release", expiresAt: fixture.clock.now.addingTimeInterval(60), uses: 2))
        #expect(token.pool == "release" && token.usesLeft == 2)
        let request = JoinRequest(
            name: "a", platforms: [try Platform(parsing: "linux/amd64")], labels: [:], builders: [], version: "t")
        let first = try await store.joinAgent(request, secretHash: "h-a", joinTokenId: token.id)
        #expect(first.labels == ["pool": "release"])
        var second = request
        second.name = "b"
        _ = try await store.joinAgent(second, secretHash: "h-b", joinTokenId: token.id)
        var third = request
        third.name = "c"
        await #expect { try await store.joinAgent(third, secretHash: "h-c", joinTokenId: token.id) } throws: {
            "\($0)".contains("used up")
        }
        await #expect { try await store.principal(forSecretHash: "h-j") } throws: { "\($0)".contains("used up") }

        let viewer = try await store.createToken(
            name: "v", role: .viewer, secretHash: "h-v",
            options: TokenOptions(expiresAt: fixture.clock.now.addingTimeInterval(60)))
        #expect(try await store.principal(forSecretHash: "h-v") != nil)
        fixture.clock.advance(61)
        await #expect { try await store.principal(forSecretHash: "h-v") } throws: { "\($0)".contains("expired") }
        #expect(viewer.expiresAt != nil)
    }

    @Test func narrowingRules() throws {
        let fixed = [try Platform(parsing: "windows/amd64:10.0.17763.1234"), try Platform(parsing: "linux/arm/v7")]
        func poll(_ platforms: [String], _ labels: [String: String] = [:]) throws -> PollRequest {
            PollRequest(platforms: try platforms.map { try Platform(parsing: $0) }, labels: labels, builders: [], version: "t")
        }
        func narrow(_ request: PollRequest) -> Result<(platforms: [Platform], labels: [String: String]), JoinRefusal> {
            PoolRules.narrow(
                poll: request, fixedPlatforms: fixed, fixedLabels: ["pool": "win", "gpu": "no"], poolLabels: ["pool": "win"],
                agentName: "w")
        }
        // Fewer platforms and labels, or a newer revision of the same Windows build: fine; the pool label stays.
        guard case .success(let offer) = narrow(try poll(["windows/amd64:10.0.17763.9999"])) else {
            Issue.record("a revision update was refused")
            return
        }
        #expect(offer.labels == ["pool": "win"])
        #expect(throws: Never.self) { try narrow(try poll(["linux/arm/v7"], ["gpu": "no"])).get() }
        // Another build, another variant, another label value, a new label: refused.
        #expect(throws: JoinRefusal.self) { try narrow(try poll(["windows/amd64:10.0.20348.1"])).get() }
        #expect(throws: JoinRefusal.self) { try narrow(try poll(["linux/arm/v6"])).get() }
        #expect(throws: JoinRefusal.self) { try narrow(try poll(["linux/arm/v7"], ["gpu": "yes"])).get() }
        #expect(throws: JoinRefusal.self) { try narrow(try poll(["linux/arm/v7"], ["fast": "yes"])).get() }
    }
}
