import Foundation
import ManifoldAPI
import ManifoldCore
import Testing

@testable import ManifoldStore

/// Who may read an uploaded context: contexts are content addressed, so a digest alone must not let one team read
/// another's source. A token reads what it uploaded itself and what builds its scopes cover use; admins everything.
@Suite struct ContextAccessStoreTests {
    static func grant(_ id: String, _ role: Role, _ repositories: [String]? = nil) throws -> TokenGrant {
        TokenGrant(
            tokenId: id, name: id, role: role, repositories: try repositories?.map { try RepositoryPattern(parsing: $0) })
    }

    @Test func aContextIsReadByItsUploadersAndThroughBuildsTheScopesCover() async throws {
        let fixture = try await StoreFixture()
        let teamA = try Self.grant("tok_a", .submitter, ["registry.local/team-a/*"])
        let teamB = try Self.grant("tok_b", .submitter, ["registry.local/team-b/*"])
        let viewerA = try Self.grant("tok_va", .viewer, ["registry.local/team-a/*"])
        let viewerB = try Self.grant("tok_vb", .viewer, ["registry.local/team-b/*"])
        let unscoped = try Self.grant("tok_all", .viewer)
        let admin = try Self.grant("tok_admin", .admin)
        let bytes = Data("team a's source".utf8)
        let digest = Digest.compute(of: bytes)
        func readers() async throws -> Set<String> {
            var allowed: Set<String> = []
            for grant in [teamA, teamB, viewerA, viewerB, unscoped, admin]
            where try await fixture.store.mayReadContext(digest: digest, grant: grant) {
                allowed.insert(grant.tokenId)
            }
            return allowed
        }

        #expect(try await fixture.store.recordContext(digest: digest, size: Int64(bytes.count), uploadedBy: "tok_a") == false)
        #expect(try await readers() == ["tok_a", "tok_admin"])
        // Team B uploads the same bytes: the context was there already, and now team B reads it too.
        #expect(try await fixture.store.recordContext(digest: digest, size: Int64(bytes.count), uploadedBy: "tok_b"))
        #expect(try await readers() == ["tok_a", "tok_b", "tok_admin"])
        // A build of team B's with it: whoever sees that build may read its context.
        _ = try await fixture.store.submitBuild(
            BuildSpec(
                image: "registry.local:5000/team-b/app", tags: ["1"],
                platforms: [PlatformSpec(platform: try Platform(parsing: "linux/amd64"))], context: .upload(digest: digest)),
            submittedBy: "b", token: "tok_b")
        #expect(try await readers() == ["tok_a", "tok_b", "tok_vb", "tok_all", "tok_admin"])
    }

    /// v10 finds the context of every build submitted before it, so whoever sees such a build still reads its
    /// context after the upgrade. (The migration is undone here and run again by reopening the store.)
    @Test func buildsFromBeforeV10KeepTheirContextsReadable() async throws {
        let fixture = try await StoreFixture()
        let build = try await fixture.submit(platforms: ["linux/amd64"])
        let digest = try #require(
            try await fixture.store.backend.read { db in
                try String.fetchOne(db, sql: "SELECT contextDigest FROM build WHERE id = ?", arguments: [build.id])
            })
        try await fixture.store.backend.write { db in
            try db.executeScript(
                """
                DROP INDEX build_context;
                DROP TABLE context_upload;
                ALTER TABLE build DROP COLUMN contextDigest;
                """)
            if db.dialect == .sqlite {
                try db.execute(sql: "DELETE FROM grdb_migrations WHERE identifier = 'v10'")
            } else {
                try db.execute(sql: "DELETE FROM manifold_schema WHERE version = 'v10'")
            }
        }
        let reopened = try await fixture.reopen()
        let backfilled = try await reopened.backend.read { db in
            try String.fetchOne(db, sql: "SELECT contextDigest FROM build WHERE id = ?", arguments: [build.id])
        }
        #expect(backfilled == digest)
        let viewer = try Self.grant("tok_v", .viewer, ["registry.local/team/*"])
        #expect(try await reopened.mayReadContext(digest: try Digest(parsing: digest), grant: viewer))
    }
}
