import Foundation
import ManifoldAPI
import ManifoldCore

/// Who is calling, once a bearer secret's hash matched a token or an agent.
public enum Principal: Sendable, Hashable {
    case user(TokenGrant)
    case agent(id: String, name: String, state: AgentState)
}

/// What a user token allows: its role, and for submitters and viewers the repositories it covers.
public struct TokenGrant: Sendable, Hashable {
    public var tokenId: String
    public var name: String
    public var role: Role
    /// The repositories a submitter or viewer is limited to; nil: every repository (within `allowed_registries`).
    public var repositories: [RepositoryPattern]?
    /// A join token's pool.
    public var pool: String?
    /// When the token stops working; nil: never.
    public var expiresAt: Date?

    public init(
        tokenId: String, name: String, role: Role, repositories: [RepositoryPattern]? = nil, pool: String? = nil,
        expiresAt: Date? = nil
    ) {
        self.tokenId = tokenId
        self.name = name
        self.role = role
        self.repositories = repositories
        self.pool = pool
        self.expiresAt = expiresAt
    }

    /// Whether this token may see and act on builds of `image`: admins always; others when no scope limits them
    /// or one of their patterns covers the image's repository.
    public func covers(image: String) -> Bool {
        guard role != .admin, let repositories else { return true }
        guard let reference = try? ImageReference(parsing: image) else { return false }
        return RepositoryPattern.allows(repositories, reference)
    }

    /// The scopes as shown to users: `*` when unlimited.
    public var scopeDescription: String {
        guard let repositories, role != .admin else { return "*" }
        return repositories.map(\.description).joined(separator: ", ")
    }
}

/// What a new token may do beyond its role.
public struct TokenOptions: Sendable, Hashable {
    /// A join token's pool (must exist).
    public var pool: String?
    public var expiresAt: Date?
    /// How many agents a join token may join; nil: no limit.
    public var uses: Int?
    /// Submitter and viewer scopes; nil or empty: every allowed repository.
    public var repositories: [RepositoryPattern]?

    public init(pool: String? = nil, expiresAt: Date? = nil, uses: Int? = nil, repositories: [RepositoryPattern]? = nil) {
        self.pool = pool
        self.expiresAt = expiresAt
        self.uses = uses
        self.repositories = repositories
    }
}

extension Store {
    /// Stores a new token's hash. The caller generated the secret and shows it once.
    ///
    /// A join token needs a pool that exists; pools, uses and repositories are refused on roles they do not
    /// apply to, so nobody believes a token is narrower than it is.
    @discardableResult
    public func createToken(
        name: String, role: Role, secretHash: String, options: TokenOptions = TokenOptions()
    ) async throws -> TokenView {
        guard !name.trimmingCharacters(in: .whitespaces).isEmpty, name.count <= 200 else {
            throw StoreError.invalid(field: "name", message: "give a name of 1 to 200 characters")
        }
        var options = options
        if role == .join {
            options.pool = options.pool ?? "default"
        } else if let pool = options.pool {
            throw StoreError.invalid(
                field: "pool", message: "pool \"\(pool)\" applies to join tokens only; this token's role is \(role.rawValue)")
        }
        if let uses = options.uses {
            guard role == .join else {
                throw StoreError.invalid(field: "uses", message: "a use count applies to join tokens only")
            }
            guard (1...10_000).contains(uses) else {
                throw StoreError.invalid(field: "uses", message: "uses \(uses) must be 1…10000")
            }
        }
        if let repositories = options.repositories, !repositories.isEmpty {
            guard role == .submitter || role == .viewer else {
                throw StoreError.invalid(
                    field: "repositories",
                    message: "repository scopes apply to submitter and viewer tokens; a \(role.rawValue) token has none")
            }
            guard repositories.count <= 100 else {
                throw StoreError.invalid(field: "repositories", message: "give at most 100 repository patterns")
            }
        } else {
            options.repositories = nil
        }
        if let expiresAt = options.expiresAt, expiresAt <= now() {
            throw StoreError.invalid(field: "expiresInSeconds", message: "the expiry must lie in the future")
        }
        let id = Store.newID("tok")
        let created = now()
        let repositoriesJSON = try options.repositories.map { try Store.json($0.map(\.description)) }
        try await write { [options] db in
            if let pool = options.pool,
                try Bool.fetchOne(db, sql: "SELECT 1 FROM pool WHERE name = ?", arguments: [pool]) != true
            {
                throw StoreError.notFound(kind: "pool", id: pool)
            }
            try db.execute(
                sql: """
                    INSERT INTO token (id, name, role, hash, createdAt, pool, expiresAt, usesLeft, repositories)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    id, name, role.rawValue, secretHash, Store.timestamp(created), options.pool,
                    options.expiresAt.map(Store.timestamp), options.uses, repositoriesJSON,
                ])
        }
        return try await read { db in
            try Self.tokenView(try SQLRow.fetchOne(db, sql: "SELECT * FROM token WHERE id = ?", arguments: [id])!)
        }
    }

    public func listTokens() async throws -> [TokenView] {
        try await read { db in
            try SQLRow.fetchAll(db, sql: "SELECT * FROM token ORDER BY createdAt, id").map(Self.tokenView)
        }
    }

    /// Revokes a token; revoking twice is not an error.
    public func revokeToken(id: String) async throws {
        let at = Store.timestamp(now())
        try await write { db in
            try db.execute(sql: "UPDATE token SET revokedAt = COALESCE(revokedAt, ?) WHERE id = ?", arguments: [at, id])
            guard try db.changesCount > 0 else { throw StoreError.notFound(kind: "token", id: id) }
        }
    }

    /// The principal a secret's hash belongs to: a live user token or a joined agent that has not left; nil when
    /// nothing matches. A token that expired, or a join token that was used up, is refused with
    /// ``StoreError/unauthenticated(_:)`` saying so.
    ///
    /// A read; a token's `lastUsedAt` is refreshed at most once a minute, and a refresh that cannot be written
    /// (full disk) does not refuse the caller, so reads keep working while writes fail.
    public func principal(forSecretHash hash: String) async throws -> Principal? {
        let current = now()
        let at = Store.timestamp(current)
        let (principal, staleToken) = try await read { db -> (Principal?, String?) in
            if let row = try SQLRow.fetchOne(
                db, sql: "SELECT * FROM token WHERE hash = ? AND revokedAt IS NULL", arguments: [hash])
            {
                let grant = try Self.grant(row)
                try Self.checkUsable(row, grant: grant, now: current)
                let lastUsed: Double? = row["lastUsedAt"]
                return (.user(grant), (lastUsed ?? 0) < at - 60 ? grant.tokenId : nil)
            }
            if let row = try SQLRow.fetchOne(
                db, sql: "SELECT id, name, state FROM agent WHERE secretHash = ? AND state != 'left'", arguments: [hash])
            {
                return (.agent(id: row["id"], name: row["name"], state: AgentState(rawValue: row["state"]) ?? .disabled), nil)
            }
            return (nil, nil)
        }
        if let staleToken {
            do {
                try await write { db in
                    try db.execute(sql: "UPDATE token SET lastUsedAt = ? WHERE id = ?", arguments: [at, staleToken])
                }
            } catch StoreError.storageUnavailable {
                // Recorded in writeHealth; the caller is who they say they are all the same.
            }
        }
        return principal
    }

    /// The grant of the live user token `id`: nil when no such token exists or it was revoked; a token that expired
    /// is refused with ``StoreError/unauthenticated(_:)`` as in ``principal(forSecretHash:)``. The dashboard's session
    /// names its token by id and checks it here on every request, so revoking the token ends the session.
    public func grant(tokenId id: String) async throws -> TokenGrant? {
        let current = now()
        return try await read { db -> TokenGrant? in
            guard
                let row = try SQLRow.fetchOne(
                    db, sql: "SELECT * FROM token WHERE id = ? AND revokedAt IS NULL", arguments: [id])
            else { return nil }
            let grant = try Self.grant(row)
            try Self.checkUsable(row, grant: grant, now: current)
            return grant
        }
    }

    /// Refuses a token past its expiry or a join token with no uses left, with a message that says which.
    static func checkUsable(_ row: SQLRow, grant: TokenGrant, now: Date) throws {
        if let expiresAt = grant.expiresAt, expiresAt <= now {
            throw StoreError.unauthenticated(
                "this \(grant.role.rawValue) token (\(grant.tokenId), \"\(grant.name)\") expired at "
                    + "\(expiresAt.formatted(.iso8601)); ask an admin for a new one (manifold token create)")
        }
        if let usesLeft: Int = row["usesLeft"], usesLeft <= 0 {
            throw StoreError.unauthenticated(
                "join token \(grant.tokenId) (\"\(grant.name)\") has been used up: it joined as many agents as it was "
                    + "created for; ask an admin for a new one (manifold token create --role join --pool \(grant.pool ?? "POOL"))"
            )
        }
    }

    static func grant(_ row: SQLRow) throws -> TokenGrant {
        let repositories = try (row["repositories"] as String?).map { text in
            try Store.decode([String].self, text).map { try RepositoryPattern(parsing: $0) }
        }
        return TokenGrant(
            tokenId: row["id"], name: row["name"], role: Role(rawValue: row["role"]) ?? .viewer, repositories: repositories,
            pool: row["pool"], expiresAt: Store.date(row["expiresAt"]))
    }

    static func tokenView(_ row: SQLRow) throws -> TokenView {
        TokenView(
            id: row["id"], name: row["name"], role: Role(rawValue: row["role"]) ?? .viewer,
            createdAt: Store.date(row["createdAt"]) ?? Date(timeIntervalSince1970: 0), lastUsedAt: Store.date(row["lastUsedAt"]),
            revokedAt: Store.date(row["revokedAt"]), expiresAt: Store.date(row["expiresAt"]), pool: row["pool"],
            usesLeft: row["usesLeft"],
            repositories: try (row["repositories"] as String?).map { try Store.decode([String].self, $0) })
    }
}
