import Foundation
import GRDB
import ManifoldAPI

/// Who is calling, once a bearer secret's hash matched a token or an agent.
public enum Principal: Sendable, Hashable {
    case user(tokenId: String, name: String, role: Role)
    case agent(id: String, name: String, state: AgentState)
}

extension Store {
    /// Stores a new token's hash. The caller generated the secret and shows it once.
    @discardableResult
    public func createToken(name: String, role: Role, secretHash: String) async throws -> TokenView {
        guard !name.trimmingCharacters(in: .whitespaces).isEmpty, name.count <= 200 else {
            throw StoreError.invalid(field: "name", message: "give a name of 1 to 200 characters")
        }
        let id = Store.newID("tok")
        let created = now()
        try await write { db in
            try db.execute(
                sql: "INSERT INTO token (id, name, role, hash, createdAt) VALUES (?, ?, ?, ?, ?)",
                arguments: [id, name, role.rawValue, secretHash, Store.timestamp(created)])
        }
        return TokenView(id: id, name: name, role: role, createdAt: created, lastUsedAt: nil, revokedAt: nil)
    }

    public func listTokens() async throws -> [TokenView] {
        try await database.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM token ORDER BY createdAt, id").map(Self.tokenView)
        }
    }

    /// Revokes a token; revoking twice is not an error.
    public func revokeToken(id: String) async throws {
        let at = Store.timestamp(now())
        try await write { db in
            try db.execute(sql: "UPDATE token SET revokedAt = COALESCE(revokedAt, ?) WHERE id = ?", arguments: [at, id])
            guard db.changesCount > 0 else { throw StoreError.notFound(kind: "token", id: id) }
        }
    }

    /// The principal a secret's hash belongs to: a live user token or a joined agent that has not left.
    ///
    /// A read; a token's `lastUsedAt` is refreshed at most once a minute, and a refresh that cannot be written
    /// (full disk) does not refuse the caller, so reads keep working while writes fail.
    public func principal(forSecretHash hash: String) async throws -> Principal? {
        let at = Store.timestamp(now())
        let (principal, staleToken) = try await database.read { db -> (Principal?, String?) in
            if let row = try Row.fetchOne(db, sql: "SELECT * FROM token WHERE hash = ? AND revokedAt IS NULL", arguments: [hash])
            {
                let id: String = row["id"]
                let lastUsed: Double? = row["lastUsedAt"]
                return (
                    .user(tokenId: id, name: row["name"], role: Role(rawValue: row["role"]) ?? .viewer),
                    (lastUsed ?? 0) < at - 60 ? id : nil
                )
            }
            if let row = try Row.fetchOne(
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

    static func tokenView(_ row: Row) -> TokenView {
        TokenView(
            id: row["id"], name: row["name"], role: Role(rawValue: row["role"]) ?? .viewer,
            createdAt: Store.date(row["createdAt"]) ?? Date(timeIntervalSince1970: 0), lastUsedAt: Store.date(row["lastUsedAt"]),
            revokedAt: Store.date(row["revokedAt"]))
    }
}
