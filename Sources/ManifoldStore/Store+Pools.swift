import Foundation
import ManifoldAPI
import ManifoldCore

extension Store {
    /// Creates a pool: the labels imposed on every agent that joins it and the platforms they may offer (none
    /// listed: any platform).
    @discardableResult
    public func createPool(name: String, labels: [String: String], platforms: [Platform]) async throws -> PoolView {
        guard Self.isPoolName(name) else {
            throw StoreError.invalid(
                field: "name", message: "pool name \"\(name)\" must be 1–63 lower-case letters, digits, '-' or '_'")
        }
        guard labels.count <= 32, platforms.count <= 64 else {
            throw StoreError.invalid(field: "labels", message: "a pool has at most 32 labels and 64 platforms")
        }
        for (key, value) in labels where key.isEmpty || key.count > 100 || value.count > 200 || key.contains("=") {
            throw StoreError.invalid(
                field: "labels",
                message: "label \"\(key)=\(value)\" needs a key of 1–100 characters without '=' and a value of at most 200")
        }
        let at = Store.timestamp(now())
        let labelsJSON = try Store.json(labels)
        let platformsJSON = try Store.json(platforms.map { $0.normalized().description })
        try await write { db in
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM pool WHERE name = ?", arguments: [name]) == true {
                throw StoreError.conflict("pool \"\(name)\" already exists; remove it first or pick another name")
            }
            try db.execute(
                sql: "INSERT INTO pool (name, labels, platforms, createdAt) VALUES (?, ?, ?, ?)",
                arguments: [name, labelsJSON, platformsJSON, at])
        }
        return try await pool(name: name)
    }

    public func pool(name: String) async throws -> PoolView {
        try await read { db in
            guard let row = try SQLRow.fetchOne(db, sql: "SELECT * FROM pool WHERE name = ?", arguments: [name]) else {
                throw StoreError.notFound(kind: "pool", id: name)
            }
            return try self.poolView(db, row)
        }
    }

    public func listPools() async throws -> [PoolView] {
        try await read { db in
            try SQLRow.fetchAll(db, sql: "SELECT * FROM pool ORDER BY name").map { try self.poolView(db, $0) }
        }
    }

    /// Removes a pool no agent and no working join token uses; otherwise a conflict naming what still uses it.
    public func removePool(name: String) async throws {
        let at = Store.timestamp(now())
        try await write { db in
            guard try Bool.fetchOne(db, sql: "SELECT 1 FROM pool WHERE name = ?", arguments: [name]) == true else {
                throw StoreError.notFound(kind: "pool", id: name)
            }
            let agents = try String.fetchAll(
                db, sql: "SELECT name FROM agent WHERE pool = ? AND state != 'left' ORDER BY name LIMIT 5", arguments: [name])
            if !agents.isEmpty {
                throw StoreError.conflict(
                    "pool \"\(name)\" still has agents (\(agents.joined(separator: ", "))); remove them first "
                        + "(manifold agent remove NAME)")
            }
            let tokens = try String.fetchAll(db, sql: Self.liveJoinTokensSQL("id"), arguments: [name, at])
            if !tokens.isEmpty {
                throw StoreError.conflict(
                    "pool \"\(name)\" still has join tokens that work (\(tokens.prefix(5).joined(separator: ", "))); "
                        + "revoke them first (manifold token revoke ID)")
            }
            // Tokens and agents that are gone keep their history; they no longer point at the pool.
            try db.execute(sql: "UPDATE token SET pool = NULL WHERE pool = ?", arguments: [name])
            try db.execute(sql: "UPDATE agent SET pool = NULL WHERE pool = ?", arguments: [name])
            try db.execute(sql: "DELETE FROM pool WHERE name = ?", arguments: [name])
        }
    }

    static func liveJoinTokensSQL(_ columns: String) -> String {
        """
        SELECT \(columns) FROM token WHERE pool = ? AND role = 'join' AND revokedAt IS NULL
            AND (expiresAt IS NULL OR expiresAt > ?) AND (usesLeft IS NULL OR usesLeft > 0)
        """
    }

    static func isPoolName(_ name: String) -> Bool {
        (1...63).contains(name.count)
            && name.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-" || $0 == "_") }
    }

    func poolView(_ db: SQLTransaction, _ row: SQLRow) throws -> PoolView {
        let name: String = row["name"]
        let agents =
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM agent WHERE pool = ? AND state != 'left'", arguments: [name]) ?? 0
        let tokens =
            try Int.fetchOne(
                db, sql: "SELECT COUNT(*) FROM (\(Self.liveJoinTokensSQL("id"))) AS live",
                arguments: [name, Store.timestamp(now())]) ?? 0
        return PoolView(
            name: name, labels: try Store.decode([String: String].self, row["labels"]),
            platforms: try Store.decode([String].self, row["platforms"]).map { try Platform(parsing: $0) }, agents: agents,
            liveJoinTokens: tokens, createdAt: Store.date(row["createdAt"]) ?? Date(timeIntervalSince1970: 0))
    }

    /// Label keys that some pool imposes, with the pools that impose each: an agent outside those pools may not
    /// carry such a label, or an agent of any pool could claim `pool=release` jobs.
    static func reservedLabelKeys(_ db: SQLTransaction) throws -> [String: [String]] {
        try reservedLabelKeys(SQLRow.fetchAll(db, sql: "SELECT name, labels FROM pool ORDER BY name"))
    }

    /// The label keys each pool reserves, from rows of `SELECT name, labels FROM pool ORDER BY name`.
    static func reservedLabelKeys(_ pools: [SQLRow]) throws -> [String: [String]] {
        var reserved: [String: [String]] = [:]
        for row in pools {
            for key in try Store.decode([String: String].self, row["labels"]).keys {
                reserved[key, default: []].append(row["name"])
            }
        }
        return reserved
    }
}

/// How a pool bounds what its agents offer, and how a poll may narrow (never widen) what was fixed at join.
public enum PoolRules {
    /// The labels an agent gets when it joins `pool` asking for `requested`: the pool's labels are imposed; the
    /// agent's own may add keys that no pool imposes. Returns the refusal as text when there is one.
    public static func joinLabels(
        requested: [String: String], poolName: String, poolLabels: [String: String], reserved: [String: [String]]
    ) -> Result<[String: String], JoinRefusal> {
        var labels = poolLabels
        for key in requested.keys.sorted() {
            let value = requested[key]!
            if let imposed = poolLabels[key] {
                guard imposed == value else {
                    return .failure(
                        JoinRefusal(
                            "label \(key)=\(value) contradicts pool \"\(poolName)\", which gives its agents \(key)=\(imposed); "
                                + "drop --label \(key) or join with a token of the pool you mean"))
                }
                continue
            }
            if let owners = reserved[key] {
                return .failure(
                    JoinRefusal(
                        "label key \"\(key)\" is given only by pool\(owners.count == 1 ? "" : "s") \(owners.joined(separator: ", ")); "
                            + "this token joins pool \"\(poolName)\". Join with a join token of that pool instead"))
            }
            labels[key] = value
        }
        return .success(labels)
    }

    /// Whether every platform is among the pool's allowed ones (none listed: any).
    public static func joinPlatforms(_ platforms: [Platform], poolName: String, allowed: [Platform]) -> JoinRefusal? {
        guard !allowed.isEmpty else { return nil }
        for platform in platforms where !allowed.contains(where: { $0.isSatisfied(by: platform) }) {
            return JoinRefusal(
                "platform \(platform) is not allowed in pool \"\(poolName)\" (allowed: "
                    + "\(allowed.map(\.description).joined(separator: ", "))); offer only those with --platform")
        }
        return nil
    }

    /// Whether `offered` (from a poll) is within `fixed` (from the join): same os/arch/variant, and for an OS
    /// version the same Windows build (`10.0.17763.*`: a cumulative update changes only the revision) or the same
    /// text. Offering no version is narrower and fine.
    public static func isNarrowing(_ offered: Platform, of fixed: Platform) -> Bool {
        guard offered.key == fixed.key else { return false }
        guard let version = offered.osVersion, let fixedVersion = fixed.osVersion else { return true }
        if let build = Platform.windowsBuild(version), let fixedBuild = Platform.windowsBuild(fixedVersion) {
            return build == fixedBuild
        }
        return version == fixedVersion
    }

    /// What a poll offers, checked against what was fixed at join: every platform and label must be among those
    /// fixed, and the pool's labels always stay. Returns the labels and platforms to match jobs with, or the
    /// refusal naming the first platform or label that widens.
    public static func narrow(
        poll: PollRequest, fixedPlatforms: [Platform], fixedLabels: [String: String], poolLabels: [String: String],
        agentName: String
    ) -> Result<(platforms: [Platform], labels: [String: String]), JoinRefusal> {
        for platform in poll.platforms.map({ $0.normalized() })
        where !fixedPlatforms.contains(where: { isNarrowing(platform, of: $0.normalized()) }) {
            return .failure(
                JoinRefusal(
                    "agent \(agentName) offers platform \(platform), which it did not join with (joined with "
                        + "\(fixedPlatforms.map(\.description).joined(separator: ", "))); a poll may narrow the platforms, "
                        + "never widen them. Offer only those, or remove the agent and join it again"))
        }
        for key in poll.labels.keys.sorted() where fixedLabels[key] != poll.labels[key] {
            let had = fixedLabels[key].map { "\(key)=\($0)" } ?? "no label \(key)"
            return .failure(
                JoinRefusal(
                    "agent \(agentName) offers label \(key)=\(poll.labels[key]!), but it joined with \(had); a poll may "
                        + "narrow the labels, never widen them. Remove the agent and join it again with that label"))
        }
        return .success((poll.platforms.map { $0.normalized() }, poll.labels.merging(poolLabels) { _, imposed in imposed }))
    }
}

/// Why a join or poll is refused: the label or platform that is not allowed, and what to do.
public struct JoinRefusal: Error, Sendable, Hashable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
