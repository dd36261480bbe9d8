import Foundation
import ManifoldAPI
import ManifoldCore

extension Store {
    /// Registers an agent under `name` in the join token's pool (`default` when an admin joins it), using up one
    /// of the token's uses in the same transaction.
    ///
    /// The pool's labels are imposed, the agent's own labels may only add keys no pool imposes, and its platforms
    /// must be among the pool's: all of that is fixed now, and later polls may only narrow it.
    public func joinAgent(_ request: JoinRequest, secretHash: String, joinTokenId: String? = nil) async throws -> AgentView {
        let name = request.name.trimmingCharacters(in: .whitespaces)
        guard !name.isEmpty, name.count <= 100,
            name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." })
        else {
            throw StoreError.invalid(field: "name", message: "\"\(request.name)\" must be 1–100 letters, digits, '-', '_' or '.'")
        }
        guard !request.platforms.isEmpty else {
            throw StoreError.invalid(field: "platforms", message: "an agent must offer at least one platform")
        }
        guard request.platforms.count <= 64, request.labels.count <= 64 else {
            throw StoreError.invalid(field: "platforms", message: "an agent offers at most 64 platforms and 64 labels")
        }
        let id = Store.newID("agt")
        let joined = now()
        let platformList = request.platforms.map { $0.normalized() }
        let platforms = try Store.json(platformList)
        let builders = try Store.json(request.builders)
        try await write { db in
            var poolName = "default"
            if let joinTokenId {
                guard let token = try SQLRow.fetchOne(db, sql: "SELECT * FROM token WHERE id = ?", arguments: [joinTokenId]),
                    (token["revokedAt"] as Double?) == nil
                else { throw StoreError.unauthenticated("the join token was revoked meanwhile") }
                try Self.checkUsable(token, grant: try Self.grant(token), now: joined)
                guard let pool: String = token["pool"] else {
                    throw StoreError.unauthenticated(
                        "join token \(joinTokenId) belongs to no pool (its pool was removed); ask an admin for a new one")
                }
                poolName = pool
            }
            guard let pool = try SQLRow.fetchOne(db, sql: "SELECT * FROM pool WHERE name = ?", arguments: [poolName]) else {
                throw StoreError.notFound(kind: "pool", id: poolName)
            }
            let poolLabels = try Store.decode([String: String].self, pool["labels"])
            let allowed = try Store.decode([String].self, pool["platforms"]).map { try Platform(parsing: $0) }
            if let refusal = PoolRules.joinPlatforms(platformList, poolName: poolName, allowed: allowed) {
                throw StoreError.forbidden(refusal.description)
            }
            let labels: [String: String]
            switch PoolRules.joinLabels(
                requested: request.labels, poolName: poolName, poolLabels: poolLabels, reserved: try Self.reservedLabelKeys(db))
            {
            case .success(let granted): labels = granted
            case .failure(let refusal): throw StoreError.forbidden(refusal.description)
            }
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM agent WHERE name = ? AND state != 'left'", arguments: [name]) == true {
                throw StoreError.conflict(
                    "an agent named \"\(name)\" has already joined; pick another --name, or remove the old one first "
                        + "(manifold agent disable \(name), then the old host runs `manifold-agent leave`)")
            }
            if let joinTokenId {
                try db.execute(
                    sql: "UPDATE token SET usesLeft = usesLeft - 1 WHERE id = ? AND usesLeft IS NOT NULL",
                    arguments: [joinTokenId])
            }
            let labelsJSON = try Store.json(labels)
            try db.execute(
                sql: """
                    INSERT INTO agent (id, name, secretHash, platforms, labels, builders, version, protocolVersion, state, joinedAt,
                        lastSeenAt, pool, fixedPlatforms, fixedLabels)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'active', ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    id, name, secretHash, platforms, labelsJSON, builders, request.version, request.protocolVersion,
                    Store.timestamp(joined), Store.timestamp(joined), poolName, platforms, labelsJSON,
                ])
        }
        return try await agent(id: id)
    }

    /// What a polling agent offers, with its name and state: one read of the agent's row joined with every pool (its
    /// own pool's labels and the keys other pools reserve). The offer is the poll's platforms and labels when they
    /// narrow what the agent was given at join (a widening poll is refused as forbidden, naming the platform or label),
    /// plus the pool's labels. A label key that a pool other than the agent's imposes never counts (the agent may have
    /// carried it since before that pool existed).
    ///
    /// With `heldSince`, the same statement also reads the agent's oldest grant that it has not confirmed, started
    /// after `heldSince` (``PollingAgent/held``): a lease needs all three, and inside a write each read is a round trip
    /// while the writers' lock is held.
    func pollingAgent(_ db: SQLTransaction, agentId: String, poll: PollRequest, heldSince: Double? = nil) throws -> PollingAgent {
        var arguments: SQLArguments = []
        var held = ""
        var heldColumns = ""
        if let heldSince {
            held = """
                LEFT JOIN (
                    SELECT attempt.epoch, attempt.number, attempt.pushTag, attempt.jobId, job.buildId FROM attempt
                    JOIN job ON job.id = attempt.jobId AND job.currentEpoch = attempt.epoch
                    WHERE attempt.agentId = ? AND attempt.state = 'running' AND attempt.acknowledgedAt IS NULL
                        AND attempt.startedAt > ? AND attempt.cancelRequested = 0
                    ORDER BY attempt.epoch LIMIT 1
                ) AS held ON 1 = 1
                """
            heldColumns =
                ", held.epoch AS heldEpoch, held.number AS heldNumber, held.pushTag AS heldPushTag, "
                + "held.jobId AS heldJobId, held.buildId AS heldBuildId"
            arguments = [agentId, heldSince]
        }
        arguments.append(agentId)
        // One row per pool (the agent's columns repeated; pools are few), or one with NULL pool columns when there is
        // none.
        let rows = try SQLRow.fetchAll(
            db,
            sql: """
                SELECT agent.*, pool.name AS poolRowName, pool.labels AS poolRowLabels\(heldColumns)
                FROM agent LEFT JOIN pool ON 1 = 1 \(held)
                WHERE agent.id = ? ORDER BY pool.name
                """, arguments: arguments)
        guard let agent = rows.first else { throw StoreError.notFound(kind: "agent", id: agentId) }
        let pools = rows.compactMap { row -> SQLRow? in
            guard let name = row["poolRowName"] as String? else { return nil }
            return SQLRow(columns: ["name", "labels"], values: [.text(name), row.value("poolRowLabels")])
        }
        let reserved = try Self.reservedLabelKeys(pools)
        let poolName: String? = agent["pool"]
        let poolLabels =
            try pools.first { poolName != nil && ($0["name"] as String) == poolName }
            .map { try Store.decode([String: String].self, $0["labels"]) } ?? [:]
        let fixedPlatforms = try Store.decode([Platform].self, (agent["fixedPlatforms"] as String?) ?? agent["platforms"])
        let fixedLabels = try Store.decode([String: String].self, (agent["fixedLabels"] as String?) ?? agent["labels"])
        switch PoolRules.narrow(
            poll: poll, fixedPlatforms: fixedPlatforms, fixedLabels: fixedLabels.merging(poolLabels) { _, imposed in imposed },
            poolLabels: poolLabels, agentName: agent["name"])
        {
        case .failure(let refusal): throw StoreError.forbidden(refusal.description)
        case .success(let offer):
            return PollingAgent(
                platforms: offer.platforms,
                labels: offer.labels.filter { reserved[$0.key] == nil || poolLabels[$0.key] != nil },
                name: agent["name"], state: AgentState(rawValue: agent["state"]), row: agent,
                held: heldSince == nil || (agent["heldEpoch"] as Int64?) == nil
                    ? nil
                    : SQLRow(
                        columns: ["epoch", "number", "pushTag", "jobId", "buildId"],
                        values: [
                            agent.value("heldEpoch"), agent.value("heldNumber"), agent.value("heldPushTag"),
                            agent.value("heldJobId"), agent.value("heldBuildId"),
                        ]))
        }
    }

    public func agent(id: String) async throws -> AgentView {
        try await read { db in
            guard let row = try SQLRow.fetchOne(db, sql: "SELECT * FROM agent WHERE id = ?", arguments: [id]) else {
                throw StoreError.notFound(kind: "agent", id: id)
            }
            return try Self.agentView(row, db: db)
        }
    }

    public func listAgents(includeLeft: Bool = false) async throws -> [AgentView] {
        try await read { db in
            let sql =
                includeLeft ? "SELECT * FROM agent ORDER BY name" : "SELECT * FROM agent WHERE state != 'left' ORDER BY name"
            return try SQLRow.fetchAll(db, sql: sql).map { try Self.agentView($0, db: db) }
        }
    }

    /// Sets an agent's state by name or id (`draining`, `disabled`, `active`).
    ///
    /// A draining agent finishes its current job and takes no more. Disabling takes its current job away at once:
    /// the attempt is lost (not counted against the job's attempts) and the job goes back to the queue, so
    /// every later call the agent makes about it is refused as stale.
    @discardableResult
    public func setAgentState(_ nameOrId: String, to state: AgentState) async throws -> AgentView {
        guard state != .left else {
            throw StoreError.invalid(
                field: "state", message: "\"left\" is set by the agent itself; use active, draining or disabled")
        }
        let at = now()
        let id = try await write { db -> String in
            guard
                let id = try String.fetchOne(
                    db, sql: "SELECT id FROM agent WHERE (id = ? OR name = ?) AND state != 'left'",
                    arguments: [nameOrId, nameOrId])
            else { throw StoreError.notFound(kind: "agent", id: nameOrId) }
            try db.execute(sql: "UPDATE agent SET state = ? WHERE id = ?", arguments: [state.rawValue, id])
            if state == .disabled {
                try self.revokeAttempts(db, agentId: id, reason: "the agent was disabled by an admin", counted: false, at: at)
            }
            return id
        }
        return try await agent(id: id)
    }

    /// Removes an agent (admin): its credential stops working at once (401), and its running job goes back to
    /// the queue without using an attempt. A host that should build again joins anew.
    @discardableResult
    public func removeAgent(_ nameOrId: String) async throws -> AgentView {
        let at = now()
        let id = try await write { db -> String in
            guard
                let id = try String.fetchOne(
                    db, sql: "SELECT id FROM agent WHERE (id = ? OR name = ?) AND state != 'left'",
                    arguments: [nameOrId, nameOrId])
            else { throw StoreError.notFound(kind: "agent", id: nameOrId) }
            try db.execute(sql: "UPDATE agent SET state = 'left' WHERE id = ?", arguments: [id])
            try self.revokeAttempts(db, agentId: id, reason: "an admin removed the agent", counted: false, at: at)
            return id
        }
        return try await agent(id: id)
    }

    /// How stale an agent's last-seen time may get before a poll writes it again, in seconds: the API shows it to the
    /// second.
    static let lastSeenResolution: Double = 1

    /// Records that agent `id` was seen now and, with `poll`, what it offers. With the agent's `stored` row (read in the
    /// same transaction), nothing is written when the row already says all of it and was written less than
    /// ``lastSeenResolution`` ago: an agent that polls again right after a report costs its next lease no update.
    func touchAgent(
        _ db: SQLTransaction, id: String, poll: PollRequest?, labels: [String: String]? = nil, stored: SQLRow? = nil
    ) throws {
        if let poll {
            let at = now()
            if let stored, try Self.agentRow(stored, records: poll, labels: labels ?? poll.labels, at: at) { return }
            let platforms = try Store.json(poll.platforms.map { $0.normalized() })
            let labels = try Store.json(labels ?? poll.labels)
            let builders = try Store.json(poll.builders)
            try db.execute(
                sql:
                    "UPDATE agent SET platforms = ?, labels = ?, builders = ?, version = ?, protocolVersion = ?, lastSeenAt = ? WHERE id = ?",
                arguments: [platforms, labels, builders, poll.version, poll.protocolVersion, Store.timestamp(at), id])
        } else {
            try db.execute(sql: "UPDATE agent SET lastSeenAt = ? WHERE id = ?", arguments: [Store.timestamp(now()), id])
        }
    }

    /// Whether an agent's `stored` row already says all that `poll` (with the `labels` it was narrowed to) would write,
    /// and was written less than ``lastSeenResolution`` before `at`.
    static func agentRow(_ stored: SQLRow, records poll: PollRequest, labels: [String: String], at: Date) throws -> Bool {
        guard let seen = stored["lastSeenAt"] as Double?, Store.timestamp(at) - seen < lastSeenResolution else { return false }
        return try stored["platforms"] as String == Store.json(poll.platforms.map { $0.normalized() })
            && stored["labels"] as String == Store.json(labels) && stored["builders"] as String == Store.json(poll.builders)
            && stored["version"] as String? == poll.version && stored["protocolVersion"] as Int? == poll.protocolVersion
    }

    static func agentView(_ row: SQLRow, db: SQLTransaction) throws -> AgentView {
        let id: String = row["id"]
        let current = try String.fetchOne(
            db,
            sql: """
                SELECT job.buildId || '/' || job.platform FROM attempt JOIN job ON job.id = attempt.jobId
                WHERE attempt.agentId = ? AND attempt.state = 'running' ORDER BY attempt.epoch DESC LIMIT 1
                """, arguments: [id])
        return AgentView(
            id: id, name: row["name"], platforms: try Store.decode([Platform].self, row["platforms"]),
            labels: try Store.decode([String: String].self, row["labels"]),
            builders: try Store.decode([String].self, row["builders"]),
            version: row["version"], state: AgentState(rawValue: row["state"]) ?? .disabled, currentJob: current,
            joinedAt: Store.date(row["joinedAt"]) ?? Date(timeIntervalSince1970: 0), lastSeenAt: Store.date(row["lastSeenAt"]),
            pool: row["pool"])
    }
}

/// A polling agent as a lease sees it: what it offers now, and who it is.
struct PollingAgent {
    var platforms: [Platform]
    var labels: [String: String]
    var name: String
    /// Nil for a state this version does not know (never leased to).
    var state: AgentState?
    /// The agent's row as read.
    var row: SQLRow
    /// The grant read with `heldSince` (columns `epoch`, `number`, `pushTag`, `jobId`, `buildId`), if any.
    var held: SQLRow? = nil
}
