import Foundation
import ManifoldAPI
import ManifoldCore

/// Filters and paging for `listBuilds`.
public struct BuildQuery: Sendable {
    public var state: BuildState?
    public var image: String?
    /// Builds submitted before this build (by submission order), for paging backwards.
    public var before: String?
    public var limit: Int
    /// Only builds whose image this accepts (a token's repository scopes); nil: every build.
    public var visible: (@Sendable (String) -> Bool)?

    public init(
        state: BuildState? = nil, image: String? = nil, before: String? = nil, limit: Int = 50,
        visible: (@Sendable (String) -> Bool)? = nil
    ) {
        self.visible = visible
        self.state = state
        self.image = image
        self.before = before
        self.limit = limit
    }
}

extension Store {
    /// Records a validated build, one queued job per platform, and its first event.
    ///
    /// With `token` and `maxUnfinished`, a token that already has that many unfinished builds is refused
    /// (``StoreError/quotaExceeded(_:)``), counted in the same transaction so a burst cannot slip past.
    ///
    /// `traceparent` is the W3C trace context of the build's root span (tracing on), stored for ``traceContext(buildId:)``.
    /// `committed` runs with the new build's id once it is stored, before the view is read back: held polls can be woken
    /// from there without waiting for that read.
    public func submitBuild(
        _ spec: BuildSpec, submittedBy: String?, token: String? = nil, maxUnfinished: Int? = nil, traceparent: String? = nil,
        committed: @Sendable (String) -> Void = { _ in }
    ) async throws -> BuildView {
        do { try spec.validate() } catch { throw StoreError.invalid(field: error.field, message: error.message) }
        let id = Store.newID("bld")
        let at = Store.timestamp(now())
        let maxAttempts = spec.maxAttempts ?? settings.defaultMaxAttempts
        // The stored spec has no secret values; they are sealed here, before the write transaction.
        let (spec, secrets) = spec.separatingSecrets()
        let sealed = secrets.isEmpty ? nil : try seal(secrets, buildId: id)
        let secretNames = secrets.isEmpty ? nil : try Store.json(secrets.keys.sorted())
        let contextDigest: String? = if case .upload(let digest) = spec.context { digest.description } else { nil }
        // Beside other writes on PostgreSQL: the new build's rows are its own, the context's row is only touched (its
        // removal is an ordinary write), and of other builds only the token's unfinished ones are counted.
        try await write(.submission(token: maxUnfinished == nil ? nil : token)) { db in
            if let token, let maxUnfinished { try Self.checkUnfinished(db, token: token, limit: maxUnfinished, doing: "submit") }
            if case .upload(let digest) = spec.context,
                try Bool.fetchOne(db, sql: "SELECT 1 FROM context WHERE digest = ?", arguments: [digest.description]) != true
            {
                throw StoreError.invalid(
                    field: "context.digest",
                    message: "no uploaded context has digest \(digest); upload it first (PUT /api/v1/contexts/\(digest))")
            }
            if case .upload(let digest) = spec.context {
                try db.execute(sql: "UPDATE context SET lastUsedAt = ? WHERE digest = ?", arguments: [at, digest.description])
            }
            guard
                let buildSeq = try Int64.fetchOne(
                    db,
                    sql: """
                        INSERT INTO build (id, image, spec, secretNames, state, submittedBy, submittedByToken, contextDigest,
                            createdAt, updatedAt, traceparent)
                        VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?) RETURNING seq
                        """,
                    arguments: [
                        id, spec.image, try Store.json(spec), secretNames, submittedBy, token, contextDigest,
                        at, at, traceparent,
                    ])
            else { throw SQLError.other("inserting build \(id) returned no sequence number") }
            if let sealed {
                try db.execute(sql: "INSERT INTO build_secret (buildId, sealed) VALUES (?, ?)", arguments: [id, sealed])
            }
            for platformSpec in spec.platforms {
                let platform = platformSpec.platform.normalized()
                try db.execute(
                    sql: """
                        INSERT INTO job (id, buildId, buildSeq, platformKey, platform, spec, state, maxAttempts, notBefore)
                        VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?)
                        """,
                    arguments: [
                        Store.newID("job"), id, buildSeq, Self.platformKey(platform), platform.description,
                        try Store.json(
                            PlatformSpec(
                                platform: platform, dockerfile: platformSpec.dockerfile, buildArgs: platformSpec.buildArgs,
                                agentLabels: platformSpec.agentLabels)),
                        maxAttempts, at,
                    ])
            }
            try appendEvent(
                db, buildId: id, type: "build.submitted",
                data: [
                    "image": spec.image, "tags": spec.tags.joined(separator: ","),
                    "platforms": spec.platforms.map(\.platform.description).joined(separator: ","),
                ])
        }
        committed(id)
        return try await build(id: id)
    }

    /// The W3C trace context stored with build `buildId` at submission; nil when the build was submitted with tracing
    /// off, or is gone.
    public func traceContext(buildId: String) async throws -> String? {
        try await backend.read { db in
            try String.fetchOne(db, sql: "SELECT traceparent FROM build WHERE id = ?", arguments: [buildId])
        }
    }

    /// The trace context of job `jobId`'s build and when the job last became ready to lease (submitted, or due again
    /// after a retry's backoff): the start of its wait in the queue.
    public func traceContext(jobId: String) async throws -> (traceparent: String, readySince: Date)? {
        try await backend.read { db in
            guard
                let row = try SQLRow.fetchOne(
                    db,
                    sql: """
                        SELECT build.traceparent AS traceparent, job.notBefore AS notBefore
                        FROM job JOIN build ON build.id = job.buildId WHERE job.id = ?
                        """,
                    arguments: [jobId])
            else { return nil }
            let traceparent: String? = row["traceparent"]
            let notBefore: Double? = row["notBefore"]
            guard let traceparent else { return nil }
            return (traceparent, Date(timeIntervalSince1970: notBefore ?? 0))
        }
    }

    /// A build with its jobs.
    public func build(id: String) async throws -> BuildView {
        try await read { db in try Self.buildView(db, id: id) }
    }

    /// A build's state alone (one indexed row), for followers that only need to know whether it is final.
    public func buildState(id: String) async throws -> BuildState {
        try await read { db in try Self.buildState(db, id: id) }
    }

    /// Builds, newest first.
    public func listBuilds(_ query: BuildQuery = BuildQuery()) async throws -> [BuildView] {
        try await read { db in
            var conditions: [String] = []
            var arguments: SQLArguments = []
            if let state = query.state {
                conditions.append("state = ?")
                arguments.append(state.rawValue)
            }
            if let image = query.image {
                conditions.append("image = ?")
                arguments.append(image)
            }
            if let before = query.before {
                conditions.append("seq < (SELECT seq FROM build WHERE id = ?)")
                arguments.append(before)
            }
            let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
            let limit = max(1, min(query.limit, 500))
            guard let visible = query.visible else {
                arguments.append(limit)
                let ids = try String.fetchAll(
                    db, sql: "SELECT id FROM build \(whereClause) ORDER BY seq DESC LIMIT ?", arguments: arguments)
                return try ids.map { try Self.buildView(db, id: $0) }
            }
            // Scopes are patterns SQL cannot match: walk the builds newest first, a batch at a time, keeping the
            // visible ones until the page is full.
            var ids: [String] = []
            var below = Int64.max
            walking: while ids.count < limit {
                var batchArguments = arguments
                batchArguments.append(below)
                let rows = try SQLRow.fetchAll(
                    db,
                    sql: "SELECT seq, id, image FROM build WHERE \((conditions + ["seq < ?"]).joined(separator: " AND ")) "
                        + "ORDER BY seq DESC LIMIT 200",
                    arguments: batchArguments)
                if rows.isEmpty { break }
                for row in rows {
                    below = row["seq"]
                    if visible(row["image"]) { ids.append(row["id"]) }
                    if ids.count >= limit { break walking }
                }
            }
            return try ids.map { try Self.buildView(db, id: $0) }
        }
    }

    /// Cancels a build: queued jobs end at once, running attempts are told at their next heartbeat,
    /// and nothing is published. Cancelling a finished build is a conflict.
    public func cancelBuild(id: String, by actor: String?) async throws -> BuildView {
        let at = Store.timestamp(now())
        try await write { db in
            let state = try Self.buildState(db, id: id)
            guard !state.isFinal else { throw StoreError.conflict("build \(id) is already \(state.rawValue)") }
            try db.execute(
                sql: "UPDATE build SET state = 'cancelled', reason = ?, updatedAt = ?, finishedAt = ? WHERE id = ?",
                arguments: ["cancelled by \(actor ?? "a user")", at, at, id])
            try db.execute(
                sql: "UPDATE job SET state = 'cancelled', reason = 'build cancelled' WHERE buildId = ? AND state = 'queued'",
                arguments: [id])
            try db.execute(
                sql: """
                    UPDATE attempt SET cancelRequested = 1
                    WHERE state IN ('running', 'verifying') AND jobId IN (SELECT id FROM job WHERE buildId = ?)
                    """, arguments: [id])
            try db.execute(sql: "UPDATE outbox SET state = 'superseded' WHERE buildId = ? AND state = 'pending'", arguments: [id])
            // A run whose tag PUTs already started cannot be called back; if it lands, it is recorded on the build.
            let pushing =
                try Bool.fetchOne(db, sql: "SELECT 1 FROM outbox WHERE buildId = ? AND state = 'pushing'", arguments: [id])
                ?? false
            try appendEvent(
                db, buildId: id, type: "build.cancelled",
                data: pushing ? ["by": actor ?? "", "pushInFlight": "true"] : ["by": actor ?? ""])
        }
        return try await build(id: id)
    }

    /// Refuses (``StoreError/quotaExceeded(_:)``) when `token` already has `limit` unfinished builds.
    static func checkUnfinished(_ db: SQLTransaction, token: String, limit: Int, doing action: String) throws {
        let unfinished =
            try Int.fetchOne(
                db, sql: "SELECT COUNT(*) FROM build WHERE submittedByToken = ? AND finishedAt IS NULL", arguments: [token])
            ?? 0
        if unfinished >= limit {
            throw StoreError.quotaExceeded(
                "this token already has \(unfinished) unfinished builds, the limit (max_queued_builds_per_token = "
                    + "\(limit)); wait for some to finish or cancel them, then \(action) again")
        }
    }

    /// Runs one platform again (after success, failure or cancellation of that platform). The list is
    /// re-published when the new attempt's digest is verified.
    ///
    /// A build with secrets that finished has none stored any more (they are erased when a build is final): its
    /// retry must bring `secrets` again, exactly the names it was submitted with, or it is refused (409). Given
    /// while the build still holds them, they replace them.
    ///
    /// Retrying a finished build makes it unfinished again: with `token` and `maxUnfinished`, a token that already
    /// has that many unfinished builds is refused (``StoreError/quotaExceeded(_:)``), counted in the same
    /// transaction as for a submission, and the reopened build counts against `token` until it finishes again (so
    /// retrying other tokens' builds is no way around the cap).
    public func retryJob(
        buildId: String, platform: String, secrets: [String: String]? = nil, token: String? = nil, maxUnfinished: Int? = nil
    ) async throws -> BuildView {
        let at = Store.timestamp(now())
        if let secrets { try Self.validateRetrySecrets(secrets) }
        let sealed = try secrets.map { try seal($0, buildId: buildId) }
        try await write { db in
            let state = try Self.buildState(db, id: buildId)
            guard state != .cancelled else {
                throw StoreError.conflict("build \(buildId) was cancelled; submit it again instead")
            }
            let job = try Self.jobRow(db, buildId: buildId, platform: platform)
            let jobState = JobState(rawValue: job["state"]) ?? .queued
            guard jobState.isFinal else {
                throw StoreError.conflict(
                    "the \(platform) job of build \(buildId) is \(jobState.rawValue); retry it once it has finished")
            }
            let reopens =
                try Double.fetchOne(db, sql: "SELECT finishedAt FROM build WHERE id = ?", arguments: [buildId]) != nil
            if reopens, let token, let maxUnfinished {
                try Self.checkUnfinished(db, token: token, limit: maxUnfinished, doing: "retry")
            }
            if case .upload(let digest) = try Self.buildSpec(db, id: buildId).context {
                guard
                    try Bool.fetchOne(db, sql: "SELECT 1 FROM context WHERE digest = ?", arguments: [digest.description]) == true
                else {
                    throw StoreError.conflict(
                        "the context \(digest) of build \(buildId) was removed by retention (context_retention_hours); "
                            + "submit the build again, which uploads it again")
                }
                try db.execute(sql: "UPDATE context SET lastUsedAt = ? WHERE digest = ?", arguments: [at, digest.description])
            }
            try Self.renewSecretsForRetry(db, buildId: buildId, given: secrets, sealed: sealed)
            let jobId: String = job["id"]
            try db.execute(
                sql: """
                    UPDATE job SET state = 'queued', retryBase = attempts, notBefore = ?, reason = NULL, currentEpoch = NULL
                    WHERE id = ?
                    """, arguments: [at, jobId])
            // A list still waiting to be pushed would miss the rebuilt platform: the new set replaces it.
            try db.execute(
                sql: "UPDATE outbox SET state = 'superseded' WHERE buildId = ? AND state = 'pending'", arguments: [buildId])
            try db.execute(
                sql: "UPDATE build SET state = 'running', reason = NULL, finishedAt = NULL, updatedAt = ? WHERE id = ?",
                arguments: [at, buildId])
            if reopens, let token {
                try db.execute(sql: "UPDATE build SET submittedByToken = ? WHERE id = ?", arguments: [token, buildId])
            }
            try appendEvent(
                db, buildId: buildId, jobId: jobId, platform: job["platform"], type: "job.queued",
                data: ["reason": "retry requested"])
        }
        return try await build(id: buildId)
    }

    static func validateRetrySecrets(_ secrets: [String: String]) throws {
        guard secrets.count <= BuildLimits.maxSecrets else {
            throw StoreError.invalid(
                field: "secrets",
                message: "\(secrets.count) secrets is over the limit of \(BuildLimits.maxSecrets) secrets per build")
        }
        for (name, value) in secrets.sorted(by: { $0.key < $1.key }) where value.utf8.count > BuildLimits.maxSecretBytes {
            throw StoreError.invalid(
                field: "secrets.\(name)",
                message:
                    "the value is \(value.utf8.count) bytes, over the limit of \(BuildLimits.maxSecretBytes) bytes per secret")
        }
    }

    /// Checks a retry's secrets against the build's and stores them; refuses a retry that needs them and has none.
    static func renewSecretsForRetry(_ db: SQLTransaction, buildId: String, given: [String: String]?, sealed: Data?) throws {
        let names = try String.fetchOne(db, sql: "SELECT secretNames FROM build WHERE id = ?", arguments: [buildId])
            .map { try Store.decode([String].self, $0) }
        guard let names else {
            if given != nil {
                throw StoreError.invalid(
                    field: "secrets", message: "build \(buildId) was submitted without secrets; retry it without them")
            }
            return
        }
        guard let given, let sealed else {
            let stored = try Bool.fetchOne(db, sql: "SELECT 1 FROM build_secret WHERE buildId = ?", arguments: [buildId])
            guard stored == true else {
                throw StoreError.conflict(
                    "build \(buildId) has secrets (\(names.joined(separator: ", "))), erased when it finished; give them "
                        + "again with the retry (manifold build retry \(buildId) --secret NAME …, or \"secrets\" in the request)")
            }
            return
        }
        let missing = Set(names).subtracting(given.keys).sorted()
        let unknown = Set(given.keys).subtracting(names).sorted()
        guard missing.isEmpty, unknown.isEmpty else {
            throw StoreError.invalid(
                field: "secrets",
                message: "give exactly the build's secrets (\(names.joined(separator: ", ")))"
                    + (missing.isEmpty ? "" : "; missing: \(missing.joined(separator: ", "))")
                    + (unknown.isEmpty ? "" : "; not secrets of this build: \(unknown.joined(separator: ", "))"))
        }
        try eraseSecrets(db, buildId: buildId)
        try db.execute(sql: "INSERT INTO build_secret (buildId, sealed) VALUES (?, ?)", arguments: [buildId, sealed])
    }

    // MARK: - Contexts

    /// Records an uploaded context whose bytes were verified, or marks it used now if it is recorded already, and
    /// that `token` uploaded it (which lets that token read it, see ``mayReadContext(digest:grant:)``). Answers
    /// whether the context was recorded before. The upload renames its file into place after this (see
    /// ``ContextDirectory``).
    @discardableResult
    public func recordContext(digest: Digest, size: Int64, uploadedBy token: String? = nil) async throws -> Bool {
        let at = Store.timestamp(now())
        return try await write { db in
            let existed =
                try Bool.fetchOne(db, sql: "SELECT 1 FROM context WHERE digest = ?", arguments: [digest.description]) == true
            try db.execute(
                sql: """
                    INSERT INTO context (digest, size, createdAt, lastUsedAt) VALUES (?, ?, ?, ?)
                    ON CONFLICT (digest) DO UPDATE SET lastUsedAt = excluded.lastUsedAt
                    """,
                arguments: [digest.description, size, at, at])
            if let token {
                try db.execute(
                    sql: """
                        INSERT INTO context_upload (digest, tokenId, uploadedAt) VALUES (?, ?, ?)
                        ON CONFLICT (digest, tokenId) DO NOTHING
                        """, arguments: [digest.description, token, at])
            }
            return existed
        }
    }

    /// Whether the token behind `grant` may read (download, or learn the existence of) the context `digest`: an
    /// admin always; another token when it uploaded those bytes itself or a build its scopes cover uses them. A
    /// read: contexts are content addressed, so without this one team could fetch another's source by its digest.
    public func mayReadContext(digest: Digest, grant: TokenGrant) async throws -> Bool {
        if grant.role == .admin { return true }
        return try await read { db in
            if try Bool.fetchOne(
                db, sql: "SELECT 1 FROM context_upload WHERE digest = ? AND tokenId = ?",
                arguments: [digest.description, grant.tokenId]) == true
            {
                return true
            }
            let images = try String.fetchAll(
                db, sql: "SELECT DISTINCT image FROM build WHERE contextDigest = ?", arguments: [digest.description])
            return images.contains { grant.covers(image: $0) }
        }
    }

    /// The recorded size of a context, nil when there is none.
    public func contextSize(digest: Digest) async throws -> Int64? {
        try await read { db in
            try Int64.fetchOne(db, sql: "SELECT size FROM context WHERE digest = ?", arguments: [digest.description])
        }
    }

    public func hasContext(digest: Digest) async throws -> Bool {
        try await read { db in
            try Bool.fetchOne(db, sql: "SELECT 1 FROM context WHERE digest = ?", arguments: [digest.description]) == true
        }
    }

    // MARK: - Helpers

    /// The job of `buildId` for `platform` as a user names it: `linux/arm64`, `linux/arm64/v8`, or for Windows
    /// `windows/amd64` when the build has one Windows amd64 job, else `windows/amd64:10.0.20348`.
    static func jobRow(_ db: SQLTransaction, buildId: String, platform: String) throws -> SQLRow {
        _ = try buildState(db, id: buildId)  // 404 for an unknown build, before any platform complaint
        let wanted = try parsePlatform(platform).normalized()
        let jobs = try SQLRow.fetchAll(db, sql: "SELECT * FROM job WHERE buildId = ? ORDER BY seq", arguments: [buildId])
        if let exact = jobs.first(where: { ($0["platformKey"] as String) == platformKey(wanted) }) { return exact }
        if wanted.osVersion == nil {
            let sameBase = jobs.filter {
                ($0["platformKey"] as String).split(separator: ":").first.map(String.init) == wanted.key
            }
            if sameBase.count == 1 { return sameBase[0] }
        }
        let known = jobs.map { $0["platformKey"] as String }.joined(separator: ", ")
        throw StoreError.invalid(
            field: "platform", message: "build \(buildId) has no job for platform \"\(platform)\"; its platforms are \(known)")
    }

    static func platformKey(_ platform: Platform) -> String {
        let normalized = platform.normalized()
        return normalized.key + (normalized.osVersion.flatMap(Platform.windowsBuild).map { ":" + $0 } ?? "")
    }

    static func parsePlatform(_ text: String) throws -> Platform {
        do { return try Platform(parsing: text) } catch {
            throw StoreError.invalid(field: "platform", message: error.description)
        }
    }

    static func buildState(_ db: SQLTransaction, id: String) throws -> BuildState {
        guard let raw = try String.fetchOne(db, sql: "SELECT state FROM build WHERE id = ?", arguments: [id]) else {
            throw StoreError.notFound(kind: "build", id: id)
        }
        return BuildState(rawValue: raw) ?? .failed
    }

    static func buildView(_ db: SQLTransaction, id: String) throws -> BuildView {
        guard let row = try SQLRow.fetchOne(db, sql: "SELECT * FROM build WHERE id = ?", arguments: [id]) else {
            throw StoreError.notFound(kind: "build", id: id)
        }
        let spec = try Store.decode(BuildSpec.self, row["spec"])
        let jobs = try SQLRow.fetchAll(
            db,
            sql: """
                SELECT job.*, attempt.phase AS phase, attempt.startedAt AS startedAt, attempt.endedAt AS endedAt,
                       attempt.lastLogLine AS lastLogLine, agent.name AS agentName
                FROM job
                LEFT JOIN attempt ON attempt.epoch = (SELECT MAX(epoch) FROM attempt WHERE attempt.jobId = job.id)
                LEFT JOIN agent ON agent.id = attempt.agentId
                WHERE job.buildId = ? ORDER BY job.seq
                """, arguments: [id]
        ).map { job in
            let platformSpec = try Store.decode(PlatformSpec.self, job["spec"])
            return JobView(
                id: job["id"], platform: platformSpec.platform,
                state: JobState(rawValue: job["state"]) ?? .queued, attempts: job["attempts"],
                maxAttempts: (job["maxAttempts"] as Int) + (job["retryBase"] as Int), agent: job["agentName"],
                phase: job["phase"],
                digest: (job["digest"] as String?).flatMap { try? Digest(parsing: $0) }, imageReference: job["imageReference"],
                reason: job["reason"], lastLogLine: job["lastLogLine"], startedAt: Store.date(job["startedAt"]),
                finishedAt: Store.date(job["endedAt"]), notBefore: Store.date(job["notBefore"]),
                agentLabels: platformSpec.agentLabels)
        }
        return BuildView(
            id: id, state: BuildState(rawValue: row["state"]) ?? .failed, image: row["image"], tags: spec.tags, jobs: jobs,
            listDigest: (row["listDigest"] as String?).flatMap { try? Digest(parsing: $0) }, listMediaType: row["listMediaType"],
            reason: row["reason"], submittedBy: row["submittedBy"], createdAt: Store.date(row["createdAt"]) ?? Date(),
            updatedAt: Store.date(row["updatedAt"]) ?? Date(), finishedAt: Store.date(row["finishedAt"]),
            allowPartial: spec.allowPartial, notice: row["notice"], logsRemovedAt: Store.date(row["prunedAt"]))
    }
}
