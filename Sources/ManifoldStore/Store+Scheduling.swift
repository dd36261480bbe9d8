import Foundation
import ManifoldAPI
import ManifoldCore

/// A verified-or-not report waiting for the coordinator to check it in the registry.
public struct PendingVerification: Sendable, Hashable {
    public var jobId: String
    public var epoch: Int64
    public var buildId: String
    public var platform: Platform
    public var image: String
    public var imageReference: String
    public var digest: Digest
    /// The per-platform tag the image gets in the build's repository (`1.0-linux-arm64`).
    public var childTag: String
}

/// Reports due for a registry check, and those whose rows cannot be read.
public struct DueVerifications: Sendable {
    public var ready: [PendingVerification] = []
    public var unreadable: [(jobId: String, epoch: Int64, error: String)] = []
    /// When the first claim another replica holds on a report runs out (the store's clock): the report comes back
    /// then, if that replica has not finished it.
    public var nextClaimExpiry: Date?
}

/// The outcome of checking a reported digest in the registry.
public enum VerificationOutcome: Sendable, Hashable {
    case verified
    /// The image is missing or is not the job's platform; the attempt fails with this reason.
    case rejected(reason: String)
}

/// What became of an agent's report.
public enum CompletionOutcome: Sendable, Hashable {
    case accepted
    /// The report broke a rule (e.g. it named an image outside the build's repository): the attempt failed with
    /// `reason`, and the agent is told so.
    case refused(reason: String)
}

/// What happened to a log append.
public enum LogAppendResult: Sendable, Hashable {
    /// Stored (or already had it); the log now has `size` bytes.
    case stored(size: Int64)
    /// The chunk starts past the end; resend from `size`.
    case gap(size: Int64)
    /// The attempt's log reached the coordinator's cap: what fitted and a marker line were stored, nothing more
    /// will be (413 to the agent, which stops sending).
    case truncated(size: Int64)
}

extension Store {
    /// Hands the oldest queued job that this agent can build to it, or nil. Builds are served in
    /// submission order (FIFO across builds); a job no agent can take never blocks the ones behind it.
    ///
    /// A poll's write (``StoreBackend/write(agent:_:)``): on PostgreSQL it runs beside other agents' leases and other
    /// builds' writes, so it locks each build before it acts on its rows and reads the job again under that lock;
    /// another agent's lease may have taken it since the queue was read.
    public func lease(agentId: String, poll: PollRequest) async throws -> Lease? {
        let at = now()
        return try await write(.agent(agentId)) { db -> Lease? in
            // Polls are idempotent: a lease this agent was granted but never confirmed (its answer was lost on the
            // way) is handed out again, same epoch, before anything new. An agent that keeps polling but never confirms
            // (it crashes before its first heartbeat) gets the lease again for a few acknowledge windows at most; then
            // the reaper gives the job to another. That grant is read with the agent's row.
            let agent = try self.pollingAgent(
                db, agentId: agentId, poll: poll,
                heldSince: Store.timestamp(at.addingTimeInterval(-4 * settings.acknowledgeWindow)))
            let lease = agent.state == .active ? try self.nextLease(db, agentId: agentId, agent: agent, poll: poll, at: at) : nil
            // The agent's row last, after every build's lock (``StoreBackend/write(agent:_:)``).
            try self.touchAgent(db, id: agentId, poll: poll, labels: agent.labels, stored: agent.row)
            return lease
        }
    }

    /// What ``lease(agentId:poll:)`` hands an active agent: its unconfirmed grant again, else the oldest queued job it
    /// can take, else nil.
    private func nextLease(
        _ db: SQLTransaction, agentId: String, agent: PollingAgent, poll: PollRequest, at: Date
    ) throws -> Lease? {
        if let held = agent.held {
            let epoch: Int64 = held["epoch"]
            try db.lockBuild(held["buildId"])
            // Read again under the build's lock: the agent's heartbeat may have confirmed the grant meanwhile.
            if let job = try SQLRow.fetchOne(
                db,
                sql: """
                    SELECT job.* FROM job JOIN attempt ON attempt.epoch = job.currentEpoch
                    WHERE job.id = ? AND attempt.epoch = ? AND attempt.state = 'running'
                        AND attempt.acknowledgedAt IS NULL AND attempt.cancelRequested = 0
                    """, arguments: [held["jobId"] as String, epoch])
            {
                if case .secrets(let secrets) = try self.leaseSecrets(db, buildId: job["buildId"], poll: poll) {
                    let expires = at.addingTimeInterval(settings.acknowledgeWindow)
                    try db.execute(
                        sql: "UPDATE attempt SET leaseExpiresAt = ? WHERE epoch = ?",
                        arguments: [Store.timestamp(expires), epoch])
                    return try self.leaseView(
                        db, job: job, epoch: epoch, number: held["number"], pushTag: held["pushTag"], expires: expires,
                        secrets: secrets)
                }
                // Its secrets can no longer be handed out: the job goes back to the queue, where it is settled below.
                try self.loseAttempt(
                    db, epoch: epoch, jobId: held["jobId"], reason: "the lease could not be handed out again",
                    counted: false, at: at)
            }
        }
        let offer = (platforms: agent.platforms, labels: agent.labels)
        for candidate in try self.queuedJobs(db, at: at, offering: offer.platforms) {
            guard let platformSpec = try Self.offered(candidate, to: offer) else { continue }
            let buildId: String = candidate["buildId"]
            try db.lockBuild(buildId)
            // The job again under its build's lock, with the build's spec and secret names (the grant needs both); nil
            // when another agent's lease took it after the queue was read.
            guard
                let job = try SQLRow.fetchOne(
                    db,
                    sql: """
                        SELECT job.id, job.buildId, job.spec, job.attempts, job.platform, build.spec AS buildSpec,
                            build.secretNames
                        FROM job JOIN build ON build.id = job.buildId
                        WHERE job.id = ? AND job.state = 'queued' AND job.notBefore <= ?
                            AND build.state IN ('queued', 'running')
                        """, arguments: [candidate["id"] as String, Store.timestamp(at)])
            else { continue }
            switch try self.leaseSecrets(db, buildId: buildId, secretNames: job["secretNames"], poll: poll) {
            case .secrets(let secrets):
                return try self.grant(
                    db, job: job, platformSpec: platformSpec, spec: try Store.decode(BuildSpec.self, job["buildSpec"]),
                    agentId: agentId, agentName: agent.name, secrets: secrets, at: at)
            case .tooOld: continue
            case .unusable(let reason):
                try self.failUnstartable(db, jobId: job["id"], reason: reason, at: at)
            }
        }
        return nil
    }

    /// Whether ``lease(agentId:poll:)`` might hand an agent in `state` something now: a grant it has not confirmed, or a
    /// queued job its `offer` can take. A `true` only means the write is worth trying (the write checks the agent's pool
    /// again).
    private func mayLease(
        _ db: SQLTransaction, agentId: String, state: AgentState?, offer: (platforms: [Platform], labels: [String: String]),
        at: Date
    ) throws -> Bool {
        guard state == .active else { return false }
        let unconfirmed = try Int64.fetchOne(
            db,
            sql: """
                SELECT COUNT(*) FROM attempt
                WHERE agentId = ? AND state = 'running' AND acknowledgedAt IS NULL AND cancelRequested = 0
                """, arguments: [agentId])
        if (unconfirmed ?? 0) > 0 { return true }
        return try queuedJobs(db, at: at, offering: offer.platforms).contains { try Self.offered($0, to: offer) != nil }
    }

    /// What a long poll reads before it decides to write (see ``checkPoll(agentId:poll:offer:)``).
    public struct PollCheck: Sendable {
        /// What the poll can take: its platforms and labels narrowed by the agent's pool.
        public var platforms: [Platform]
        public var labels: [String: String]
        /// Whether ``lease(agentId:poll:)`` is worth running: it may grant something, or the agent's row must record
        /// the poll (what it offers changed, or it was last seen ``lastSeenResolution`` ago or more).
        public var worthLeasing: Bool
        /// When the earliest queued job may start (a retry's backoff), as ``nextQueuedJobTime()``.
        public var nextQueuedJobTime: Date?
    }

    /// One read for a long poll, without the writers' lock: what the poll can take, whether a lease (a write) is worth
    /// trying, and when the earliest queued job may start.
    ///
    /// On arrival (`offer` nil) the offer is read and narrowed by the agent's pool — a poll the pool refuses is refused
    /// here — and the lease is worth trying when the agent's row is out of date as well: an agent that polls again right
    /// after its report, with nothing queued for it, then costs no write at all. A poll woken later passes the `offer`
    /// it holds; its row is not rewritten for being seen again (that would write on every wake-up).
    public func checkPoll(
        agentId: String, poll: PollRequest, offer known: (platforms: [Platform], labels: [String: String])?
    ) async throws -> PollCheck {
        let at = now()
        return try await read { db -> PollCheck in
            let state: AgentState?
            let offer: (platforms: [Platform], labels: [String: String])
            var rowOutdated = false
            if let known {
                offer = known
                state = try String.fetchOne(db, sql: "SELECT state FROM agent WHERE id = ?", arguments: [agentId])
                    .flatMap(AgentState.init(rawValue:))
            } else {
                let agent = try self.pollingAgent(db, agentId: agentId, poll: poll)
                offer = (agent.platforms, agent.labels)
                state = agent.state
                rowOutdated = try !Self.agentRow(agent.row, records: poll, labels: agent.labels, at: at)
            }
            let worthLeasing = try rowOutdated || self.mayLease(db, agentId: agentId, state: state, offer: offer, at: at)
            return PollCheck(
                platforms: offer.platforms, labels: offer.labels, worthLeasing: worthLeasing,
                nextQueuedJobTime: try self.nextQueuedJobTime(db))
        }
    }

    /// The build a job belongs to (it never changes), or nil for an unknown job.
    public func buildId(ofJob jobId: String) async throws -> String? {
        try await read { db in
            try String.fetchOne(db, sql: "SELECT buildId FROM job WHERE id = ?", arguments: [jobId])
        }
    }

    /// Whether the job waits in the queue now (for a retry, or given back), so held polls have something new.
    public func isQueued(jobId: String) async throws -> Bool {
        try await read { db in
            try String.fetchOne(db, sql: "SELECT state FROM job WHERE id = ?", arguments: [jobId]) == "queued"
        }
    }

    /// Queued jobs of open builds that may start at `at` and that an agent offering `platforms` might take, in the
    /// order they are handed out. Jobs of other platforms are left out by their `platformKey` column, so a deep queue
    /// for platforms this agent cannot build costs it no decoding; ``offered(_:to:)`` decides the rest (labels, an OS
    /// version that is not a Windows build).
    func queuedJobs(_ db: SQLTransaction, at: Date, offering platforms: [Platform]) throws -> [SQLRow] {
        let keys = Self.platformKeys(satisfiableBy: platforms)
        guard !keys.isEmpty else { return [] }
        var arguments: SQLArguments = [Store.timestamp(at)]
        arguments.values += keys.map(\.sqlValue)
        return try SQLRow.fetchAll(
            db,
            sql: """
                SELECT job.id, job.buildId, job.spec, job.attempts, job.platform FROM job
                JOIN build ON build.id = job.buildId
                WHERE job.state = 'queued' AND job.notBefore <= ? AND build.state IN ('queued', 'running')
                    AND job.platformKey IN (\(keys.map { _ in "?" }.joined(separator: ", ")))
                ORDER BY job.buildSeq, job.seq
                """, arguments: arguments)
    }

    /// Every `job.platformKey` (``platformKey(_:)``) of a job that one of `platforms` can satisfy
    /// (``Platform/isSatisfied(by:)``): a job without an OS version has the bare key, one that asks for a Windows build
    /// has the build after a colon, and one with another kind of OS version has the bare key too.
    static func platformKeys(satisfiableBy platforms: [Platform]) -> [String] {
        var keys = Set<String>()
        for platform in platforms {
            let normalized = platform.normalized()
            keys.insert(normalized.key)
            if let build = normalized.osVersion.flatMap(Platform.windowsBuild) {
                keys.insert(normalized.key + ":" + build)
            }
        }
        return keys.sorted()
    }

    /// The job's platform spec when an agent offering `offer` can take it: one of its platforms satisfies the job's
    /// and it carries every label the job requires.
    static func offered(
        _ job: SQLRow, to offer: (platforms: [Platform], labels: [String: String])
    ) throws -> PlatformSpec? {
        let platformSpec = try Store.decode(PlatformSpec.self, job["spec"])
        let takeable = platformSpec.platform.isTakeable(
            requiring: platformSpec.agentLabels ?? [:], byOffer: offer.platforms, labels: offer.labels)
        return takeable ? platformSpec : nil
    }

    /// What a lease of a job of `buildId` can carry to the polling agent.
    enum LeaseSecrets {
        case secrets([String: String])
        /// The build has secrets and the agent speaks a protocol that would not keep them out of build args.
        case tooOld
        case unusable(String)
    }

    func leaseSecrets(_ db: SQLTransaction, buildId: String, poll: PollRequest) throws -> LeaseSecrets {
        try leaseSecrets(
            db, buildId: buildId,
            secretNames: try String.fetchOne(db, sql: "SELECT secretNames FROM build WHERE id = ?", arguments: [buildId]),
            poll: poll)
    }

    /// ``leaseSecrets(_:buildId:poll:)`` for a build whose `secretNames` column the caller already read.
    func leaseSecrets(_ db: SQLTransaction, buildId: String, secretNames: String?, poll: PollRequest) throws -> LeaseSecrets {
        switch try openSecrets(db, buildId: buildId, secretNames: secretNames) {
        case .none: return .secrets([:])
        case .secrets(let secrets):
            return poll.protocolVersion >= AgentProtocol.secretsVersion ? .secrets(secrets) : .tooOld
        case .unusable(let reason): return .unusable(reason)
        }
    }

    /// Fails a queued job that can never start (its secrets are gone), without an attempt.
    func failUnstartable(_ db: SQLTransaction, jobId: String, reason: String, at: Date) throws {
        try db.execute(sql: "UPDATE job SET state = 'failed', reason = ? WHERE id = ?", arguments: [reason, jobId])
        let job = try self.jobRow(db, id: jobId)
        try appendEvent(
            db, buildId: job["buildId"], jobId: jobId, platform: job["platform"], type: "job.failed",
            data: ["reason": reason, "attempts": "\((job["attempts"] as Int) - (job["retryBase"] as Int))"])
        try evaluateBuild(db, id: job["buildId"], at: at)
    }

    private func grant(
        _ db: SQLTransaction, job: SQLRow, platformSpec: PlatformSpec, spec: BuildSpec, agentId: String, agentName: String,
        secrets: [String: String], at: Date
    ) throws -> Lease {
        let jobId: String = job["id"]
        let buildId: String = job["buildId"]
        let number = (job["attempts"] as Int) + 1
        // Until the agent confirms the lease (first heartbeat, log or report) it lasts only the acknowledge window:
        // a grant whose answer never reached the agent goes back to the queue quickly and uncounted.
        let expires = at.addingTimeInterval(settings.acknowledgeWindow)
        let childTag = settings.childTag(spec.childTagTemplate, spec.tags[0], platformSpec.platform)
        let epoch: Int64
        let pushTag: String
        switch db.dialect {
        case .postgres:
            // Three statements instead of five, each prepared once per connection: every statement is a round trip
            // while the build's lock is held. The epoch comes from the attempt's identity sequence (PostgreSQL names
            // it `attempt_epoch_seq`) first, so the push tag goes in with the attempt.
            guard let next = try Int64.fetchOne(db, sql: "SELECT nextval('attempt_epoch_seq')", arguments: []) else {
                throw SQLError.other("PostgreSQL gave no epoch for an attempt of job \(jobId)")
            }
            (epoch, pushTag) = (next, Self.attemptTag(childTag: childTag, epoch: next))
            try db.execute(
                sql: """
                    INSERT INTO attempt (epoch, jobId, number, agentId, state, leaseExpiresAt, startedAt, pushTag)
                    VALUES (?, ?, ?, ?, 'running', ?, ?, ?)
                    """,
                arguments: [epoch, jobId, number, agentId, Store.timestamp(expires), Store.timestamp(at), pushTag])
            // The job, the build (running from its first grant on) and the event in one statement; the states are
            // arguments, which keeps it a statement prepared once per connection.
            let event: [String: String] = ["agent": agentName, "attempt": "\(number)", "epoch": "\(epoch)"]
            let now = Store.timestamp(self.now())
            try db.execute(
                sql: """
                    WITH assigned AS (UPDATE job SET state = ?, attempts = ?, currentEpoch = ? WHERE id = ?),
                        started AS (
                            UPDATE build SET state = CASE WHEN state = ? THEN ? ELSE state END, updatedAt = ? WHERE id = ?
                        )
                    INSERT INTO event (buildId, jobId, platform, type, data, createdAt) VALUES (?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    "assigned", number, epoch, jobId, "queued", "running", now, buildId, buildId, jobId,
                    job["platform"] as String, "job.assigned", try Store.json(event), now,
                ])
        case .sqlite:
            guard
                let inserted = try Int64.fetchOne(
                    db,
                    sql: """
                        INSERT INTO attempt (jobId, number, agentId, state, leaseExpiresAt, startedAt)
                        VALUES (?, ?, ?, 'running', ?, ?)
                        RETURNING epoch
                        """, arguments: [jobId, number, agentId, Store.timestamp(expires), Store.timestamp(at)])
            else { throw SQLError.other("inserting an attempt of job \(jobId) returned no epoch") }
            epoch = inserted
            try db.execute(
                sql: "UPDATE job SET state = 'assigned', attempts = ?, currentEpoch = ? WHERE id = ?",
                arguments: [number, epoch, jobId])
            try db.execute(
                sql: "UPDATE build SET state = 'running', updatedAt = ? WHERE id = ? AND state = 'queued'",
                arguments: [Store.timestamp(at), buildId])
            try appendEvent(
                db, buildId: buildId, jobId: jobId, platform: job["platform"], type: "job.assigned",
                data: ["agent": agentName, "attempt": "\(number)", "epoch": "\(epoch)"])
            pushTag = Self.attemptTag(childTag: childTag, epoch: epoch)
            try db.execute(sql: "UPDATE attempt SET pushTag = ? WHERE epoch = ?", arguments: [pushTag, epoch])
        }
        return try leaseView(
            db, job: job, epoch: epoch, number: number, pushTag: pushTag, expires: expires, secrets: secrets, spec: spec)
    }

    /// The lease an agent receives for attempt `epoch` of `job`, carrying the build's decrypted `secrets`.
    private func leaseView(
        _ db: SQLTransaction, job: SQLRow, epoch: Int64, number: Int, pushTag: String, expires: Date, secrets: [String: String],
        spec knownSpec: BuildSpec? = nil
    ) throws -> Lease {
        let buildId: String = job["buildId"]
        let platformSpec = try Store.decode(PlatformSpec.self, job["spec"])
        let spec = try knownSpec ?? Self.buildSpec(db, id: buildId)
        let jobSpec = JobSpec(
            buildId: buildId, platform: platformSpec.platform, image: spec.image, tag: pushTag, context: spec.context,
            dockerfile: platformSpec.dockerfile ?? spec.dockerfile,
            buildArgs: spec.buildArgs.merging(platformSpec.buildArgs ?? [:]) { $1 }, secrets: secrets,
            labels: spec.labels, timeoutSeconds: spec.timeoutSeconds)
        return Lease(jobId: job["id"], epoch: epoch, attempt: number, leaseExpiresAt: expires, spec: jobSpec)
    }

    /// Gives back a lease whose poll answer could not be delivered (the agent's connection closed): the attempt
    /// is lost, not counted, and the job is queued again at once. Does nothing once the agent confirmed it, nor
    /// when a later poll of the agent was handed the same lease again (its expiry is no longer `offeredUntil`).
    public func releaseUndelivered(agentId: String, epoch: Int64, offeredUntil: Date) async throws {
        let at = now()
        try await write { db in
            guard
                let attempt = try SQLRow.fetchOne(
                    db,
                    sql: """
                        SELECT jobId, leaseExpiresAt FROM attempt
                        WHERE epoch = ? AND agentId = ? AND state = 'running' AND acknowledgedAt IS NULL
                        """,
                    arguments: [epoch, agentId]),
                abs((attempt["leaseExpiresAt"] as Double) - Store.timestamp(offeredUntil)) < 0.001
            else { return }
            try self.loseAttempt(
                db, epoch: epoch, jobId: attempt["jobId"],
                reason: "the lease could not be delivered: the agent's poll connection closed", counted: false, at: at)
        }
    }

    /// The agent proved it holds attempt `epoch` (heartbeat, log, report): from now on the full lease TTL applies.
    func acknowledge(_ db: SQLTransaction, attempt: SQLRow, at: Date) throws {
        guard attempt["acknowledgedAt"] as Double? == nil else { return }
        try db.execute(
            sql: "UPDATE attempt SET acknowledgedAt = ?, leaseExpiresAt = \(db.greatest("leaseExpiresAt", "?")) WHERE epoch = ?",
            arguments: [
                Store.timestamp(at), Store.timestamp(at.addingTimeInterval(settings.leaseTTL)), attempt["epoch"] as Int64,
            ])
    }

    /// The tag an attempt pushes to: `{child tag}-attempt-{epoch}`, at most 128 characters (the child tag is
    /// shortened, never the suffix). Only that attempt writes it; the stable child tag is the coordinator's.
    public static func attemptTag(childTag: String, epoch: Int64) -> String {
        let suffix = "-attempt-\(epoch)"
        return String(childTag.prefix(128 - suffix.count)) + suffix
    }

    /// Extends a running attempt's lease and records its phase. Answers whether the job was cancelled.
    public func heartbeat(agentId: String, _ request: HeartbeatRequest) async throws -> HeartbeatResponse {
        let at = now()
        return try await write(.buildOfJob(request.jobId)) { db in
            let attempt = try self.currentAttempt(
                db, jobId: request.jobId, epoch: request.epoch, agentId: agentId, allowed: ["running", "verifying"])
            let expires = at.addingTimeInterval(settings.leaseTTL)
            let newPhase = request.phase.flatMap { $0 == (attempt["phase"] as String?) ? nil : $0 }
            if db.dialect == .postgres {
                try self.recordBeat(db, attempt: attempt, agentId: agentId, phase: newPhase, at: at, expires: expires)
                return HeartbeatResponse(cancelled: (attempt["cancelRequested"] as Int) != 0, leaseExpiresAt: expires)
            }
            try self.acknowledge(db, attempt: attempt, at: at)
            try db.execute(
                sql: "UPDATE attempt SET leaseExpiresAt = ? WHERE epoch = ? AND state = 'running'",
                arguments: [Store.timestamp(expires), request.epoch])
            try self.touchAgent(db, id: agentId, poll: nil)
            if let phase = newPhase {
                try db.execute(sql: "UPDATE attempt SET phase = ? WHERE epoch = ?", arguments: [phase, request.epoch])
                let job = Self.job(of: attempt)
                try self.appendEvent(
                    db, buildId: job["buildId"], jobId: request.jobId, platform: job["platform"], type: "job.phase",
                    data: ["phase": phase])
            }
            return HeartbeatResponse(cancelled: (attempt["cancelRequested"] as Int) != 0, leaseExpiresAt: expires)
        }
    }

    /// A heartbeat's writes on PostgreSQL in one statement: the grant confirmed (as ``acknowledge(_:attempt:at:)``),
    /// a running lease extended to `expires`, the agent seen, and a new phase with its event and the build's time.
    /// Each statement is a round trip while the build's lock is held, and every running job beats. In `SET`, a column
    /// names its value before the update.
    private func recordBeat(
        _ db: SQLTransaction, attempt: SQLRow, agentId: String, phase: String?, at: Date, expires: Date
    ) throws {
        let beat = SQLChange(
            sql: """
                UPDATE attempt SET acknowledgedAt = COALESCE(acknowledgedAt, ?),
                    leaseExpiresAt = CASE WHEN state = ? THEN ?
                        WHEN acknowledgedAt IS NULL THEN GREATEST(leaseExpiresAt, ?) ELSE leaseExpiresAt END,
                    phase = COALESCE(?, phase)
                WHERE epoch = ?
                """,
            arguments: [
                Store.timestamp(at), "running", Store.timestamp(expires), Store.timestamp(expires), phase,
                attempt["epoch"] as Int64,
            ])
        let seen = SQLChange(
            sql: "UPDATE agent SET lastSeenAt = ? WHERE id = ?", arguments: [Store.timestamp(self.now()), agentId])
        guard let phase else {
            try db.execute(
                sql: "WITH beat AS (\(beat.sql))\n\(seen.sql)",
                arguments: SQLArguments(values: beat.arguments.values + seen.arguments.values))
            return
        }
        let job = Self.job(of: attempt)
        try self.appendEvent(
            db, buildId: job["buildId"], jobId: job["id"], platform: job["platform"], type: "job.phase", data: ["phase": phase],
            along: [beat, seen])
    }

    /// Appends log bytes at `offset`. A chunk that repeats what is stored is accepted without change; one
    /// that overlaps stores only the new part; one that leaves a gap is answered with the stored size.
    public func appendLog(agentId: String, jobId: String, epoch: Int64, offset: Int64, data: Data) async throws -> LogAppendResult
    {
        let at = now()
        let cap = settings.maxLogBytesPerAttempt
        let marker = Data(
            "\n[manifold] this attempt's log reached the coordinator's limit of \(cap) bytes (max_log_bytes_per_attempt); later output was not stored\n"
                .utf8)
        // The agent masks secret values before sending; masking them here too (same length, so offsets stay true)
        // keeps a careless builder's echo out of stored logs and events. Decrypting and scanning happen here,
        // outside the write transaction, so a chatty build never holds the database writer for them.
        let data = try await masked(data, jobId: jobId)
        return try await write(.buildOfJob(jobId)) { db in
            let attempt = try self.currentAttempt(
                db, jobId: jobId, epoch: epoch, agentId: agentId,
                allowed: ["running", "verifying", "succeeded", "failed", "cancelled"])
            if (attempt["state"] as String) == "running" { try self.acknowledge(db, attempt: attempt, at: at) }
            let size: Int64 = attempt["logSize"]
            let room = max(0, cap - Int64(marker.count))
            if size == room, offset >= size, !data.isEmpty, !(attempt["lastLogLine"] as String? ?? "").hasPrefix("[manifold]") {
                // The log filled exactly up to the marker's room: more output came, so the marker ends it now.
                try db.execute(
                    sql: "INSERT INTO log_chunk (epoch, \"offset\", data) VALUES (?, ?, ?)", arguments: [epoch, size, marker])
                try db.execute(
                    sql: "UPDATE attempt SET logSize = ?, lastLogLine = ? WHERE epoch = ?",
                    arguments: [
                        size + Int64(marker.count),
                        String(decoding: marker, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines), epoch,
                    ])
                return .truncated(size: size + Int64(marker.count))
            }
            guard size < room || (size == 0 && room == 0) else {
                throw StoreError.limitExceeded(
                    "the log of this attempt reached the coordinator's limit of \(cap) bytes; further output is not stored")
            }
            if offset > size { return .gap(size: size) }
            guard data.count <= Int(Int32.max), offset <= Int64.max - Int64(data.count) else {
                throw StoreError.invalid(field: "offset", message: "offset \(offset) plus \(data.count) bytes is out of range")
            }
            let end = offset + Int64(data.count)
            guard end > size else { return .stored(size: size) }
            let job = Self.job(of: attempt)
            // What fits below the cap is stored; past it, one marker line ends the log.
            let truncated = end > room
            let keptEnd = min(end, room)
            let slice = data.dropFirst(Int(size - offset)).prefix(Int(keptEnd - size))
            var fresh = Data(slice)
            if truncated { fresh.append(marker) }
            let newSize = size + Int64(fresh.count)
            try db.execute(
                sql: "INSERT INTO log_chunk (epoch, \"offset\", data) VALUES (?, ?, ?)", arguments: [epoch, size, fresh])
            let lastLine = String(decoding: fresh, as: UTF8.self).split(whereSeparator: \.isNewline).last.map {
                String($0.trimmingCharacters(in: .whitespaces).prefix(300))
            }
            try db.execute(
                sql: "UPDATE attempt SET logSize = ?, lastLogLine = COALESCE(?, lastLogLine) WHERE epoch = ?",
                arguments: [newSize, lastLine, epoch])
            // One job.log event per attempt and second at most (plus the marker): a chatty build cannot flood the
            // event table; the attempt's last line is always current.
            let lastEvent = attempt["lastLogEventAt"] as Double?
            if let lastLine, !lastLine.isEmpty,
                truncated || lastEvent.map({ Store.timestamp(at) - $0 >= Self.logEventInterval }) ?? true
            {
                try db.execute(
                    sql: "UPDATE attempt SET lastLogEventAt = ? WHERE epoch = ?", arguments: [Store.timestamp(at), epoch])
                try self.appendEvent(
                    db, buildId: job["buildId"], jobId: jobId, platform: job["platform"], type: "job.log",
                    data: ["line": lastLine])
            }
            return truncated ? .truncated(size: newSize) : .stored(size: newSize)
        }
    }

    /// The shortest time between two `job.log` events of one attempt.
    static let logEventInterval: TimeInterval = 1

    /// Whether no more log will come for the attempt `row` (see ``readLog(buildId:platform:attempt:offset:limit:)``).
    static func logIsComplete(_ row: SQLRow, at now: Double) -> Bool {
        let state: String = row["state"]
        guard state != "running" else { return false }
        if state == "lost" || (row["logClosed"] as Int64) != 0 { return true }
        if (row["lastLogLine"] as String?)?.hasPrefix("[manifold] this attempt's log reached") == true { return true }
        guard let ended = row["endedAt"] as Double? else { return true }
        return now - ended >= logTailGrace
    }

    /// Log bytes of one attempt (the latest when `attempt` is nil) from `offset`, at most `limit` bytes.
    ///
    /// `finished` says no more bytes will come: the attempt is over and its log complete — closed by its agent, cut at
    /// the coordinator's limit, refused to its agent (a lost lease), or ended ``logTailGrace`` ago. An attempt reports
    /// before it sends the rest of its log, so an attempt that just ended may not be finished yet.
    public func readLog(
        buildId: String, platform: String, attempt: Int? = nil, offset: Int64 = 0, limit: Int = 1 << 20
    ) async throws
        -> (data: Data, size: Int64, epoch: Int64, finished: Bool)
    {
        let at = Store.timestamp(now())
        return try await read { db in
            let jobId: String = try Self.jobRow(db, buildId: buildId, platform: platform)["id"]
            let row: SQLRow?
            if let attempt {
                row = try SQLRow.fetchOne(
                    db, sql: "SELECT * FROM attempt WHERE jobId = ? AND number = ?", arguments: [jobId, attempt])
            } else {
                row = try SQLRow.fetchOne(
                    db, sql: "SELECT * FROM attempt WHERE jobId = ? ORDER BY epoch DESC LIMIT 1", arguments: [jobId])
            }
            guard let row else { return (Data(), 0, 0, false) }
            let epoch: Int64 = row["epoch"]
            let size: Int64 = row["logSize"]
            let finished = Self.logIsComplete(row, at: at)
            guard offset < size, limit > 0 else { return (Data(), size, epoch, finished) }
            // The chunk holding `offset` is found through the primary key (epoch, offset); from there chunks are
            // read in order, a few at a time, until `limit`: a follow near the end of a 64 MiB log reads only the
            // bytes it returns, not the whole log.
            var next =
                try Int64.fetchOne(
                    db, sql: "SELECT MAX(\"offset\") FROM log_chunk WHERE epoch = ? AND \"offset\" <= ?",
                    arguments: [epoch, offset])
                ?? offset
            var data = Data()
            reading: while data.count < limit {
                let chunks = try SQLRow.fetchAll(
                    db,
                    sql:
                        "SELECT \"offset\", data FROM log_chunk WHERE epoch = ? AND \"offset\" >= ? ORDER BY \"offset\" LIMIT 16",
                    arguments: [epoch, next])
                if chunks.isEmpty { break }
                for chunk in chunks {
                    let chunkOffset: Int64 = chunk["offset"]
                    let bytes: Data = chunk["data"]
                    self.countLogBytesFetched(bytes.count)
                    let skip = Int(min(Int64(bytes.count), max(0, offset - chunkOffset)))
                    data.append(bytes.dropFirst(skip).prefix(limit - data.count))
                    next = chunkOffset + 1
                    if data.count >= limit { break reading }
                }
            }
            return (data, size, epoch, finished)
        }
    }

    /// The agent has sent all of the attempt's log, `size` bytes: followers of the log can end once the attempt has
    /// too. Refused like an append (409) for an attempt that is not the agent's current one; a `size` other than the
    /// stored size is a gap (the agent sends the missing bytes first) and closes nothing.
    public func closeLog(agentId: String, jobId: String, epoch: Int64, size: Int64) async throws -> LogAppendResult {
        try await write(.buildOfJob(jobId)) { db in
            let attempt = try self.currentAttempt(
                db, jobId: jobId, epoch: epoch, agentId: agentId,
                allowed: ["running", "verifying", "succeeded", "failed", "cancelled"])
            let stored: Int64 = attempt["logSize"]
            guard size == stored else { return .gap(size: stored) }
            try db.execute(sql: "UPDATE attempt SET logClosed = 1 WHERE epoch = ?", arguments: [epoch])
            return .stored(size: stored)
        }
    }

    /// How long after an attempt ended its log counts as complete although its agent never closed it (an agent that
    /// died after its report, or one from before agents closed their logs). Agents send the rest of a log right
    /// after their report, normally within a second.
    public static let logTailGrace: TimeInterval = 10

    /// Records an agent's result. Success moves the attempt to verification (the coordinator checks the
    /// digest); failure re-queues the job with backoff or fails it. Reporting the same result twice is
    /// accepted; a different digest for the same attempt is a conflict.
    ///
    /// A succeeded report must name an image in the build's own repository (registry and repository equal to the
    /// build's image) or in one of ``StoreSettings/stagingRepositories``: the coordinator copies what the report
    /// names with its own credentials, so anything else is refused and the attempt fails with the rule as reason.
    @discardableResult
    public func complete(agentId: String, _ request: CompleteRequest) async throws -> CompletionOutcome {
        let at = now()
        return try await write(.buildOfJob(request.jobId)) { db -> CompletionOutcome in
            let attempt = try self.currentAttempt(
                db, jobId: request.jobId, epoch: request.epoch, agentId: agentId,
                allowed: ["running", "verifying", "succeeded", "failed", "cancelled"])
            let state: String = attempt["state"]
            let job = Self.job(of: attempt)
            // A report confirms the lease; on PostgreSQL a succeeded one does so in the statement that records it.
            let foldsAcknowledgement = request.outcome == .succeeded && db.dialect == .postgres
            if state == "running", !foldsAcknowledgement { try self.acknowledge(db, attempt: attempt, at: at) }
            switch request.outcome {
            case .succeeded:
                guard let digest = request.digest, let reference = request.imageReference else {
                    throw StoreError.invalid(field: "digest", message: "a succeeded report needs imageReference and digest")
                }
                if state != "running" {
                    guard (attempt["digest"] as String?) == digest.description else {
                        throw StoreError.conflict(
                            "attempt \(request.epoch) already reported \(attempt["digest"] as String? ?? state); it cannot report \(digest) now"
                        )
                    }
                    return .accepted
                }
                if let refusal = Self.reportRefusal(
                    reference, image: attempt["buildImage"], staging: self.settings.stagingRepositories)
                {
                    if foldsAcknowledgement { try self.acknowledge(db, attempt: attempt, at: at) }
                    try db.execute(
                        sql: "UPDATE attempt SET state = 'failed', reason = ?, endedAt = ? WHERE epoch = ?",
                        arguments: [refusal, Store.timestamp(at), request.epoch])
                    try self.attemptEnded(db, job: job, reason: refusal, at: at)
                    return .refused(reason: refusal)
                }
                let event = ["digest": digest.description, "image": reference]
                switch db.dialect {
                case .postgres:
                    // One statement instead of four (the acknowledgement, the attempt, the job, the event and the
                    // build's time): each is a round trip while the build's lock is held. In `SET`, a column names
                    // its value before the update, as ``acknowledge(_:attempt:at:)`` reads it.
                    let reported = SQLChange(
                        sql: """
                            UPDATE attempt SET state = ?, digest = ?, imageReference = ?, endedAt = ?,
                                acknowledgedAt = COALESCE(acknowledgedAt, ?),
                                leaseExpiresAt = CASE WHEN acknowledgedAt IS NULL
                                    THEN GREATEST(leaseExpiresAt, ?) ELSE leaseExpiresAt END
                            WHERE epoch = ?
                            """,
                        arguments: [
                            "verifying", digest.description, reference, Store.timestamp(at), Store.timestamp(at),
                            Store.timestamp(at.addingTimeInterval(settings.leaseTTL)), request.epoch,
                        ])
                    let verifying = SQLChange(
                        sql: "UPDATE job SET state = ?, digest = ?, imageReference = ? WHERE id = ?",
                        arguments: ["verifying", digest.description, reference, request.jobId])
                    try self.appendEvent(
                        db, buildId: job["buildId"], jobId: request.jobId, platform: job["platform"], type: "job.verifying",
                        data: event, along: [reported, verifying])
                case .sqlite:
                    try db.execute(
                        sql: """
                            UPDATE attempt SET state = 'verifying', digest = ?, imageReference = ?, endedAt = ?
                            WHERE epoch = ?
                            """,
                        arguments: [digest.description, reference, Store.timestamp(at), request.epoch])
                    try db.execute(
                        sql: "UPDATE job SET state = 'verifying', digest = ?, imageReference = ? WHERE id = ?",
                        arguments: [digest.description, reference, request.jobId])
                    try self.appendEvent(
                        db, buildId: job["buildId"], jobId: request.jobId, platform: job["platform"], type: "job.verifying",
                        data: event)
                }
            case .released:
                // Given back without a verdict (the agent is shutting down): re-queued at once, not counted.
                if state != "running" {
                    guard state == "cancelled" || state == "lost" else {
                        throw StoreError.conflict(
                            "attempt \(request.epoch) already ended as \(state); it cannot be released now")
                    }
                    return .accepted
                }
                let reason = request.reason ?? "the agent gave the job back"
                try db.execute(
                    sql: "UPDATE attempt SET state = 'cancelled', reason = ?, endedAt = ? WHERE epoch = ?",
                    arguments: [reason, Store.timestamp(at), request.epoch])
                if (attempt["cancelRequested"] as Int) != 0 {
                    try self.cancelJob(db, job: job, reason: reason)
                } else {
                    try db.execute(sql: "UPDATE job SET retryBase = retryBase + 1 WHERE id = ?", arguments: [request.jobId])
                    try self.appendEvent(
                        db, buildId: job["buildId"], jobId: request.jobId, platform: job["platform"], type: "job.released",
                        data: ["reason": reason, "epoch": "\(request.epoch)"])
                    try self.attemptEnded(db, job: try self.jobRow(db, id: request.jobId), reason: reason, at: at, backoff: false)
                }
            case .failed, .cancelled:
                let wanted = request.outcome == .failed ? "failed" : "cancelled"
                if state != "running" {
                    guard state == wanted else {
                        throw StoreError.conflict(
                            "attempt \(request.epoch) already ended as \(state); it cannot report \(wanted) now")
                    }
                    return .accepted
                }
                let reason = request.reason ?? (request.outcome == .cancelled ? "cancelled" : "the build failed")
                let exit = request.exitCode.map { " (exit code \($0))" } ?? ""
                try db.execute(
                    sql: "UPDATE attempt SET state = ?, exitCode = ?, reason = ?, endedAt = ? WHERE epoch = ?",
                    arguments: [wanted, request.exitCode, reason, Store.timestamp(at), request.epoch])
                if request.outcome == .cancelled, (attempt["cancelRequested"] as Int) != 0 {
                    try self.cancelJob(db, job: job, reason: reason)
                } else {
                    try self.attemptEnded(db, job: job, reason: reason + exit, at: at)
                }
            }
            return .accepted
        }
    }

    /// Why a report naming `reference` is refused for a build of `image`, or nil when it is in the build's own
    /// repository or a staging repository.
    static func reportRefusal(_ reference: String, image: String, staging: [RepositoryPattern]) -> String? {
        let rule =
            "a report must name an image in the build's own repository\(staging.isEmpty ? "" : " or in staging_repositories (\(staging.map(\.description).joined(separator: ", ")))")"
        guard let reported = try? ImageReference(parsing: reference) else {
            return "the agent reported \"\(reference)\", which is not an image reference; \(rule)"
        }
        if let own = try? ImageReference(parsing: image), own.registry.lowercased() == reported.registry.lowercased(),
            own.repository == reported.repository
        {
            return nil
        }
        if RepositoryPattern.allows(staging, reported) { return nil }
        return "the agent reported image \(reference), outside the build's repository \(image); \(rule)"
    }

    /// Reports awaiting a registry check, oldest first (also those left over from before a restart), and those
    /// whose rows cannot be read (the verifier fails them rather than stall). Reports another replica claimed are left
    /// out until its claim runs out (``DueVerifications/nextClaimExpiry``).
    public func pendingVerifications() async throws -> DueVerifications {
        let at = Store.timestamp(now())
        return try await read { db in
            var due = DueVerifications()
            due.nextClaimExpiry = Store.date(
                try Double.fetchOne(
                    db,
                    sql: """
                        SELECT MIN(verifyClaimedUntil) FROM attempt
                        WHERE state = 'verifying' AND verifyClaimedBy <> ? AND verifyClaimedUntil > ?
                        """, arguments: [replica, at]))
            let rows = try SQLRow.fetchAll(
                db,
                sql: """
                    SELECT attempt.epoch, attempt.jobId FROM attempt
                    WHERE attempt.state = 'verifying'
                        AND (attempt.verifyClaimedBy IS NULL OR attempt.verifyClaimedBy = ? OR attempt.verifyClaimedUntil <= ?)
                    ORDER BY attempt.epoch
                    """, arguments: [replica, at])
            // An attempt's report, job and build do not change while it waits for verification: rows decoded by an
            // earlier read are taken from there, and only new ones are read in full and decoded.
            let known = decodedVerifications.withLock { $0 }
            var decoded: [Int64: PendingVerification] = [:]
            for row in rows {
                let epoch: Int64 = row["epoch"]
                if let pending = known[epoch] {
                    decoded[epoch] = pending
                    due.ready.append(pending)
                    continue
                }
                do {
                    let pending = try pendingVerification(db, epoch: epoch)
                    decoded[epoch] = pending
                    due.ready.append(pending)
                } catch {
                    due.unreadable.append((row["jobId"], epoch, "\(error)"))
                }
            }
            decodedVerifications.withLock { $0 = decoded }
            return due
        }
    }

    /// Reads and decodes attempt `epoch`'s report waiting for verification.
    private func pendingVerification(_ db: SQLTransaction, epoch: Int64) throws -> PendingVerification {
        guard
            let row = try SQLRow.fetchOne(
                db,
                sql: """
                    SELECT attempt.epoch, attempt.jobId, attempt.digest, attempt.imageReference, job.buildId, job.spec,
                        build.image, build.spec AS buildSpec
                    FROM attempt JOIN job ON job.id = attempt.jobId JOIN build ON build.id = job.buildId
                    WHERE attempt.epoch = ?
                    """, arguments: [epoch])
        else { throw StoreError.notFound(kind: "attempt", id: "\(epoch)") }
        let digest = try Digest(parsing: row["digest"] as String? ?? "")
        let platform = try Store.decode(PlatformSpec.self, row["spec"]).platform
        let spec = try Store.decode(BuildSpec.self, row["buildSpec"])
        return PendingVerification(
            jobId: row["jobId"], epoch: epoch, buildId: row["buildId"], platform: platform, image: row["image"],
            imageReference: row["imageReference"] ?? "", digest: digest,
            childTag: settings.childTag(spec.childTagTemplate, spec.tags[0], platform))
    }

    /// Records the registry check of a reported digest. A verified platform counts as done; when every
    /// platform is done the build's list is queued for publishing (once per set of digests).
    /// `canonicalReference` is where the verified image now lives in the build's repository (after a copy and
    /// its child tag); the list is assembled from it.
    ///
    /// Fenced by `claim` (see ``claimVerification(jobId:epoch:)``): a replica whose claim another replica took over
    /// records nothing; without a claim, nothing is recorded while another replica holds a claim that has not run
    /// out. Answers whether the outcome was recorded (false also when the report was already decided).
    ///
    /// The check's claim on the stable child tag (``claimChildTag(jobId:epoch:childTag:digest:claim:)``), if this
    /// replica still holds it, ends in the same transaction, recorded or not: its PUT is over by then, and a separate
    /// ``releaseChildTag(epoch:)`` was one more durable write per platform of every build.
    @discardableResult
    public func recordVerification(
        jobId: String, epoch: Int64, outcome: VerificationOutcome, canonicalReference: String? = nil,
        claim: VerificationClaim? = nil
    ) async throws -> Bool {
        let at = now()
        return try await write(.buildOfJob(jobId)) { db -> Bool in
            // An attempt of this job only: the write holds the lock of this job's build, not of another's attempt.
            guard
                let attempt = try SQLRow.fetchOne(
                    db, sql: "SELECT * FROM attempt WHERE epoch = ? AND jobId = ?", arguments: [epoch, jobId])
            else { return false }
            try Self.releaseTags(db, holder: Self.tagHolder(attempt: epoch), replica: replica, at: Store.timestamp(at))
            guard (attempt["state"] as String) == "verifying",
                self.mayActOnVerification(attempt, claim: claim, at: Store.timestamp(at))
            else { return false }
            let job = try self.jobRow(db, id: jobId)
            switch outcome {
            case .verified:
                let jobSucceeds = (job["currentEpoch"] as Int64?) == epoch && (job["state"] as String) == "verifying"
                let event = ["digest": attempt["digest"] ?? "", "image": attempt["imageReference"] ?? ""]
                // The attempt, the job, the event and the build's time: one statement on PostgreSQL, where each is a
                // round trip while the build's lock is held.
                let verified = SQLChange(sql: "UPDATE attempt SET state = ? WHERE epoch = ?", arguments: ["succeeded", epoch])
                guard jobSucceeds else {
                    try db.execute(sql: verified.sql, arguments: verified.arguments)
                    return true
                }
                let succeeded = SQLChange(
                    sql: "UPDATE job SET state = ?, reason = NULL, imageReference = COALESCE(?, imageReference) WHERE id = ?",
                    arguments: ["succeeded", canonicalReference, jobId])
                try self.appendEvent(
                    db, buildId: job["buildId"], jobId: jobId, platform: job["platform"], type: "job.succeeded", data: event,
                    along: [verified, succeeded])
                try self.evaluateBuild(db, id: job["buildId"], at: at)
            case .rejected(let reason):
                try db.execute(
                    sql: "UPDATE attempt SET state = 'failed', reason = ? WHERE epoch = ?", arguments: [reason, epoch])
                guard (job["currentEpoch"] as Int64?) == epoch else { return true }
                try self.attemptEnded(db, job: job, reason: reason, at: at)
            }
            return true
        }
    }

    /// Marks attempts whose lease ran out as lost and re-queues their jobs at once (no backoff: the build did not
    /// fail, its host went away). A lease that was never confirmed is not counted as an attempt. Returns how many
    /// expired.
    ///
    /// The coordinator's own trouble is never held against an agent: while writes failed within the last lease
    /// TTL (a full disk refused heartbeats), running leases are extended instead of expired.
    @discardableResult
    public func expireLeases() async throws -> Int {
        let at = now()
        if let failed = writeHealth.lastFailure, at.timeIntervalSince(failed) < settings.leaseTTL {
            try await extendRunningLeases(until: at.addingTimeInterval(settings.leaseTTL))
            return 0
        }
        return try await write { db in
            let expired = try SQLRow.fetchAll(
                db,
                sql: """
                    SELECT attempt.epoch, attempt.jobId, attempt.acknowledgedAt, agent.name AS agentName FROM attempt
                    LEFT JOIN agent ON agent.id = attempt.agentId
                    WHERE attempt.state = 'running' AND attempt.leaseExpiresAt < ?
                    """,
                arguments: [Store.timestamp(at)])
            for attempt in expired {
                let agent = attempt["agentName"] as String? ?? "?"
                let confirmed = attempt["acknowledgedAt"] as Double? != nil
                try self.loseAttempt(
                    db, epoch: attempt["epoch"], jobId: attempt["jobId"],
                    reason: confirmed
                        ? "lease expired on agent \(agent): it stopped renewing it"
                        : "agent \(agent) never confirmed the lease (the poll answer did not reach it)",
                    counted: confirmed, at: at)
            }
            return expired.count
        }
    }

    /// Pushes every running lease's expiry to at least `until`: after the coordinator could not accept heartbeats
    /// (full disk) or its wall clock jumped, agents get a full TTL to reach it again.
    public func extendRunningLeases(until: Date) async throws {
        try await write { db in
            try db.execute(
                sql: "UPDATE attempt SET leaseExpiresAt = \(db.greatest("leaseExpiresAt", "?")) WHERE state = 'running'",
                arguments: [Store.timestamp(until)])
        }
    }

    /// Ends a running attempt as lost and hands its job to the queue again at once; `counted` false gives the
    /// attempt back (it does not use up one of the job's attempts).
    func loseAttempt(_ db: SQLTransaction, epoch: Int64, jobId: String, reason: String, counted: Bool, at: Date) throws {
        try db.execute(
            sql: "UPDATE attempt SET state = 'lost', reason = ?, endedAt = ? WHERE epoch = ?",
            arguments: [reason, Store.timestamp(at), epoch])
        if !counted {
            try db.execute(sql: "UPDATE job SET retryBase = retryBase + 1 WHERE id = ?", arguments: [jobId])
        }
        let job = try self.jobRow(db, id: jobId)
        try self.appendEvent(
            db, buildId: job["buildId"], jobId: jobId, platform: job["platform"], type: "job.lost",
            data: ["reason": reason, "epoch": "\(epoch)", "counted": counted ? "true" : "false"])
        if (job["currentEpoch"] as Int64?) == epoch {
            try self.attemptEnded(db, job: job, reason: reason, at: at, backoff: false)
        }
    }

    /// The earliest moment a queued job becomes eligible, for waking long polls after a backoff.
    public func nextQueuedJobTime() async throws -> Date? {
        try await read { db in try self.nextQueuedJobTime(db) }
    }

    func nextQueuedJobTime(_ db: SQLTransaction) throws -> Date? {
        Store.date(try Double.fetchOne(db, sql: "SELECT MIN(notBefore) FROM job WHERE state = 'queued'"))
    }

    /// An agent leaves the pool: its running attempts are lost at once and their jobs re-queued.
    public func leaveAgent(id: String) async throws {
        let at = now()
        try await write { db in
            try db.execute(sql: "UPDATE agent SET state = 'left' WHERE id = ?", arguments: [id])
            try self.revokeAttempts(db, agentId: id, reason: "the agent left", counted: true, at: at)
        }
    }

    /// Ends an agent's running attempts as lost and re-queues their jobs; `counted` false gives the attempt back.
    func revokeAttempts(_ db: SQLTransaction, agentId: String, reason: String, counted: Bool, at: Date) throws {
        let running = try SQLRow.fetchAll(
            db, sql: "SELECT epoch, jobId FROM attempt WHERE agentId = ? AND state = 'running'", arguments: [agentId])
        for attempt in running {
            try loseAttempt(db, epoch: attempt["epoch"], jobId: attempt["jobId"], reason: reason, counted: counted, at: at)
        }
    }

    /// Fails attempts that ran longer than their build's timeout (plus one lease TTL of grace for the agent's own
    /// enforcement and report). The job fails; a timeout is not retried. Returns how many timed out.
    @discardableResult
    public func enforceTimeouts() async throws -> Int {
        let at = now()
        return try await write { db in
            let running = try SQLRow.fetchAll(
                db,
                sql: """
                    SELECT attempt.epoch, attempt.jobId, attempt.startedAt, build.spec AS buildSpec FROM attempt
                    JOIN job ON job.id = attempt.jobId JOIN build ON build.id = job.buildId
                    WHERE attempt.state = 'running'
                    """)
            var count = 0
            for attempt in running {
                let spec = try Store.decode(BuildSpec.self, attempt["buildSpec"])
                let started: Double = attempt["startedAt"]
                guard started + Double(spec.timeoutSeconds) + self.settings.leaseTTL < Store.timestamp(at) else { continue }
                let epoch: Int64 = attempt["epoch"]
                let reason = "the build ran longer than its timeout of \(spec.timeoutSeconds) s"
                try db.execute(
                    sql: "UPDATE attempt SET state = 'failed', reason = ?, endedAt = ? WHERE epoch = ?",
                    arguments: [reason, Store.timestamp(at), epoch])
                let job = try self.jobRow(db, id: attempt["jobId"])
                guard (job["currentEpoch"] as Int64?) == epoch else { continue }
                try db.execute(
                    sql: "UPDATE job SET state = 'failed', reason = ? WHERE id = ?", arguments: [reason, job["id"] as String])
                try self.appendEvent(
                    db, buildId: job["buildId"], jobId: job["id"], platform: job["platform"], type: "job.failed",
                    data: ["reason": reason, "attempts": "\(job["attempts"] as Int)"])
                try self.evaluateBuild(db, id: job["buildId"], at: at)
                count += 1
            }
            return count
        }
    }

    /// Whether the agent holds a running lease on a job whose build uses the uploaded context `digest`.
    public func agentMayReadContext(agentId: String, digest: Digest) async throws -> Bool {
        try await read { db in
            let specs = try String.fetchAll(
                db,
                sql: """
                    SELECT build.spec FROM attempt JOIN job ON job.id = attempt.jobId JOIN build ON build.id = job.buildId
                    WHERE attempt.agentId = ? AND attempt.state = 'running'
                    """, arguments: [agentId])
            return try specs.contains { text in
                if case .upload(let uploaded) = try Store.decode(BuildSpec.self, text).context { return uploaded == digest }
                return false
            }
        }
    }

    // MARK: - Transitions

    /// Ends a job whose build was cancelled once its attempt stopped.
    func cancelJob(_ db: SQLTransaction, job: SQLRow, reason: String) throws {
        try db.execute(
            sql: "UPDATE job SET state = 'cancelled', reason = ? WHERE id = ?", arguments: [reason, job["id"] as String])
        try appendEvent(
            db, buildId: job["buildId"], jobId: job["id"], platform: job["platform"], type: "job.cancelled", data: [:])
    }

    /// After a failed or lost attempt: retry with backoff while attempts remain, else fail the job.
    func attemptEnded(_ db: SQLTransaction, job: SQLRow, reason: String, at: Date, backoff: Bool = true) throws {
        let jobId: String = job["id"]
        let buildId: String = job["buildId"]
        let used = (job["attempts"] as Int) - (job["retryBase"] as Int)
        let maxAttempts: Int = job["maxAttempts"]
        let buildState = try Self.buildState(db, id: buildId)
        if buildState == .cancelled {
            try db.execute(sql: "UPDATE job SET state = 'cancelled', reason = 'build cancelled' WHERE id = ?", arguments: [jobId])
            return
        }
        if used < maxAttempts {
            let retryAt = backoff ? at.addingTimeInterval(settings.backoff(afterAttempt: used)) : at
            try db.execute(
                sql: "UPDATE job SET state = 'queued', notBefore = ?, reason = ? WHERE id = ?",
                arguments: [Store.timestamp(retryAt), reason, jobId])
            if backoff {
                try appendEvent(
                    db, buildId: buildId, jobId: jobId, platform: job["platform"], type: "job.retrying",
                    data: [
                        "reason": reason, "attempt": "\(used)", "maxAttempts": "\(maxAttempts)",
                        "at": "\(Store.timestamp(retryAt))",
                    ])
            } else {
                // Taken away or given back, not failed: queued again at once for the next agent.
                try appendEvent(
                    db, buildId: buildId, jobId: jobId, platform: job["platform"], type: "job.queued", data: ["reason": reason])
            }
        } else {
            try db.execute(sql: "UPDATE job SET state = 'failed', reason = ? WHERE id = ?", arguments: [reason, jobId])
            try appendEvent(
                db, buildId: buildId, jobId: jobId, platform: job["platform"], type: "job.failed",
                data: ["reason": reason, "attempts": "\(used)"])
            try evaluateBuild(db, id: buildId, at: at)
        }
    }

    /// Decides what a build's jobs add up to: publish (all verified, or partial when allowed), fail, or keep running.
    func evaluateBuild(_ db: SQLTransaction, id: String, at: Date) throws {
        // One statement for the build's state, its spec and its jobs (each row repeats the build's columns; a build
        // has a handful of jobs): this runs inside most reports, while their locks are held.
        let rows = try SQLRow.fetchAll(
            db,
            sql: """
                SELECT build.state AS buildState, build.spec AS buildSpec, job.state, job.digest, job.platformKey,
                    job.spec, job.imageReference
                FROM build LEFT JOIN job ON job.buildId = build.id WHERE build.id = ? ORDER BY job.seq
                """,
            arguments: [id])
        guard let first = rows.first else { throw StoreError.notFound(kind: "build", id: id) }
        guard BuildState(rawValue: first["buildState"] as String) != .cancelled else { return }
        let jobs = rows.filter { $0.value("state") != .null }
        let states = jobs.map { JobState(rawValue: $0["state"] as String) ?? .queued }
        guard states.allSatisfy(\.isFinal) else { return }
        let succeeded = jobs.filter { ($0["state"] as String) == JobState.succeeded.rawValue }
        let spec = try Store.decode(BuildSpec.self, first["buildSpec"] as String)
        let complete = succeeded.count == jobs.count
        if complete || (spec.allowPartial && !succeeded.isEmpty) {
            let digestSet = succeeded.map { "\($0["platformKey"] as String)=\($0["digest"] as String? ?? "")" }.joined(
                separator: ",")
            try queuePublication(
                db, buildId: id, digestSet: digestSet, children: try succeeded.map(Self.storedChild), partial: !complete,
                platforms: (succeeded.count, jobs.count), at: at)
        } else {
            let failed = jobs.count - succeeded.count
            let reason = "\(failed) of \(jobs.count) platform(s) failed" + (spec.allowPartial ? "" : "; no list was published")
            try db.execute(
                sql: "UPDATE build SET state = 'failed', reason = ?, updatedAt = ?, finishedAt = ? WHERE id = ?",
                arguments: [reason, Store.timestamp(at), Store.timestamp(at), id])
            try appendEvent(db, buildId: id, type: "build.failed", data: ["reason": reason])
        }
    }

    /// Queues the list of `digestSet` for publishing, unless the tags already point at exactly that list.
    ///
    /// Rows pending for another set are superseded. If the newest publishing run of this build pushed this very
    /// set, nothing is pushed again and the build is published with that run's list. Any other history (a newer
    /// list pushed since, a failed or superseded run) queues a new run: the tags must move to this set.
    func queuePublication(
        _ db: SQLTransaction, buildId id: String, digestSet: String, children: [StoredChild], partial: Bool,
        platforms: (done: Int, of: Int), at: Date
    ) throws {
        try db.execute(
            sql: "UPDATE outbox SET state = 'superseded' WHERE buildId = ? AND state = 'pending' AND digestSet != ?",
            arguments: [id, digestSet])
        let pending =
            try Bool.fetchOne(
                db, sql: "SELECT 1 FROM outbox WHERE buildId = ? AND state = 'pending' AND digestSet = ?",
                arguments: [id, digestSet]) ?? false
        try db.execute(
            sql: "UPDATE build SET state = 'publishing', updatedAt = ? WHERE id = ?", arguments: [Store.timestamp(at), id])
        if pending { return }
        let newest = try SQLRow.fetchOne(
            db, sql: "SELECT state, digestSet, listDigest, partial FROM outbox WHERE buildId = ? ORDER BY id DESC LIMIT 1",
            arguments: [id])
        if let newest, (newest["state"] as String) == "done", (newest["digestSet"] as String) == digestSet,
            let listDigest = newest["listDigest"] as String?
        {
            let final: BuildState = (newest["partial"] as Int) != 0 ? .partiallyPublished : .published
            try db.execute(
                sql: "UPDATE build SET state = ?, listDigest = ?, updatedAt = ?, finishedAt = ? WHERE id = ?",
                arguments: [final.rawValue, listDigest, Store.timestamp(at), Store.timestamp(at), id])
            let mediaType =
                try String.fetchOne(db, sql: "SELECT listMediaType FROM build WHERE id = ?", arguments: [id]) ?? ""
            try appendEvent(
                db, buildId: id, type: "list.published",
                data: [
                    "digest": listDigest, "mediaType": mediaType,
                    "tags": try Self.buildSpec(db, id: id).tags.joined(separator: ","),
                    "partial": final == .partiallyPublished ? "true" : "false", "unchanged": "true",
                ])
            return
        }
        try db.execute(
            sql: """
                INSERT INTO outbox (buildId, digestSet, children, partial, state, notBefore, createdAt)
                VALUES (?, ?, ?, ?, 'pending', ?, ?)
                """,
            arguments: [id, digestSet, try Store.json(children), partial ? 1 : 0, Store.timestamp(at), Store.timestamp(at)])
        try appendEvent(
            db, buildId: id, type: "list.publishing", data: ["platforms": "\(platforms.done)", "of": "\(platforms.of)"])
    }

    /// One verified platform image as the outbox stores it.
    struct StoredChild: Codable, Sendable {
        var platform: Platform
        var imageReference: String
        var digest: String
    }

    static func storedChild(_ job: SQLRow) throws -> StoredChild {
        StoredChild(
            platform: try Store.decode(PlatformSpec.self, job["spec"]).platform, imageReference: job["imageReference"] ?? "",
            digest: job["digest"] ?? "")
    }

    static func buildSpec(_ db: SQLTransaction, id: String) throws -> BuildSpec {
        guard let text = try String.fetchOne(db, sql: "SELECT spec FROM build WHERE id = ?", arguments: [id]) else {
            throw StoreError.notFound(kind: "build", id: id)
        }
        return try Store.decode(BuildSpec.self, text)
    }

    /// The attempt named by a call, if it is still the job's current one and belongs to the caller.
    func currentAttempt(_ db: SQLTransaction, jobId: String, epoch: Int64, agentId: String, allowed: Set<String>) throws -> SQLRow
    {
        // One statement: the attempt, its job's current epoch, the job columns the writes after it need
        // (``job(of:)``) and its build's image (what a report must name). Every agent write starts here, under the
        // writers' lock or its build's (an agent's writes are scoped to the build of their job,
        // ``StoreBackend/write(buildOfJob:_:)``: they must read no other build's rows).
        guard
            let attempt = try SQLRow.fetchOne(
                db,
                sql: """
                    SELECT attempt.*, job.currentEpoch AS jobCurrentEpoch, job.buildId AS jobBuildId,
                        job.platform AS jobPlatform, job.attempts AS jobAttempts, job.retryBase AS jobRetryBase,
                        job.maxAttempts AS jobMaxAttempts, build.image AS buildImage
                    FROM attempt LEFT JOIN job ON job.id = attempt.jobId LEFT JOIN build ON build.id = job.buildId
                    WHERE attempt.epoch = ?
                    """, arguments: [epoch]),
            (attempt["jobId"] as String) == jobId
        else {
            throw StoreError.staleAttempt(jobId: jobId, epoch: epoch, reason: "no such attempt of this job")
        }
        guard (attempt["agentId"] as String) == agentId else {
            throw StoreError.forbidden(
                "attempt epoch \(epoch) of job \(jobId) is leased to another agent; an agent may only touch its own jobs")
        }
        let current: Int64? = attempt["jobCurrentEpoch"]
        guard current == epoch else {
            throw StoreError.staleAttempt(
                jobId: jobId, epoch: epoch, reason: "a newer attempt (epoch \(current.map(String.init) ?? "none")) replaced it")
        }
        let state: String = attempt["state"]
        guard allowed.contains(state) else {
            // Why it ended (a lease that expired, an admin who disabled the agent) tells the agent's operator what to fix.
            let why = (attempt["reason"] as String?).map { ": \($0)" } ?? ""
            throw StoreError.staleAttempt(jobId: jobId, epoch: epoch, reason: "the attempt is \(state)\(why)")
        }
        return attempt
    }

    /// The job of a row from ``currentAttempt(_:jobId:epoch:agentId:allowed:)`` as read with it: its id, build,
    /// platform and attempt counts (what reports, logs and ``attemptEnded(_:job:reason:at:backoff:)`` use), without
    /// reading the job again.
    static func job(of attempt: SQLRow) -> SQLRow {
        SQLRow(
            columns: ["id", "buildId", "platform", "attempts", "retryBase", "maxAttempts"],
            values: [
                attempt.value("jobId"), attempt.value("jobBuildId"), attempt.value("jobPlatform"),
                attempt.value("jobAttempts"), attempt.value("jobRetryBase"), attempt.value("jobMaxAttempts"),
            ])
    }

    func jobRow(_ db: SQLTransaction, id: String) throws -> SQLRow {
        guard let row = try SQLRow.fetchOne(db, sql: "SELECT * FROM job WHERE id = ?", arguments: [id]) else {
            throw StoreError.notFound(kind: "job", id: id)
        }
        return row
    }
}
